#!/bin/bash
# Search prompt lengths only: bash scripts/dpl_search.sh DATASET SHOTS [SEED] [TRAINER]
#   e.g. bash scripts/dpl_search.sh imagenet 16
# Writes ${OUTPUT}/DATASET/TRAINER/${CFG}_SHOTSshots/seedSEED/search/searched_config.yaml (+ alpha
# history and heatmaps). Re-running resumes an interrupted search; dpl_train.sh with the same
# arguments trains the result.
set -e
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ $# -lt 2 ]; then echo "usage: $0 DATASET SHOTS [SEED] [TRAINER]" >&2; exit 1; fi
DATASET=$1
SHOTS=$2
SEED=${3:-1}
TRAINER=${4:-${TRAINER}}
use_dataset "${DATASET}"

DIR=${OUTPUT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
dpl_run "${DATASET}" "${DIR}" --seed "${SEED}" TRAINER.DPL.MODE search DATASET.NUM_SHOTS "${SHOTS}"
