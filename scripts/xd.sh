#!/bin/bash
# Cross-dataset transfer and domain generalisation, 3 seeds: search and train on ImageNet (16 shots,
# all classes), then evaluate that model on 10 other datasets and 4 ImageNet variants.
#   bash scripts/xd.sh [TRAINER]
# Summary: python parse_results.py ${OUTPUT}/evaluation/TRAINER
set -e
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
TRAINER=${1:-${TRAINER}}
SHOTS=16
TARGETS=${DPL_XD_TARGETS:-"caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101 imagenetv2 imagenet_sketch imagenet_a imagenet_r"}

for SEED in ${SEEDS}; do
    SOURCE_DIR=${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
    if has_result "${SOURCE_DIR}"; then
        echo "Results exist in ${SOURCE_DIR}: skipped"
    else
        dpl_run imagenet "${SOURCE_DIR}" --seed "${SEED}" DATASET.NUM_SHOTS "${SHOTS}"
    fi
    for DATASET in ${TARGETS}; do
        DIR=${OUTPUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
        if has_result "${DIR}" eval; then echo "Results exist in ${DIR}: skipped"; continue; fi
        dpl_run "${DATASET}" "${DIR}" --seed "${SEED}" --eval-only --model-dir "${SOURCE_DIR}"
    done
done
