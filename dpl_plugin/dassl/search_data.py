"""The search stage's data, from a Dassl dataset: prompts learn on the few-shot training split,
``alpha`` on its validation split (as the official DPL code)."""

from __future__ import annotations

from dassl.data.data_manager import build_data_loader
from dassl.data.transforms import build_transform

from ..errors import OptionError
from ..runtime import distributed
from . import distributed_data


def search_loaders(cfg, dataset, batch_size: int, val_batch_size: int):
    """Training batches (train transforms) and a *shuffled* validation loader (test transforms).

    Shuffled, so that cycling it shows ``alpha`` every validation image rather than the same first
    batch (the official DPL code steps ``alpha`` on ``next(iter(val_loader))``: with a sequential
    sampler, always the same first images).
    """
    if not dataset.val:
        raise OptionError(
            f"the length search tunes alpha on the validation split, but {cfg.DATASET.NAME} has none. Use a "
            f"dataset reader that provides one (CoOp's readers keep min(shots, 4) images per class), or skip "
            f"the search: TRAINER.DPL.MODE baseline, or MODE train with TRAINER.DPL.CONFIG_FILE")
    test_paths = {item.impath for item in dataset.test}
    if all(item.impath in test_paths for item in dataset.val):
        print(f"WARNING: the validation split of {cfg.DATASET.NAME} is part of its test split: the search "
              f"tunes alpha on test images")
    if distributed.active():  # several processes: each takes its share of every (global) batch
        return _split_loaders(cfg, dataset, batch_size, val_batch_size)
    train = build_data_loader(cfg, sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER, data_source=dataset.train_x,
                              batch_size=batch_size, tfm=build_transform(cfg, is_train=True), is_train=True)
    val = build_data_loader(cfg, sampler_type="RandomSampler", data_source=dataset.val,
                            batch_size=val_batch_size, tfm=build_transform(cfg, is_train=False), is_train=False)
    return train, val


def _split_loaders(cfg, dataset, batch_size: int, val_batch_size: int):
    shuffle = distributed_data.shuffles(cfg.DATALOADER.TRAIN_X.SAMPLER, "DATALOADER.TRAIN_X.SAMPLER")
    train = distributed_data.train_loader(cfg, dataset.train_x, batch_size, build_transform(cfg, is_train=True),
                                          "TRAINER.DPL.SEARCH.BATCH_SIZE", shuffle=shuffle)
    val = distributed_data.train_loader(cfg, dataset.val, val_batch_size, build_transform(cfg, is_train=False),
                                        "TRAINER.DPL.SEARCH.VAL_BATCH_SIZE", is_train=False)
    return train, val
