"""ImageNet and its test-only variants (V2, Sketch, A, R), read as CoOp reads them.

All take class names from CoOp's ``classnames.txt`` (``<wnid> <class name>`` lines, CLIP's names).
ImageNet labels are the sorted wnid folders of ``images/train``; the variants keep ImageNet's names:
V2 by label index (folders ``0``..``999``), Sketch by wnid (all 1000), A and R by wnid for their
200-class subsets, relabelled 0..199 in sorted wnid order as in CoOp.
"""

from __future__ import annotations

import os
import warnings

from .coop_format import (CoOpDataset, DatasetLayoutError, fewshot_split, heldout_fewshot, list_dirs,
                          list_files, load_cache, make_data, read_classnames, save_cache, subsample_classes)

CLASSNAMES_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"  # CoOp's classnames.txt on Google Drive
_CLASSNAMES_LINE = "classnames.txt  ('<wnid> <class name>' per line; the one from imagenet/)"


def read_class_folders(image_dir, folders, labels, names, dataset):
    """Datum lists for ``image_dir/<folder>/*`` with ``labels[i]``/``names[i]`` for ``folders[i]``."""
    entries = []
    for folder, label, name in zip(folders, labels, names):
        class_dir = os.path.join(image_dir, folder)
        entries += [(os.path.join(class_dir, f), label, name) for f in list_files(class_dir)]
    return make_data(entries, image_dir, dataset)


def _names_for(folders, classnames, path, dataset):
    unknown = [f for f in folders if f not in classnames]
    if unknown:
        raise DatasetLayoutError(f"{dataset}: folders {unknown[:5]} of {path} are not in classnames.txt")
    return [classnames[f] for f in folders]


class ImageNet(CoOpDataset):
    dataset_dir = "imagenet"
    layout = ("images/train/<wnid>/*.JPEG  (1000 folders like n01440764)",
              "images/val/<wnid>/*.JPEG  (the validation set, sorted into the same wnid folders)",
              "classnames.txt  ('<wnid> <class name>' per line)")
    source = "https://image-net.org (ILSVRC-2012 train and val)"
    downloads = {"classnames.txt": CLASSNAMES_ID}

    def build(self, cfg):
        train_all, _, test = self.read_data()
        shots = cfg.DATASET.NUM_SHOTS
        train, _ = fewshot_split(self, self.split_fewshot_dir, shots, cfg.SEED, train_all)  # CoOp's cache
        # ImageNet is evaluated on ILSVRC's val set, which CoOp also uses as the validation split. With
        # few shots, validate on min(shots, 4) other *training* images per class instead, so that
        # nothing (the length search's alpha in particular) is ever tuned on test images.
        val = heldout_fewshot(train_all, train, min(shots, 4), cfg.SEED) if shots >= 1 else test
        return subsample_classes(train, val, test, subsample=cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"))

    def read_data(self):
        self.image_dir = os.path.join(self.dataset_dir, "images")
        # The cache of the full folder scan (CoOp's preprocessed.pkl, as JSON): absolute paths.
        self.preprocessed = os.path.join(self.dataset_dir, "preprocessed.json")
        data = load_cache(self.preprocessed, ("train", "test"), "ImageNet", sample_only=True)
        if data is not None:
            return data["train"], None, data["test"]

        classnames = read_classnames(self.require_file(os.path.join(self.dataset_dir, "classnames.txt")))
        train_dir = self.require_dir(os.path.join(self.image_dir, "train"), "image folder")
        val_dir = self.require_dir(os.path.join(self.image_dir, "val"), "image folder")
        wnids = list_dirs(train_dir)
        label_of = {w: i for i, w in enumerate(wnids)}
        train = read_class_folders(train_dir, wnids, range(len(wnids)), _names_for(wnids, classnames, train_dir,
                                                                                    "ImageNet"), "ImageNet")
        val_wnids = list_dirs(val_dir)
        if any(w not in label_of for w in val_wnids):  # labels must agree between train and val
            raise DatasetLayoutError(f"ImageNet: {val_dir} has class folders that {train_dir} does not have: "
                                     f"{[w for w in val_wnids if w not in label_of][:5]}")
        test = read_class_folders(val_dir, val_wnids, [label_of[w] for w in val_wnids],
                                  _names_for(val_wnids, classnames, val_dir, "ImageNet"), "ImageNet")
        save_cache({"train": train, "test": test}, self.preprocessed)
        return train, None, test


class _ImageNetVariant(CoOpDataset):
    """Test-only: the whole folder is both train_x (Dassl needs it for the class names) and test;
    NUM_SHOTS and SUBSAMPLE_CLASSES do not apply (as in CoOp)."""

    images = ""
    downloads = {"classnames.txt": CLASSNAMES_ID}

    def build(self, cfg):
        if cfg.DATASET.get("SUBSAMPLE_CLASSES", "all") != "all":
            warnings.warn(f"{type(self).__name__} is test-only: DATASET.SUBSAMPLE_CLASSES is ignored (as in CoOp)")
        self.image_dir = self.require_dir(os.path.join(self.dataset_dir, self.images), "image folder")
        data = self.read_folders(self.read_imagenet_classnames())
        return data, None, data

    def read_imagenet_classnames(self):
        # CoOp asks for a copy of imagenet/classnames.txt in each variant's folder; fall back to the
        # original so that the copy is optional.
        for path in (os.path.join(self.dataset_dir, "classnames.txt"),
                     os.path.join(self.root, "imagenet", "classnames.txt")):
            if os.path.isfile(path):
                return read_classnames(path, type(self).__name__)
        raise self.missing("classnames.txt (here or in imagenet/)", os.path.join(self.dataset_dir, "classnames.txt"))

    def read_folders(self, classnames):
        folders = list_dirs(self.image_dir)
        return read_class_folders(self.image_dir, folders, range(len(folders)),
                                  _names_for(folders, classnames, self.image_dir, type(self).__name__),
                                  type(self).__name__)


class ImageNetV2(_ImageNetVariant):
    dataset_dir = "imagenetv2"
    images = "imagenetv2-matched-frequency-format-val"
    layout = (images + "/<label>/*.jpeg  (folders 0..999 = ImageNet labels)", _CLASSNAMES_LINE)
    source = "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz"

    def read_folders(self, classnames):
        # Folder i holds ImageNet label i, whose name is line i of classnames.txt.
        folders = [str(label) for label in range(len(classnames))]
        for folder in folders:
            self.require_dir(os.path.join(self.image_dir, folder), "class folder")
        return read_class_folders(self.image_dir, folders, range(len(folders)), list(classnames.values()),
                                  "ImageNetV2")


class ImageNetSketch(_ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    images = "images"
    layout = ("images/<wnid>/*.JPEG  (1000 folders like n01440764)", _CLASSNAMES_LINE)
    source = "https://github.com/HaohanWang/ImageNet-Sketch"


class ImageNetA(_ImageNetVariant):
    dataset_dir = "imagenet-adversarial"
    images = "imagenet-a"
    layout = ("imagenet-a/<wnid>/*.jpg  (200 folders like n01498041)", _CLASSNAMES_LINE)
    source = "https://github.com/hendrycks/natural-adv-examples"


class ImageNetR(_ImageNetVariant):
    dataset_dir = "imagenet-rendition"
    images = "imagenet-r"
    layout = ("imagenet-r/<wnid>/*.jpg  (200 folders like n01443537)", _CLASSNAMES_LINE)
    source = "https://github.com/hendrycks/imagenet-r"


IMAGENET_DATASETS = (ImageNet, ImageNetV2, ImageNetSketch, ImageNetA, ImageNetR)
