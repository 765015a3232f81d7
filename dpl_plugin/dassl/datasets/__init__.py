"""CoOp's 15 datasets for Dassl, under CoOp's registry names, folders, split files and caches,
``Demo``, the offline demo task, and ``ImageFolder``, a folder of your own images.

Importing this package registers nothing: call :func:`register_datasets` (the plugin's entry points
do). It skips every name that is already registered, so a CoOp fork that registered its own
readers first keeps them and nothing clashes (Dassl's registry raises ``KeyError`` on duplicates).
"""

from __future__ import annotations

from typing import List

from .coop_format import DatasetLayoutError, read_split, save_split, subsample_classes
from .demo import Demo
from .fgvc_aircraft import FGVCAircraft
from .image_folder import ImageFolder
from .imagenet import IMAGENET_DATASETS, ImageNet, ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2
from .split_datasets import (SPLIT_FILE_DATASETS, SUN397, UCF101, Caltech101, DescribableTextures, EuroSAT, Food101,
                             OxfordFlowers, OxfordPets, StanfordCars)

# In CoOp's order (train.py imports); the class name is the registry name (Dassl keys by __name__).
DATASETS = (OxfordPets, OxfordFlowers, FGVCAircraft, DescribableTextures, EuroSAT, StanfordCars, Food101, SUN397,
            Caltech101, UCF101) + IMAGENET_DATASETS + (Demo, ImageFolder)
DATASET_NAMES = tuple(cls.__name__ for cls in DATASETS)


def register_datasets(registry=None) -> List[str]:
    """Register the datasets in Dassl's ``DATASET_REGISTRY`` (or ``registry``) under every name not
    already taken. Returns the names registered by this call (empty when called again)."""
    if registry is None:
        from dassl.data.datasets import DATASET_REGISTRY as registry
    taken = set(registry.registered_names())
    added = []
    for cls in DATASETS:
        if cls.__name__ not in taken:
            registry.register(cls)
            added.append(cls.__name__)
    return added


__all__ = ["DATASETS", "DATASET_NAMES", "DatasetLayoutError", "register_datasets", "read_split", "save_split",
           "subsample_classes", "SPLIT_FILE_DATASETS"] + list(DATASET_NAMES)
