"""CoOp's on-disk dataset conventions, shared by all readers in this package.

Formats are CoOp's so that existing data folders and caches work unchanged:
- split files ``split_zhou_<Name>.json``: ``{"train"|"val"|"test": [[relative path, label, classname], ...]}``;
- few-shot caches ``<dataset>/split_fewshot/shot_{K}-seed_{S}.json`` (``{"train", "val"}``, ImageNet
  ``{"train"}``), train = K shots per class and val = min(K, 4) per class, sampled with Dassl's
  ``generate_fewshot_dataset`` (Python ``random``), so a fresh cache equals CoOp's for the same seed
  and split file. CoOp pickles these (``.pkl``), and unpickling a file runs whatever code it holds:
  this project writes and reads its caches as JSON (rows ``[path, label, classname, domain]``) and
  never loads a pickle. A CoOp ``.pkl`` found instead is named, and the same split is sampled again
  (:mod:`.trust_pickle_cache` converts one whose origin is trusted);
- base/new class subsampling (``DATASET.SUBSAMPLE_CLASSES``) as CoOp's ``subsample_classes``.
Unlike CoOp, a missing split file is an error (with the download command) rather than a fresh
random split, so that results always use the published splits.
"""

from __future__ import annotations

import json
import math
import os
import random
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from dassl.data.datasets import DatasetBase, Datum

from ...errors import DPLError, OptionError
from ...runtime.atomic import atomic_write

DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"
SUBSAMPLE_CHOICES = ("all", "base", "new")


class DatasetLayoutError(DPLError, FileNotFoundError):
    """A dataset folder, split file or image is missing or malformed. The message says what is
    expected where and how to get it."""


def gdown_command(drive_id: str, dest: str) -> str:
    # The uc?id= URL form works with every gdown version (bare ids need gdown >= 4.3).
    return f"gdown 'https://drive.google.com/uc?id={drive_id}' -O '{dest}'"


# ------------------------------------------------------------------------------------------------
# Reading raw data


def make_data(entries: Sequence[Tuple[str, int, str]], source: str, dataset: str) -> List[Datum]:
    """Datum objects for ``(absolute path, label, classname)`` entries. Missing images raise one
    error naming them (Dassl's ``Datum`` would only fail an ``assert``)."""
    missing = [path for path, _, _ in entries if not os.path.isfile(path)]
    if missing:
        shown = "\n  ".join(missing[:5]) + ("\n  ..." if len(missing) > 5 else "")
        raise DatasetLayoutError(
            f"{dataset}: {len(missing)} of {len(entries)} images listed in {source} are missing on disk:\n"
            f"  {shown}\nThe image folder is incomplete or does not match the split (see {DATASETS_MD})."
        )
    empty = [path for path, _, _ in entries if os.path.getsize(path) == 0]
    if empty:
        shown = "\n  ".join(empty[:5]) + ("\n  ..." if len(empty) > 5 else "")
        raise DatasetLayoutError(
            f"{dataset}: {len(empty)} of {len(entries)} images listed in {source} are empty (0 bytes):\n  {shown}\n"
            f"An interrupted copy or download leaves such files: copy or download them again (see {DATASETS_MD})."
        )
    return [Datum(impath=path, label=int(label), classname=name) for path, label, name in entries]


def read_split(filepath: str, path_prefix: str, dataset: str = "dataset") -> Tuple[List[Datum], ...]:
    """(train, val, test) from a CoOp split JSON whose paths are relative to ``path_prefix``."""
    print(f"Reading split from {filepath}")
    try:
        with open(filepath, encoding="utf-8") as f:
            split = json.load(f)
        entries = {
            key: [(os.path.join(path_prefix, rel), int(label), str(name)) for rel, label, name in split[key]]
            for key in ("train", "val", "test")
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DatasetLayoutError(
            f"{dataset}: {filepath} is not a CoOp split file "
            f'({{"train"|"val"|"test": [[relative path, label, classname], ...]}}): {err!r}'
        ) from err
    return tuple(make_data(entries[key], f"{filepath} ({key!r})", dataset) for key in ("train", "val", "test"))


def save_split(train, val, test, filepath: str, path_prefix: str) -> None:
    """Write a CoOp split JSON, paths relative to ``path_prefix`` (indent 4, as Dassl's write_json)."""
    def rows(items):
        return [[os.path.relpath(d.impath, path_prefix).replace(os.sep, "/"), d.label, d.classname] for d in items]

    with atomic_write(filepath, "w") as f:
        json.dump({"train": rows(train), "val": rows(val), "test": rows(test)}, f, indent=4, separators=(",", ": "))


def read_classnames(filepath: str, dataset: str = "ImageNet") -> "OrderedDict[str, str]":
    """CoOp's ImageNet ``classnames.txt``: one ``<folder> <class name>`` per line -> {folder: name}."""
    names: "OrderedDict[str, str]" = OrderedDict()
    with open(filepath, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            folder, _, name = line.strip().partition(" ")
            if not name:
                raise DatasetLayoutError(
                    f"{dataset}: {filepath}:{lineno}: expected '<folder> <class name>', got {line!r}")
            names[folder] = name.strip()
    return names


def list_files(folder: str) -> List[str]:
    """Sorted non-hidden file names (sorted so that few-shot sampling does not depend on the file
    system's listing order)."""
    return sorted(f for f in os.listdir(folder) if not f.startswith(".") and os.path.isfile(os.path.join(folder, f)))


def list_dirs(folder: str) -> List[str]:
    """Sorted non-hidden sub-folders (files such as ImageNet-A's README.txt are skipped)."""
    return sorted(f for f in os.listdir(folder) if not f.startswith(".") and os.path.isdir(os.path.join(folder, f)))


# ------------------------------------------------------------------------------------------------
# Caches, few-shot sampling, class subsampling


def check_cached(items: Sequence, cache_path: str, dataset: str, sample_only: bool = False) -> None:
    """Fail clearly if a cache refers to images that are gone (the pickles hold absolute paths, so a
    moved data folder makes them stale). ``sample_only`` checks the first and last item (big caches)."""
    checked = [items[0], items[-1]] if sample_only and items else items
    for item in checked:
        impath = item[0] if isinstance(item, tuple) else getattr(item, "impath", "")
        if not os.path.isfile(impath):
            raise DatasetLayoutError(
                f"{dataset}: the cache {cache_path} lists {impath!r}, which does not exist "
                f"(was the data folder moved?). Delete the cache to rebuild it from the current folder."
            )
        if os.path.getsize(impath) == 0:
            raise DatasetLayoutError(f"{dataset}: the cache {cache_path} lists {impath!r}, which is empty (0 bytes; an "
                                     f"interrupted copy or download): copy or download it again")


def load_cache(path: str, keys: Sequence[str], dataset: str, sample_only: bool = False
               ) -> Optional[Dict[str, List[Datum]]]:
    """The JSON cache at ``path`` (``{key: [[path, label, classname, domain], ...]}``), or None when
    there is none. A CoOp pickle in its place (same name, ``.pkl``) is named and never loaded.
    ``sample_only``: check only the first and last image exist (ImageNet's 1.3 million)."""
    if not os.path.exists(path):
        pickled = os.path.splitext(path)[0] + ".pkl"
        if os.path.exists(pickled):
            print(f"Not reading {pickled}: it is a pickle, and loading one runs any code it holds. Sampling the same "
                  f"split again (CoOp's sampling, same seed and split file) into {os.path.basename(path)}. If you "
                  f"trust that file's origin and need exactly its split, convert it once with: python -m "
                  f"dpl_plugin.dassl.datasets.trust_pickle_cache {pickled}")
        return None
    rebuild = "delete it to rebuild it"
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        rows = {key: [(str(p), int(label), str(name), int(domain)) for p, label, name, domain in raw[key]]
                for key in keys}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DatasetLayoutError(f"{dataset}: the cache {path} is truncated or not a dpl-plugin cache ({err}): "
                                 f"{rebuild}") from None
    for key in keys:
        check_cached(rows[key], path, dataset, sample_only)
    return {key: [_datum(*row) for row in rows[key]] for key in keys}


def _datum(impath: str, label: int, classname: str, domain: int) -> Datum:
    """A Dassl ``Datum`` without its per-file existence check (as unpickling makes one): a cache's
    images are checked by :func:`check_cached`, once, or by sample for ImageNet's 1.3 million."""
    datum = Datum.__new__(Datum)
    datum._impath, datum._label, datum._domain, datum._classname = impath, label, domain, classname
    return datum


def save_cache(data: Dict[str, List[Datum]], path: str) -> None:
    rows = {key: [[d.impath, d.label, d.classname, d.domain] for d in items] for key, items in data.items()}
    try:  # atomic: parallel runs with the same shots and seed never read a half-written cache
        with atomic_write(path, "w") as f:
            json.dump(rows, f)
    except OSError as err:  # a read-only data folder: the data are still usable, just not cached
        warnings.warn(f"could not write the cache {path}: {err}")


def fewshot_split(dataset: DatasetBase, cache_dir: str, num_shots: int, seed: int, train: List[Datum],
                  val: Optional[List[Datum]] = None) -> Tuple[List[Datum], Optional[List[Datum]]]:
    """CoOp's few-shot step: ``num_shots`` per class from train and ``min(num_shots, 4)`` from val,
    loaded from / saved to ``cache_dir/shot_{K}-seed_{S}.json``. ``val=None`` (ImageNet) caches only
    ``{"train"}``. ``num_shots < 1`` returns the inputs unchanged."""
    if num_shots < 1:
        return train, val
    name = type(dataset).__name__
    keys = ("train",) if val is None else ("train", "val")
    path = os.path.join(cache_dir, f"shot_{num_shots}-seed_{seed}.json")
    data = load_cache(path, keys, name)
    if data is not None:
        print(f"Loading preprocessed few-shot data from {path}")
    else:
        data = {"train": dataset.generate_fewshot_dataset(train, num_shots=num_shots)}
        if val is not None:
            data["val"] = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        print(f"Saving preprocessed few-shot data to {path}")
        save_cache(data, path)
    warn_if_fewer_shots(data["train"], num_shots, name)
    return data["train"], data.get("val", val)


def shots_per_class(items: Sequence[Datum]) -> int:
    """The fewest training images of any class: the number of shots a few-shot split really has."""
    counts: Dict[int, int] = {}
    for d in items:
        counts[d.label] = counts.get(d.label, 0) + 1
    return min(counts.values()) if counts else 0


def warn_if_fewer_shots(items: Sequence[Datum], num_shots: int, dataset: str) -> None:
    """CoOp takes what exists when a class has fewer images than the shots asked for: say so, once."""
    real = shots_per_class(items)
    if 0 < real < num_shots:
        counts: Dict[str, int] = {}
        for d in items:
            counts[d.classname] = counts.get(d.classname, 0) + 1
        short = sorted(name for name, count in counts.items() if count < num_shots)
        shown = ", ".join(short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
        print(f"Warning: DATASET.NUM_SHOTS is {num_shots}, but {dataset} has only {real} training images in its "
              f"smallest class ({len(short)} classes have fewer than {num_shots}: {shown}); training on the images "
              f"that exist, as CoOp does. The results record {real} shots")


def heldout_fewshot(items: Sequence[Datum], exclude: Sequence[Datum], per_class: int, seed: int) -> List[Datum]:
    """``per_class`` items per label from ``items`` that are not in ``exclude``, drawn with a private
    generator seeded by ``seed`` (the global ``random`` state, which Dassl's sampling uses, is left as
    it is)."""
    taken = {d.impath for d in exclude}
    by_label: Dict[int, List[Datum]] = {}
    for d in items:
        if d.impath not in taken:
            by_label.setdefault(d.label, []).append(d)
    rng = random.Random(seed)
    return [d for label in sorted(by_label) for d in rng.sample(by_label[label], min(per_class, len(by_label[label])))]


def subsample_classes(*splits: List[Datum], subsample: str = "all") -> Tuple[List[Datum], ...]:
    """Keep the base (first half, rounded up, of the sorted labels of ``splits[0]``) or new (second
    half) classes in every split, relabelled from 0 in the same order; "all" keeps everything."""
    if subsample not in SUBSAMPLE_CHOICES:
        raise OptionError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
    if subsample == "all":
        return splits
    labels = sorted({item.label for item in splits[0]})
    half = math.ceil(len(labels) / 2)
    kept = labels[:half] if subsample == "base" else labels[half:]
    relabel = {old: new for new, old in enumerate(kept)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return tuple(
        [Datum(impath=d.impath, label=relabel[d.label], classname=d.classname) for d in split if d.label in relabel]
        for split in splits
    )


# ------------------------------------------------------------------------------------------------
# The reader skeleton


class CoOpDataset(DatasetBase):
    """``DATASET.ROOT/<dataset_dir>`` -> full splits (``read_data``) -> few-shot (cached) -> base/new.

    Subclasses set the class attributes and implement ``read_data() -> (train, val, test)``.
    As in CoOp, ``self.dataset_dir`` becomes the absolute folder on the instance.
    """

    dataset_dir = ""                  # folder under DATASET.ROOT (CoOp's name)
    layout: Tuple[str, ...] = ()      # expected content of dataset_dir, one entry per line, for errors
    source = ""                       # where to get the images (CoOp's DATASETS.md)
    downloads: Dict[str, str] = {}    # file in dataset_dir -> Google Drive id published by CoOp

    def __init__(self, cfg):
        self.root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = self.folder(cfg)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        self.require_dir(self.dataset_dir)
        train, val, test = self.build(cfg)
        if not train:
            raise DatasetLayoutError(f"{type(self).__name__}: no training images in {self.dataset_dir}")
        super().__init__(train_x=train, val=val, test=test)

    def folder(self, cfg) -> str:
        """The dataset's absolute folder: ``DATASET.ROOT/<dataset_dir>``."""
        return os.path.join(self.root, type(self).dataset_dir)

    def build(self, cfg):
        """The standard pipeline; test-only datasets override it."""
        train, val, test = self.read_data()
        train, val = fewshot_split(self, self.split_fewshot_dir, cfg.DATASET.NUM_SHOTS, cfg.SEED, train, val)
        # DATASET.SUBSAMPLE_CLASSES is CoOp's key, absent from Dassl's defaults (and from some forks).
        subsample = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
        if val is None:  # ImageNet: no val split of its own
            train, test = subsample_classes(train, test, subsample=subsample)
        else:
            train, val, test = subsample_classes(train, val, test, subsample=subsample)
        return train, val, test

    def read_data(self) -> Tuple[List[Datum], Optional[List[Datum]], List[Datum]]:
        raise NotImplementedError

    # Errors that say what is expected where --------------------------------------------------

    def expected(self) -> str:
        name = type(self).__name__
        lines = [f"Expected layout under DATASET.ROOT ({self.root}):", f"  {type(self).dataset_dir}/"]
        lines += [f"    {entry}" for entry in self.layout]
        if self.source:
            lines.append(f"Images: {self.source}")
        for fname, drive_id in self.downloads.items():
            lines.append(f"{fname}: {gdown_command(drive_id, os.path.join(self.dataset_dir, fname))}")
        lines.append(f"See {DATASETS_MD} ({name}).")
        return "\n".join(lines)

    def missing(self, what: str, path: str) -> DatasetLayoutError:
        return DatasetLayoutError(f"{type(self).__name__}: {what} not found: {path}\n{self.expected()}")

    def require_dir(self, path: str, what: str = "dataset folder") -> str:
        if not os.path.isdir(path):
            raise self.missing(what, path)
        return path

    def require_file(self, path: str, what: str = "file") -> str:
        if not os.path.isfile(path):
            raise self.missing(what, path)
        return path
