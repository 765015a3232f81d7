"""Random-number state: seeding, and capturing/restoring every generator a run draws from.

A resumed run restores these so that it continues exactly as the uninterrupted run would have.
States are stored as tensors and plain Python values, so checkpoints load with
``torch.load(weights_only=True)``; they must be loaded onto the CPU (``torch.set_rng_state`` and
``torch.cuda.set_rng_state`` take CPU byte tensors). Of the GPUs, only the process's own device
(``torch.cuda.current_device()``) is saved and restored: a process draws from no other, and a
checkpoint written with 8 GPUs visible then resumes where 2 are.
"""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def capture_rng_state() -> Dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        own = _own_device_state(state["cuda"])
        if own is not None:
            torch.cuda.set_rng_state(own, torch.cuda.current_device())


def _own_device_state(saved):
    """This process's GPU state: the saved one, or from a checkpoint that held every visible device's
    (a list, written before only the own device was saved) the entry of the current device, if any."""
    if not isinstance(saved, (list, tuple)):
        return saved
    index = torch.cuda.current_device()
    return saved[index] if index < len(saved) else None


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
