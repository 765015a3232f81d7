"""Loaders split across processes, with batch sizes that mean the same for any number of them.

Batch sizes are *global*: a batch of ``B`` images over ``N`` processes is ``B / N`` images on each,
so a recipe (batch 4, learning rate 0.0035) runs unchanged on 1 or any N dividing 4 and, with
mean-reduced losses and averaged gradients, takes the same steps. Training and validation batches
come from a :class:`~torch.utils.data.DistributedSampler`, in one process too (rank ``r`` takes every
``N``-th index of one shared permutation per epoch, so the ``N`` per-rank batches of step ``k`` are
exactly the one-process batch ``k``; random augmentations are each process's own draws); it pads
the permutation to a multiple of ``N`` by repeating its first images. Evaluation shards the data
without that padding, which would count some images twice (:func:`eval_loader`, :func:`unpadded`).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..errors import OptionError
from . import distributed


def per_process_batch(batch_size: int, what: str = "the batch size") -> int:
    """``batch_size / N``; a batch size that does not split evenly is an error (unequal shares
    would weigh images differently in the averaged gradient) naming the batch sizes that split
    across N processes and the process counts that split ``batch_size``."""
    world = distributed.world_size()
    if batch_size < 1:
        raise OptionError(f"{what} must be a positive number of images, got {batch_size}")
    if batch_size < world or batch_size % world:
        first = max(1, math.ceil(batch_size / world)) * world
        sizes = ", ".join(str(first + i * world) for i in range(3))
        counts = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
        raise OptionError(
            f"{what} {batch_size} is global (split across the processes) and does not divide into {world} "
            f"equal shares. On {world} processes use a multiple of {world} ({sizes}, ...; a learning rate set for "
            f"batch {batch_size} is usually scaled with the batch), or keep {batch_size} and start "
            f"{_either(counts)} processes")
    return batch_size // world


def _either(numbers) -> str:
    """``1, 2 or 4``."""
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


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


def unpadded(batches: Iterable) -> Iterable:
    """For evaluating on what ``batches`` covers: a loader from :func:`loader` becomes one over the same
    images, each in exactly one process (its distributed sampler pads the shares with repeated
    images, which an accuracy would count twice); any other iterable is returned as it is."""
    if not isinstance(batches, DataLoader) or not isinstance(batches.sampler, DistributedSampler):
        return batches
    return DataLoader(batches.dataset, batch_size=batches.batch_size, sampler=ShardSampler(batches.dataset),
                      num_workers=batches.num_workers, collate_fn=batches.collate_fn,
                      pin_memory=batches.pin_memory, worker_init_fn=batches.worker_init_fn)


def set_epoch(batches: Iterable, epoch: int) -> None:
    """Give a loader's distributed sampler the epoch (a new shared permutation); no-op otherwise."""
    sampler = getattr(batches, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
