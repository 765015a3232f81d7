"""FGVCAircraft: no CoOp split file; the dataset's own variant lists define the splits (as in CoOp)."""

from __future__ import annotations

import os

from .coop_format import CoOpDataset, DatasetLayoutError, make_data

_SPLITS = ("train", "val", "test")


class FGVCAircraft(CoOpDataset):
    dataset_dir = "fgvc_aircraft"
    layout = ("images/<id>.jpg", "variants.txt  (one class per line; label = line index)",
              "images_variant_train.txt, images_variant_val.txt, images_variant_test.txt  ('<id> <variant>' lines)")
    source = ("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
              "(its data/ folder, renamed fgvc_aircraft)")

    def read_data(self):
        self.image_dir = self.require_dir(os.path.join(self.dataset_dir, "images"), "image folder")
        variants = self.require_file(os.path.join(self.dataset_dir, "variants.txt"))
        with open(variants, encoding="utf-8") as f:
            classnames = [line.strip() for line in f if line.strip()]
        label_of = {name: label for label, name in enumerate(classnames)}
        return tuple(self._read_list(f"images_variant_{split}.txt", label_of) for split in _SPLITS)

    def _read_list(self, fname, label_of):
        path = self.require_file(os.path.join(self.dataset_dir, fname))
        entries = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                image_id, _, variant = line.strip().partition(" ")
                if not image_id:
                    continue
                if variant not in label_of:
                    raise DatasetLayoutError(f"FGVCAircraft: {path}: variant {variant!r} is not in variants.txt")
                entries.append((os.path.join(self.image_dir, image_id + ".jpg"), label_of[variant], variant))
        return make_data(entries, path, "FGVCAircraft")
