"""Loaders split across processes, with batch sizes that mean the same for any number of them.

Batch sizes are *global*: a batch of ``B`` images over ``N`` processes is ``B / N`` images on each,
so a recipe (batch 4, learning rate 0.0035) runs unchanged on 1 or N processes and, with mean-reduced
losses and averaged gradients, takes the same steps. Training and validation batches come from a
:class:`~torch.utils.data.DistributedSampler` (rank ``r`` takes every ``N``-th index of one shared
permutation per epoch, so the ``N`` per-rank batches of step ``k`` are exactly the one-process batch
``k``); evaluation shards the data without the padding that would count some images twice.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

from torch.utils.data import DataLoader, DistributedSampler, Sampler

from . import distributed


def per_process_batch(batch_size: int, what: str = "the batch size") -> int:
    """``batch_size / N``; a batch size that does not split evenly is an error (unequal shares
    would weigh images differently in the averaged gradient)."""
    world = distributed.world_size()
    if batch_size < world or batch_size % world:
        raise ValueError(f"{what} {batch_size} is global (split across the processes) and does not divide "
                         f"into {world} equal shares: use a multiple of {world}, or fewer processes")
    return batch_size // world


def train_sampler(dataset, shuffle: bool = True, seed: int = 0) -> DistributedSampler:
    """This rank's share of each epoch's permutation (``seed`` + epoch, via :func:`set_epoch`).
    With ``N`` not dividing the dataset, the permutation is padded by repeating its first images."""
    return DistributedSampler(dataset, num_replicas=distributed.world_size(), rank=distributed.rank(),
                              shuffle=shuffle, seed=seed)


class ShardSampler(Sampler):
    """Evaluation: rank ``r`` takes images ``r, r + N, ...``, every image exactly once overall."""

    def __init__(self, dataset):
        self.size = len(dataset)
        self.rank, self.world = distributed.rank(), distributed.world_size()

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world))


def loader(dataset, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
           **loader_kwargs) -> DataLoader:
    """Training (or validation) batches of global size ``batch_size``, this rank's share of each."""
    return DataLoader(dataset, batch_size=per_process_batch(batch_size), sampler=train_sampler(dataset, shuffle, seed),
                      drop_last=drop_last, **loader_kwargs)


def eval_loader(dataset, batch_size: int, **loader_kwargs) -> DataLoader:
    """Evaluation batches: this rank's share of the images, ``ceil(batch_size / N)`` at a time."""
    per_rank = max(1, math.ceil(batch_size / distributed.world_size()))
    return DataLoader(dataset, batch_size=per_rank, sampler=ShardSampler(dataset), **loader_kwargs)


def set_epoch(batches: Iterable, epoch: int) -> None:
    """Give a loader's distributed sampler the epoch (a new shared permutation); no-op otherwise."""
    sampler = getattr(batches, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
