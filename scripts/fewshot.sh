#!/bin/bash
# Few-shot protocol, all classes, 3 seeds: bash scripts/fewshot.sh DATASET [SHOTS] [TRAINER]
#   e.g. for s in 1 2 4 8 16; do bash scripts/fewshot.sh caltech101 $s; done
# Summary: python parse_results.py ${OUTPUT}/DATASET/TRAINER
set -e
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ $# -lt 1 ]; then echo "usage: $0 DATASET [SHOTS] [TRAINER]" >&2; exit 1; fi
DATASET=$1
SHOTS=${2:-16}
TRAINER=${3:-${TRAINER}}
use_dataset "${DATASET}"

for SEED in ${SEEDS}; do
    DIR=${OUTPUT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
    if has_result "${DIR}"; then echo "Results exist in ${DIR}: skipped"; continue; fi
    dpl_run "${DATASET}" "${DIR}" --seed "${SEED}" DATASET.NUM_SHOTS "${SHOTS}"
done
