"""Dassl loaders split across processes (``torchrun``); one process keeps Dassl's own loaders.

Batch sizes stay global (``dpl_plugin.runtime.sharded_data``): ``DATALOADER.TRAIN_X.BATCH_SIZE`` 4 on 2
processes is 2 images on each, the recipe's batch of 4 per step. Training and the search's
validation use a distributed sampler seeded with ``SEED`` (a new shared permutation per epoch);
evaluation shards the images so that each is counted once. One process and N therefore draw
different batch orders (Dassl's ``RandomSampler`` from torch's generator, against the distributed
sampler's permutation): each step is the same computation on its global batch, the batches are not
the same (the README's several-GPU section says how they differ).
"""

from __future__ import annotations

import torch
from dassl.data.data_manager import DatasetWrapper
from dassl.data.transforms import build_transform
from torch.utils.data import DataLoader

from ..runtime import sharded_data

_SHUFFLE = {"RandomSampler": True, "SequentialSampler": False}


def _dataset(cfg, data_source, tfm, is_train: bool) -> DatasetWrapper:
    return DatasetWrapper(cfg, data_source, transform=tfm, is_train=is_train)


def _loader_kwargs(cfg) -> dict:
    return {"num_workers": cfg.DATALOADER.NUM_WORKERS, "pin_memory": torch.cuda.is_available() and cfg.USE_CUDA}


def shuffles(sampler_type: str, key: str) -> bool:
    if sampler_type not in _SHUFFLE:
        raise ValueError(f"{key} {sampler_type} has no form split across processes: use RandomSampler (or "
                         f"SequentialSampler) with several processes, or run one process")
    return _SHUFFLE[sampler_type]


def train_loader(cfg, data_source, batch_size: int, tfm, what: str, shuffle: bool = True,
                 is_train: bool = True) -> DataLoader:
    """This rank's share of every global batch of ``batch_size`` (``what`` names the setting)."""
    sharded_data.per_process_batch(batch_size, what)
    return sharded_data.loader(_dataset(cfg, data_source, tfm, is_train), batch_size, shuffle=shuffle,
                               seed=max(cfg.SEED, 0), drop_last=is_train and len(data_source) >= batch_size,
                               **_loader_kwargs(cfg))


def eval_loader(cfg, data_source, batch_size: int, tfm) -> DataLoader:
    """This rank's share of the images, each evaluated by exactly one rank."""
    return sharded_data.eval_loader(_dataset(cfg, data_source, tfm, False), batch_size, **_loader_kwargs(cfg))


def split_loaders(cfg, dataset):
    """The train stage's ``(train_loader_x, val_loader, test_loader)``, split across the processes."""
    tfm_train, tfm_test = build_transform(cfg, is_train=True), build_transform(cfg, is_train=False)
    shuffle = shuffles(cfg.DATALOADER.TRAIN_X.SAMPLER, "DATALOADER.TRAIN_X.SAMPLER")
    train = train_loader(cfg, dataset.train_x, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, tfm_train,
                         "DATALOADER.TRAIN_X.BATCH_SIZE", shuffle=shuffle)
    val = eval_loader(cfg, dataset.val, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test) if dataset.val else None
    return train, val, eval_loader(cfg, dataset.test, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test)
