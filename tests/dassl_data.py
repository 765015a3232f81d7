"""Test helpers that WRITE small datasets to disk in CoOp's folder layout (CoOp ``DATASETS.md``).

Images are tiny deterministic JPEGs whose colour and stripe pattern depend on the class, with
per-image noise, so a model can learn the classes from a few shots. Class names come from the
shipped lists in ``dpl_plugin/data/classnames`` so that readers can be checked against them.
Nothing here imports Dassl or ``dpl_plugin``: plain numpy, PIL and json.
"""

from __future__ import annotations

import colorsys
import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

_CLASSNAMES_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "dpl_plugin", "data", "classnames")

# Dassl name -> (dataset folder, folder the split's paths are relative to, split file, shipped list).
# StanfordCars' split paths are relative to the dataset folder itself (cars_train/..., cars_test/...).
SPLIT_LAYOUTS: Dict[str, Tuple[str, str, str, str]] = {
    "Caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", "caltech101"),
    "OxfordPets": ("oxford_pets", "images", "split_zhou_OxfordPets.json", "oxford_pets"),
    "StanfordCars": ("stanford_cars", "", "split_zhou_StanfordCars.json", "stanford_cars"),
    "OxfordFlowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", "oxford_flowers"),
    "Food101": ("food-101", "images", "split_zhou_Food101.json", "food101"),
    "SUN397": ("sun397", "SUN397", "split_zhou_SUN397.json", "sun397"),
    "DescribableTextures": ("dtd", "images", "split_zhou_DescribableTextures.json", "dtd"),
    "EuroSAT": ("eurosat", "2750", "split_zhou_EuroSAT.json", "eurosat"),
    "UCF101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", "ucf101"),
}

# Caltech101 folders that CoOp's reader renames; the others are used as they are.
_CALTECH_FOLDERS = {"airplane": "airplanes", "face": "Faces", "leopard": "Leopards", "motorbike": "Motorbikes"}

# ImageNet variants: Dassl name -> (dataset folder, image folder).
VARIANT_LAYOUTS = {
    "ImageNetV2": ("imagenetv2", "imagenetv2-matched-frequency-format-val"),
    "ImageNetSketch": ("imagenet-sketch", "images"),
    "ImageNetA": ("imagenet-adversarial", "imagenet-a"),
    "ImageNetR": ("imagenet-rendition", "imagenet-r"),
}


def shipped_classnames(dataset: str) -> List[str]:
    """The shipped list ``dpl_plugin/data/classnames/<dataset>.txt`` (label order)."""
    with open(os.path.join(_CLASSNAMES_DIR, dataset + ".txt"), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def class_image(label: int, num_classes: int, index: int, size: int = 32, seed: int = 0) -> Image.Image:
    """A deterministic image for (label, index): class colour (hue) + class stripe frequency/direction,
    plus image-specific noise and phase so that images of one class are not identical."""
    rng = np.random.default_rng([seed, label, index])
    hue = label / max(num_classes, 1)
    colour = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9))
    yy, xx = np.mgrid[0:size, 0:size] / size
    coord = xx if label % 2 == 0 else yy
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + label % 5) * coord + rng.uniform(0, 2 * np.pi))
    img = colour[None, None, :] * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 0.05, (size, size, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def _save(path: str, img: Image.Image) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, quality=95)


def _split_counts(n: int) -> Tuple[int, int]:
    """(train, val) counts per class, CoOp's 50/20/30 proportions, each split getting >= 1 image."""
    if n < 3:
        raise ValueError("need at least 3 images per class (train, val and test)")
    n_train = max(1, round(n * 0.5))
    n_val = max(1, min(round(n * 0.2), n - n_train - 1))
    return n_train, n_val


def _relpath(dataset: str, classname: str, label: int, i: int) -> str:
    """A plausible per-dataset file path, relative to the split's path prefix."""
    folder = classname.replace(" ", "_").replace("/", "_")
    if dataset == "Caltech101":
        return f"{_CALTECH_FOLDERS.get(classname, classname)}/image_{i + 1:04d}.jpg"
    if dataset == "OxfordPets":  # flat folder, breed in the file name
        return f"{classname}_{i + 1}.jpg"
    if dataset == "StanfordCars":
        return f"cars_{'train' if i % 2 == 0 else 'test'}/{label:03d}{i:02d}.jpg"
    if dataset == "OxfordFlowers":
        return f"image_{label:03d}{i:02d}.jpg"
    if dataset == "SUN397":  # "outdoor apartment_building" <- a/apartment_building/outdoor
        parts = classname.split(" ")[::-1]
        return f"{parts[0][0]}/{'/'.join(parts)}/sun_{i:04d}.jpg"
    if dataset == "UCF101":
        action = classname.replace("_", "")
        return f"{action}/v_{action}_g{i + 1:02d}_c01.jpg"
    return f"{folder}/{folder}_{i + 1:04d}.jpg"


def write_split_dataset(root, dataset: str, num_classes: int = 4, images_per_class: int = 6, size: int = 32,
                        seed: int = 0, write_split: bool = True) -> List[str]:
    """Write ``root/<dataset folder>/<image folder>/...`` and its ``split_zhou_*.json`` (CoOp format:
    ``{"train"|"val"|"test": [[relative path, label, classname], ...]}``) for one of the nine
    split-file datasets (keys of ``SPLIT_LAYOUTS``). Classes are the first ``num_classes`` of the
    shipped list. Returns the class names in label order."""
    dataset_dir, prefix, split_file, shipped = SPLIT_LAYOUTS[dataset]
    names = shipped_classnames(shipped)[:num_classes]
    n_train, n_val = _split_counts(images_per_class)
    base = os.path.join(str(root), dataset_dir, prefix)
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(names):
        for i in range(images_per_class):
            rel = _relpath(dataset, name, label, i)
            _save(os.path.join(base, rel), class_image(label, num_classes, i, size, seed))
            part = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            split[part].append([rel, label, name])
    if write_split:
        with open(os.path.join(str(root), dataset_dir, split_file), "w", encoding="utf-8") as f:
            json.dump(split, f, indent=4)
    return names


def write_caltech101(root, num_classes: int = 4, images_per_class: int = 6, size: int = 32, seed: int = 0) -> List[str]:
    """``root/caltech-101/101_ObjectCategories/<class>/image_XXXX.jpg`` + ``split_zhou_Caltech101.json``.
    Class names (returned, label order) are the first ``num_classes`` of CoOp's Caltech101 list."""
    return write_split_dataset(root, "Caltech101", num_classes, images_per_class, size, seed)


def imagenet_wnids(n: int = 1000) -> List[str]:
    """Synthetic, sorted WordNet-style ids; label i of ImageNet is the i-th sorted folder."""
    return [f"n{1000000 + i:08d}" for i in range(n)]


def write_imagenet_classnames(path, names: Sequence[str] = None) -> List[str]:
    """CoOp's ``classnames.txt``: ``<wnid> <class name>`` per line (names may contain spaces)."""
    names = list(names) if names is not None else shipped_classnames("imagenet")
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w", encoding="utf-8") as f:
        f.writelines(f"{w} {n}\n" for w, n in zip(imagenet_wnids(len(names)), names))
    return names


def write_imagenet(root, num_classes: int = 4, train_per_class: int = 4, val_per_class: int = 2, size: int = 32,
                   seed: int = 0, classnames_txt: bool = True) -> List[str]:
    """``root/imagenet/images/{train,val}/<wnid>/*.JPEG`` for the first ``num_classes`` wnids, plus the
    full 1000-line ``classnames.txt``. Returns the class names of the written classes (label order)."""
    names = shipped_classnames("imagenet")
    wnids = imagenet_wnids()
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label in range(num_classes):
            for i in range(count):
                path = os.path.join(str(root), "imagenet", "images", split, wnids[label],
                                    f"{wnids[label]}_{split}_{i}.JPEG")
                _save(path, class_image(label, num_classes, i + (1000 if split == "val" else 0), size, seed))
    if classnames_txt:
        write_imagenet_classnames(os.path.join(str(root), "imagenet", "classnames.txt"))
    return names[:num_classes]


def write_imagenet_variant(root, dataset: str, labels: Sequence[int] = (0, 1, 2), images_per_class: int = 2,
                           size: int = 32, seed: int = 0, classnames_txt: bool = True) -> List[str]:
    """An ImageNet variant (keys of ``VARIANT_LAYOUTS``) holding images of the given ImageNet labels.
    ImageNetV2 uses folders ``0``..``999`` (all created, empty where not in ``labels``); the others use
    wnid folders. ImageNet-A/R also get a ``README.txt`` in the image folder, as the real archives do.
    Returns the ImageNet class names of ``labels``."""
    dataset_dir, image_dir = VARIANT_LAYOUTS[dataset]
    names, wnids = shipped_classnames("imagenet"), imagenet_wnids()
    base = os.path.join(str(root), dataset_dir, image_dir)
    if dataset == "ImageNetV2":
        for label in range(1000):
            os.makedirs(os.path.join(base, str(label)), exist_ok=True)
    for label in labels:
        folder = str(label) if dataset == "ImageNetV2" else wnids[label]
        for i in range(images_per_class):
            _save(os.path.join(base, folder, f"{i}.jpg"), class_image(label, 1000, i, size, seed))
    if dataset in ("ImageNetA", "ImageNetR"):
        with open(os.path.join(base, "README.txt"), "w") as f:
            f.write("not a class folder\n")
    if classnames_txt:
        write_imagenet_classnames(os.path.join(str(root), dataset_dir, "classnames.txt"))
    return [names[label] for label in labels]


def write_fgvc_aircraft(root, num_classes: int = 100, images_per_class: int = 3, size: int = 16,
                        seed: int = 0) -> List[str]:
    """``root/fgvc_aircraft/{images/<id>.jpg, variants.txt, images_variant_{train,val,test}.txt}`` (the
    ``data/`` folder of fgvc-aircraft-2013b). ``variants.txt`` lists the first ``num_classes`` names of
    the shipped list; each class gets ``images_per_class`` images split round-robin over train/val/test."""
    names = shipped_classnames("fgvc_aircraft")[:num_classes]
    ddir = os.path.join(str(root), "fgvc_aircraft")
    lines = {"train": [], "val": [], "test": []}
    for label, name in enumerate(names):
        for i in range(images_per_class):
            image_id = f"{1000000 + label * 100 + i:07d}"
            _save(os.path.join(ddir, "images", image_id + ".jpg"), class_image(label, num_classes, i, size, seed))
            lines[("train", "val", "test")[i % 3]].append(f"{image_id} {name}\n")
    with open(os.path.join(ddir, "variants.txt"), "w", encoding="utf-8") as f:
        f.writelines(n + "\n" for n in names)
    for split, split_lines in lines.items():
        with open(os.path.join(ddir, f"images_variant_{split}.txt"), "w", encoding="utf-8") as f:
            f.writelines(split_lines)
    return names
