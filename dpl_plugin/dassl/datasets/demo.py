"""``Demo``: the offline demo task (:mod:`dpl_plugin.demo.task`) as a Dassl dataset.

On first use it writes the task's fixed image pools (shifted Fashion-MNIST) as PNG files with a
CoOp split file under ``DATASET.ROOT/dpl_demo_<shift>/``; from then on it is read exactly like the
benchmark datasets (few-shot sampling and caching, base/new classes), so ``scripts/dpl_search.sh
demo 16`` and ``train.py`` run on it as they do on ImageNet.
"""

from __future__ import annotations

import os
from collections import namedtuple

from ...demo.task import DEFAULT_SHIFT
from .coop_format import DatasetLayoutError, save_split
from .split_datasets import SplitFileDataset


class Demo(SplitFileDataset):
    shift = DEFAULT_SHIFT
    dataset_dir = f"dpl_demo_{shift}"
    images = "images"
    split_file = "split_demo.json"
    source = "written here from Fashion-MNIST on first use (apt-get install dataset-fashion-mnist)"

    @property
    def downloads(self):
        return {}

    def __init__(self, cfg):
        folder = os.path.join(os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT)), self.dataset_dir)
        if not os.path.isfile(os.path.join(folder, self.split_file)):
            self.write(folder)
        super().__init__(cfg)

    def write(self, folder: str) -> None:
        from PIL import Image

        from ...demo.fashion_mnist import CLASSNAMES
        from ...demo.task import demo_pools

        try:
            pools = demo_pools(self.shift)
        except FileNotFoundError as err:
            raise DatasetLayoutError(f"Demo: cannot build {folder}: {err}") from err
        print(f"Writing the demo dataset (Fashion-MNIST, shift '{self.shift}') to {folder}")
        image_dir = os.path.join(folder, self.images)
        splits = []
        for split, (images, labels) in zip(("train", "val", "test"), pools):
            rows = []
            for i, (image, label) in enumerate(zip(images, labels.tolist())):
                path = os.path.join(image_dir, split, f"{i:05d}.png")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Image.fromarray(image.numpy(), mode="L").save(path)
                rows.append(_Row(path, label, CLASSNAMES[label]))
            splits.append(rows)
        # The split file last (written atomically): its presence means the folder is complete.
        save_split(*splits, os.path.join(folder, self.split_file), image_dir)


# What save_split reads of a Dassl Datum (which would insist that the image exists already).
_Row = namedtuple("_Row", "impath label classname")
