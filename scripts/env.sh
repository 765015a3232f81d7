# Settings shared by the scripts, in one place. Override any of them with an environment variable:
#   DPL_DATA=/data/coop DPL_TRAINER=DPL_IVLP bash scripts/fewshot.sh caltech101
DATA=${DPL_DATA:-/path/to/datasets}      # CoOp's dataset root (DATASETS.md layout)
TRAINER=${DPL_TRAINER:-DPL_MaPLe}        # DPL_CoOp | DPL_VPT | DPL_IVLP | DPL_MaPLe | DPL_KgCoOp | DPL_PromptSRC
CFG=${DPL_CFG:-vit_b16}                  # configs/trainers/${TRAINER}/${CFG}.yaml
OUTPUT=${DPL_OUTPUT:-output}             # results go to ${OUTPUT}/... (CoOp/MaPLe folder conventions)
SEEDS=${DPL_SEEDS:-"1 2 3"}
PYTHON=${DPL_PYTHON:-python}
# Processes per run: 1, or N to split every batch and the class prompts across N processes with
# torch.distributed (torchrun: one GPU each with NCCL, or N CPU processes with gloo). Batch sizes
# stay global (the recipe's batch 4 is 2 images on each of 2 processes).
GPUS=${DPL_GPUS:-1}
# Extra KEY VALUE options appended to every run (no spaces inside a value), e.g. local CLIP weights:
#   DPL_OPTS="MODEL.BACKBONE.NAME /models/ViT-B-16.pt DATALOADER.NUM_WORKERS 4"
OPTS=${DPL_OPTS:-}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# use_dataset DATASET: per-dataset defaults. The offline demo task needs no downloaded data (it is
# written under ${REPO}/data from Debian's dataset-fashion-mnist) and its own small backbone config.
use_dataset() {
    if [ "$1" = demo ]; then
        DATA=${DPL_DATA:-${REPO}/data}
        CFG=${DPL_CFG:-demo}
        mkdir -p "${DATA}"
    fi
}

# dpl_run DATASET OUTPUT_DIR [train.py arguments and KEY VALUE options...]
dpl_run() {
    local dataset=$1 dir=$2
    shift 2
    if [ ! -d "${DATA}" ]; then
        echo "Dataset root '${DATA}' does not exist: set DPL_DATA (or DATA in scripts/env.sh)" >&2
        exit 1
    fi
    local launch=("${PYTHON}")
    if [ "${GPUS}" -gt 1 ]; then
        launch=("${PYTHON}" -m torch.distributed.run --standalone --nproc_per_node "${GPUS}")
    fi
    "${launch[@]}" "${REPO}/train.py" \
        --root "${DATA}" \
        --trainer "${TRAINER}" \
        --dataset-config-file "${REPO}/configs/datasets/${dataset}.yaml" \
        --config-file "${REPO}/configs/trainers/${TRAINER}/${CFG}.yaml" \
        --output-dir "${dir}" \
        "$@" ${OPTS}
}

# has_result DIR: the run in DIR already printed its final evaluation (logs of reruns are log.txt-<time>)
has_result() {
    grep -qs "^=> result" "$1"/log.txt* && { [ "$2" = eval ] || grep -qs "^Finish training" "$1"/log.txt*; }
}
