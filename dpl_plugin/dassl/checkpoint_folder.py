"""Checkpoints in Dassl's folder layout, holding only what was learned.

``DIR/<model name>/model.pth.tar-<epoch>`` (1-based epoch), ``model-best.pth.tar``, and the text
file ``checkpoint`` naming the file written last -- the layout CoOp-family scripts (``--model-dir``,
``--load-epoch``) expect. A file holds the learner's state dict (prompts, coupling maps), the
optimizer/scheduler state, the epoch, the RNG state and the prompt configuration it was trained
with, so that it rebuilds its own model; never the frozen CLIP weights. Writes are atomic and reads
use ``weights_only=True`` (:mod:`dpl_plugin.engine.checkpoint`).
"""

from __future__ import annotations

import os
import os.path as osp
from typing import Any, Dict, Optional

from ..engine.checkpoint import CheckpointNotFoundError, CorruptCheckpointError, load_checkpoint, save_checkpoint
from ..runtime.atomic import atomic_write

FORMAT = "dpl-plugin/dassl-v1"
POINTER = "checkpoint"
BEST = "model-best.pth.tar"


def epoch_file(epoch: int) -> str:
    return f"model.pth.tar-{epoch}"


def write(state: Dict[str, Any], folder: str, file_name: str) -> str:
    path = save_checkpoint({"format": FORMAT, **state}, osp.join(folder, file_name))
    with atomic_write(osp.join(folder, POINTER), "w") as f:
        f.write(file_name + "\n")
    return path


def latest(folder: str) -> Optional[str]:
    """The file the pointer names, or None when the folder holds no checkpoint."""
    pointer = osp.join(folder, POINTER)
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.read().strip()
    path = osp.join(folder, name)
    if not name or not osp.isfile(path):
        raise CorruptCheckpointError(f"{pointer} names '{name}', which does not exist: delete {pointer} to train "
                                     f"from scratch, or write the name of an existing model.pth.tar-N into it")
    return path


def find(folder: str, epoch: Optional[int] = None) -> str:
    """``--load-epoch N``: ``model.pth.tar-N``; none: ``model-best.pth.tar`` if any, else the latest."""
    if epoch is not None:
        path = osp.join(folder, epoch_file(epoch))
    else:
        path = osp.join(folder, BEST)
        if not osp.isfile(path):
            path = latest(folder) or path
    if not osp.isfile(path):
        available = sorted(f for f in os.listdir(folder) if f.startswith("model")) if osp.isdir(folder) else []
        raise CheckpointNotFoundError(f"Model not found at \"{path}\". Available: {available or 'none'}. "
                                f"Check --model-dir (the run's output folder) and --load-epoch.")
    return path


def read(path: str, map_location="cpu") -> Dict[str, Any]:
    state = load_checkpoint(path, map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptCheckpointError(
            f"{path} is not a dpl-plugin trainer checkpoint (it holds no prompt configuration; a checkpoint of "
            f"CoOp, MaPLe or the official DPL code cannot be loaded by the DPL trainers)")
    return state
