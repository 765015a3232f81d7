"""The demo task: few-shot classification of *shifted* Fashion-MNIST with the demo CLIP.

The demo backbone (``dpl_plugin/demo/weights``) was pretrained on clean Fashion-MNIST with captions
built from the class names, so zero-shot it does well on clean images and badly on shifted ones:
a real gap for prompts to close, small enough to run on a laptop CPU in minutes.

Splits follow CoOp's few-shot protocol: ``shots`` training images per class and ``min(shots, 4)``
validation images per class, drawn with ``seed`` from fixed pools of Fashion-MNIST training images
(:func:`demo_pools`: 100 and 20 per class, disjoint); the test set is a fixed 2,000-image subset of
the Fashion-MNIST test set. The Dassl dataset ``Demo`` writes the same pools to disk, so the plain
API and the Dassl trainers see the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch.utils.data import TensorDataset

from .fashion_mnist import CLASSNAMES, SHIFTS, load_fashion_mnist, to_clip_input

RESOLUTION = 28
DEFAULT_SHIFT = "rot90"
TEST_SIZE = 2000
TRAIN_POOL, VAL_POOL = 100, 20  # images per class the few-shot splits are drawn from


@dataclass
class DemoSplits:
    """uint8 images ``(N, 28, 28)`` and labels per split, shift already applied."""

    train: Tuple[torch.Tensor, torch.Tensor]
    val: Tuple[torch.Tensor, torch.Tensor]
    test: Tuple[torch.Tensor, torch.Tensor]
    classnames: List[str]
    shift: str


def fewshot_indices(labels: torch.Tensor, per_class: int, generator: torch.Generator,
                    exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``per_class`` random indices of every label (never one of ``exclude``), label-major."""
    chosen = []
    banned = set(exclude.tolist()) if exclude is not None else set()
    for label in range(int(labels.max()) + 1):
        pool = [i for i in torch.nonzero(labels == label).flatten().tolist() if i not in banned]
        order = torch.randperm(len(pool), generator=generator)[:per_class]
        chosen += [pool[i] for i in order.tolist()]
    return torch.tensor(chosen)


Split = Tuple[torch.Tensor, torch.Tensor]  # uint8 images (N, 28, 28), int64 labels (N,)


def demo_pools(shift: str = DEFAULT_SHIFT, root: Optional[str] = None) -> Tuple[Split, Split, Split]:
    """The fixed train pool, validation pool and test set, shift applied (independent of any seed)."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift '{shift}'; choose one of {sorted(SHIFTS)}")
    train_x, train_y = load_fashion_mnist("train", root)
    test_x, test_y = load_fashion_mnist("test", root)
    g = torch.Generator().manual_seed(0)
    train_idx = fewshot_indices(train_y, TRAIN_POOL, g)
    val_idx = fewshot_indices(train_y, VAL_POOL, g, exclude=train_idx)
    test_idx = torch.randperm(len(test_y), generator=g)[:TEST_SIZE]
    transform = SHIFTS[shift]
    return tuple((transform(x[i]), y[i]) for x, y, i in
                 ((train_x, train_y, train_idx), (train_x, train_y, val_idx), (test_x, test_y, test_idx)))


def demo_splits(shots: int = 16, seed: int = 1, shift: str = DEFAULT_SHIFT, root: Optional[str] = None,
                val_shots: Optional[int] = None) -> DemoSplits:
    """``val_shots``: validation images per class (default ``min(shots, 4)``, at most the pool's 20)."""
    if not 1 <= shots <= TRAIN_POOL:
        raise ValueError(f"the demo task is few-shot: shots must be between 1 and {TRAIN_POOL}")
    val_shots = min(shots, 4) if val_shots is None else val_shots
    if not 1 <= val_shots <= VAL_POOL:
        raise ValueError(f"validation shots must be between 1 and {VAL_POOL}, got {val_shots}")
    (train_x, train_y), (val_x, val_y), test = demo_pools(shift, root)
    g = torch.Generator().manual_seed(seed)
    train_idx = fewshot_indices(train_y, shots, g)
    val_idx = fewshot_indices(val_y, val_shots, g)
    return DemoSplits(train=(train_x[train_idx], train_y[train_idx]), val=(val_x[val_idx], val_y[val_idx]),
                      test=test, classnames=list(CLASSNAMES), shift=shift)


def as_datasets(splits: DemoSplits) -> Tuple[TensorDataset, TensorDataset, TensorDataset]:
    """CLIP-ready ``(train, val, test)`` tensor datasets."""
    return tuple(TensorDataset(to_clip_input(x, RESOLUTION), y) for x, y in (splits.train, splits.val, splits.test))
