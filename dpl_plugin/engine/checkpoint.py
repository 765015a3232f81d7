"""Checkpoints of what was learned (never the frozen CLIP weights): atomic writes, safe loads.

Files are written to a temporary name and moved into place, so an interrupted write leaves the
previous checkpoint intact; they are read with ``weights_only=True`` (the default since PyTorch
2.6) after the zip archive's CRC check, and a damaged file gives an error that names it.
"""

from __future__ import annotations

import os
from typing import Any, Dict

import torch

from ..errors import DPLError
from ..runtime.atomic import atomic_write
from ..runtime.safe_files import zip_problem


class CorruptCheckpointError(DPLError, RuntimeError):
    """A checkpoint file exists but cannot be read."""


class CheckpointNotFoundError(DPLError, FileNotFoundError):
    """A checkpoint that was asked for does not exist; the message lists what does."""


def save_checkpoint(obj: Dict[str, Any], path: str) -> str:
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return path


def load_checkpoint(path: str, map_location="cpu") -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    damaged = zip_problem(path)  # torch.load does not check the records' CRCs: flipped bytes load as garbage
    if damaged:
        raise CorruptCheckpointError(f"checkpoint {path} is corrupt: {damaged} (damaged on disk). Delete it to "
                                     f"start over, or point to another one")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CorruptCheckpointError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {err}). The file is truncated, "
            f"corrupt, or not a dpl-plugin checkpoint: delete it to start over, or point to another one."
        ) from err
