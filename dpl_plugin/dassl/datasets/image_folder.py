"""``ImageFolder``: a folder of your own images as a Dassl dataset, without writing a dataset class.

``DATASET.NAME ImageFolder`` reads ``DATASET.ROOT/<DATASET.FOLDER>/`` (``DATASET.ROOT`` itself when
``FOLDER`` is empty)::

    train/<class>/*.jpg          one folder per class (any of IMAGE_EXTENSIONS; other files are ignored)
    val/<class>/*.jpg            optional
    test/<class>/*.jpg           optional
    classnames.txt               optional: '<folder> <class name>' per line; else the folder names

Labels follow the sorted folder names of ``train/``. A missing ``val/`` or ``test/`` is split off
``train/`` per class with a fixed seed (whatever ``SEED``: every run sees the same split) and
written as a CoOp split file, ``split_imagefolder.json``, read from then on (delete it to split
again). Few-shot subsets are sampled as for CoOp's datasets (``NUM_SHOTS`` per class for training,
``min(NUM_SHOTS, 4)`` for validation) and cached as JSON under ``split_fewshot/``. Empty class
folders, images that cannot be read, and a class of ``train/`` missing from ``val/`` or ``test/``
(or one they have and ``train/`` has not) stop the run with one message naming them.
"""

from __future__ import annotations

import os
import random
from typing import Dict, List, Optional, Sequence, Tuple

from dassl.data.datasets import Datum

from .coop_format import (CoOpDataset, DatasetLayoutError, list_dirs, list_files, make_data, read_classnames, read_split,
                          save_split, subsample_classes)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SPLIT_FILE = "split_imagefolder.json"
CLASSNAMES_FILE = "classnames.txt"
# Shares of a class's train/ images split off when val/ or test/ is missing (CoOp's split of the
# datasets it split itself, e.g. DTD: 50% train, 20% val, 30% test).
VAL_SHARE, TEST_SHARE = 0.2, 0.3
SPLIT_SEED = 1
SPLITS = ("train", "val", "test")


class ImageFolder(CoOpDataset):
    layout = ("train/<class>/*.jpg  (one folder per class)",
              "val/<class>/*.jpg    (optional: else split off train/ and written to split_imagefolder.json)",
              "test/<class>/*.jpg   (optional: likewise)",
              "classnames.txt      (optional: '<folder> <class name>' per line)")
    source = "your own images; set DATASET.FOLDER to the folder's name under DATASET.ROOT"

    def folder(self, cfg) -> str:
        name = cfg.DATASET.get("FOLDER", "")
        return os.path.join(self.root, name) if name else self.root

    def expected(self) -> str:
        lines = [f"Expected layout of an ImageFolder dataset ({self.dataset_dir}):"]
        return "\n".join(lines + [f"    {entry}" for entry in self.layout])

    def build(self, cfg):
        train, val, test = self.read_data()
        train, val = self.fewshot(cfg.DATASET.NUM_SHOTS, train, val, cfg.SEED)
        return subsample_classes(train, val, test, subsample=cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"))

    # -- full splits -------------------------------------------------------------------------------
    def read_data(self):
        train_dir = self.require_dir(os.path.join(self.dataset_dir, "train"), "train/ folder")
        folders = list_dirs(train_dir)
        if not folders:
            raise self.error(f"{train_dir} has no class folders")
        present = {s: os.path.isdir(os.path.join(self.dataset_dir, s)) for s in ("val", "test")}
        split_path = os.path.join(self.dataset_dir, SPLIT_FILE)
        if not all(present.values()) and os.path.isfile(split_path):
            return self._read_split_file(split_path, len(folders))
        names = self.classnames_of(folders)
        splits = {s: self.read_images(s, folders, names) if s == "train" or present[s] else None for s in SPLITS}
        if all(present.values()):
            return splits["train"], splits["val"], splits["test"]
        train, val, test = split_off(splits["train"], splits["val"], splits["test"], self.error)
        save_split(train, val, test, split_path, self.dataset_dir)
        missing = " and ".join(s + "/" for s in ("val", "test") if not present[s])
        print(f"ImageFolder: {missing} split off train/ (seed {SPLIT_SEED}) and written to {split_path}")
        return train, val, test

    def classnames_of(self, folders: Sequence[str]) -> List[str]:
        path = os.path.join(self.dataset_dir, CLASSNAMES_FILE)
        if not os.path.isfile(path):
            return list(folders)
        names = read_classnames(path, "ImageFolder")
        missing = [f for f in folders if f not in names]
        if missing:
            raise self.error(f"{path} names no class for the folders {missing[:5]}: add a '<folder> <class name>' "
                             f"line for each, or delete the file to use the folder names")
        return [names[f] for f in folders]

    def read_images(self, split: str, folders: Sequence[str], names: Sequence[str]) -> List[Datum]:
        """Every image of ``split/<class>/`` with the labels of ``train/``'s folders; the split must
        have exactly those classes, none of them empty, every image readable."""
        split_dir = os.path.join(self.dataset_dir, split)
        found = list_dirs(split_dir)
        extra, absent = sorted(set(found) - set(folders)), [f for f in folders if f not in found]
        if extra:
            raise self.error(f"{split_dir} has class folders that train/ has not: {extra[:5]}. Every class needs "
                             f"training images: add them to train/, or remove these folders")
        if absent:
            raise self.error(f"the classes {absent[:5]} of train/ are missing from {split_dir}: add a folder with "
                             f"images for each, or remove {split_dir} to split it off train/")
        entries, empty = [], []
        for label, (folder, name) in enumerate(zip(folders, names)):
            class_dir = os.path.join(split_dir, folder)
            images = [f for f in list_files(class_dir) if f.lower().endswith(IMAGE_EXTENSIONS)]
            if not images:
                empty.append(class_dir)
            entries += [(os.path.join(class_dir, f), label, name) for f in images]
        if empty:
            raise self.error(f"{len(empty)} class folder(s) without images ({', '.join(IMAGE_EXTENSIONS)}): "
                             f"{empty[:5]}. Add images, or remove the folder(s) from every split")
        check_readable([path for path, _, _ in entries], self.error)
        return make_data(entries, split_dir, "ImageFolder")

    def _read_split_file(self, path: str, num_classes: int):
        train, val, test = read_split(path, self.dataset_dir, "ImageFolder")
        labels = {d.label for d in train}
        if len(labels) != num_classes:
            raise self.error(f"{path} has {len(labels)} classes but train/ now has {num_classes} class folders: "
                             f"delete {path} to split the current folders again")
        return train, val, test

    # -- few-shot subsets ---------------------------------------------------------------------------
    def fewshot(self, shots: int, train: List[Datum], val: List[Datum], seed: int) -> Tuple[List[Datum], List[Datum]]:
        """``shots`` per class from train and ``min(shots, 4)`` from val, Dassl's sampling (Python
        ``random``, seeded by ``SEED``); cached as ``split_fewshot/shot_K-seed_S.json``."""
        if shots < 1:
            return train, val
        path = os.path.join(self.split_fewshot_dir, f"shot_{shots}-seed_{seed}.json")
        if os.path.isfile(path):
            print(f"Loading the few-shot split {path}")
            train, val, _ = read_split(path, self.dataset_dir, "ImageFolder")
            return train, val
        train = self.generate_fewshot_dataset(train, num_shots=shots)
        val = self.generate_fewshot_dataset(val, num_shots=min(shots, 4))
        try:
            save_split(train, val, [], path, self.dataset_dir)
            print(f"Saved the few-shot split to {path}")
        except OSError as err:  # a read-only folder: the split is still used, just not cached
            print(f"Could not write the few-shot split {path}: {err}")
        return train, val

    def error(self, message: str) -> DatasetLayoutError:
        return DatasetLayoutError(f"ImageFolder ({self.dataset_dir}): {message}")


def check_readable(paths: Sequence[str], error) -> None:
    """Open every image's header (cheap: no pixel is decoded); name the ones that fail."""
    from PIL import Image, UnidentifiedImageError

    bad = []
    for path in paths:
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError, ValueError) as err:
            bad.append(f"{path} ({type(err).__name__})")
    if bad:
        shown = "\n  ".join(bad[:5]) + ("\n  ..." if len(bad) > 5 else "")
        raise error(f"{len(bad)} image(s) cannot be read:\n  {shown}\nReplace or remove them")


def split_off(train: List[Datum], val: Optional[List[Datum]], test: Optional[List[Datum]], error,
              seed: int = SPLIT_SEED):
    """Split the missing ``val``/``test`` off ``train`` per class (VAL_SHARE, TEST_SHARE of a class's
    images, at least one each), with a private generator: the same split for every run."""
    rng = random.Random(seed)
    by_label: Dict[int, List[Datum]] = {}
    for d in sorted(train, key=lambda d: d.impath):
        by_label.setdefault(d.label, []).append(d)
    out = {"train": [], "val": [] if val is None else list(val), "test": [] if test is None else list(test)}
    wanted = [(s, share) for s, share, given in (("val", VAL_SHARE, val), ("test", TEST_SHARE, test)) if given is None]
    for label in sorted(by_label):
        items = by_label[label]
        if len(items) < len(wanted) + 1:
            raise error(f"class '{items[0].classname}' has {len(items)} image(s) in train/: at least "
                        f"{len(wanted) + 1} are needed to split off {' and '.join(s for s, _ in wanted)}. Add images, "
                        f"or give {' and '.join(s + '/' for s, _ in wanted)} folder(s)")
        rng.shuffle(items)
        start = 0
        for split, share in wanted:
            n = max(1, round(len(items) * share))
            n = min(n, len(items) - start - 1)  # leave at least one training image
            out[split] += items[start:start + n]
            start += n
        out["train"] += items[start:]
    return out["train"], out["val"], out["test"]


__all__ = ["CLASSNAMES_FILE", "IMAGE_EXTENSIONS", "ImageFolder", "SPLIT_FILE", "split_off"]
