#!/bin/bash
# Base-to-new protocol, 3 seeds: search and train on the base half of the classes (16 shots),
# evaluate on the base test set, then on the new classes.
#   bash scripts/base2new.sh DATASET [TRAINER]
# Summary (base, new, harmonic mean): python parse_results.py --base2new ${OUTPUT}/base2new
set -e
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ $# -lt 1 ]; then echo "usage: $0 DATASET [TRAINER]" >&2; exit 1; fi
DATASET=$1
TRAINER=${2:-${TRAINER}}
use_dataset "${DATASET}"
SHOTS=16

for SEED in ${SEEDS}; do
    COMMON=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
    TRAIN_DIR=${OUTPUT}/base2new/train_base/${COMMON}
    TEST_DIR=${OUTPUT}/base2new/test_new/${COMMON}
    if has_result "${TRAIN_DIR}"; then
        echo "Results exist in ${TRAIN_DIR}: skipped"
    else
        dpl_run "${DATASET}" "${TRAIN_DIR}" --seed "${SEED}" \
            DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES base
    fi
    if has_result "${TEST_DIR}" eval; then
        echo "Results exist in ${TEST_DIR}: skipped"
    else
        dpl_run "${DATASET}" "${TEST_DIR}" --seed "${SEED}" --eval-only --model-dir "${TRAIN_DIR}" \
            DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES new
    fi
done
