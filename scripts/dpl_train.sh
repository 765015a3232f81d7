#!/bin/bash
# Search (unless already done in the same folder), train and evaluate:
#   bash scripts/dpl_train.sh DATASET SHOTS [SEED] [TRAINER] [KEY VALUE ...]
# Trailing KEY VALUE pairs go to train.py, e.g. a given configuration:
#   bash scripts/dpl_train.sh caltech101 16 1 DPL_MaPLe TRAINER.DPL.MODE train TRAINER.DPL.CONFIG_FILE my.yaml
# or the baseline itself: DPL_CFG=vit_b16_c2_ep5_batch4_2ctx bash scripts/dpl_train.sh caltech101 16
# Re-running the same command resumes an interrupted search or training.
set -e
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ $# -lt 2 ]; then echo "usage: $0 DATASET SHOTS [SEED] [TRAINER] [KEY VALUE ...]" >&2; exit 1; fi
DATASET=$1
SHOTS=$2
SEED=${3:-1}
TRAINER=${4:-${TRAINER}}
use_dataset "${DATASET}"
shift $(( $# < 4 ? $# : 4 ))

DIR=${OUTPUT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
dpl_run "${DATASET}" "${DIR}" --seed "${SEED}" DATASET.NUM_SHOTS "${SHOTS}" "$@"
