"""The nine datasets that CoOp reads from a published ``split_zhou_<Name>.json``.

They share one reader; each class only states CoOp's folder names, the split file, its Google Drive
id and where the images come from (CoOp's DATASETS.md). Class names, labels and train/val/test
membership all come from the split file.
"""

from __future__ import annotations

import os
from typing import Tuple

from .coop_format import CoOpDataset, gdown_command, read_split


class SplitFileDataset(CoOpDataset):
    images = ""                          # image folder in dataset_dir; split paths are relative to it
    image_folders: Tuple[str, ...] = ()  # folders that must exist, when not just ``images``
    split_file = ""

    def read_data(self):
        self.image_dir = os.path.join(self.dataset_dir, self.images)
        for folder in self.image_folders or (self.images,):
            self.require_dir(os.path.join(self.dataset_dir, folder), "image folder")
        self.split_path = self.require_file(os.path.join(self.dataset_dir, self.split_file), "split file")
        return read_split(self.split_path, self.image_dir, type(self).__name__)

    @property
    def layout(self):
        folders = self.image_folders or (self.images,)
        return tuple(f"{folder}/  (images, as listed in the split file)" for folder in folders) + (self.split_file,)

    @property
    def downloads(self):
        return {self.split_file: self.split_id}


class Caltech101(SplitFileDataset):
    dataset_dir = "caltech-101"
    images = "101_ObjectCategories"
    split_file, split_id = "split_zhou_Caltech101.json", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"
    source = "http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz"


class OxfordPets(SplitFileDataset):
    dataset_dir = "oxford_pets"
    images = "images"
    split_file, split_id = "split_zhou_OxfordPets.json", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"
    source = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz"


class StanfordCars(SplitFileDataset):
    # Split paths are relative to the dataset folder: cars_train/xxxxx.jpg, cars_test/xxxxx.jpg.
    dataset_dir = "stanford_cars"
    images = ""
    image_folders = ("cars_train", "cars_test")
    split_file, split_id = "split_zhou_StanfordCars.json", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"
    source = "http://ai.stanford.edu/~jkrause/car196/cars_train.tgz and cars_test.tgz"


class OxfordFlowers(SplitFileDataset):
    dataset_dir = "oxford_flowers"
    images = "jpg"
    split_file, split_id = "split_zhou_OxfordFlowers.json", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"
    source = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz"


class Food101(SplitFileDataset):
    dataset_dir = "food-101"
    images = "images"
    split_file, split_id = "split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"
    source = "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"


class SUN397(SplitFileDataset):
    dataset_dir = "sun397"
    images = "SUN397"
    split_file, split_id = "split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"
    source = "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz"


class DescribableTextures(SplitFileDataset):
    dataset_dir = "dtd"
    images = "images"
    split_file, split_id = "split_zhou_DescribableTextures.json", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"
    source = "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"


class EuroSAT(SplitFileDataset):
    dataset_dir = "eurosat"
    images = "2750"
    split_file, split_id = "split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"
    source = "http://madm.dfki.de/files/sentinel/EuroSAT.zip"


class UCF101(SplitFileDataset):
    dataset_dir = "ucf101"
    images = "UCF-101-midframes"
    split_file, split_id = "split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"
    source = "UCF-101-midframes.zip, to extract in ucf101/: " + gdown_command(
        "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O", "UCF-101-midframes.zip")


SPLIT_FILE_DATASETS = (Caltech101, OxfordPets, StanfordCars, OxfordFlowers, Food101, SUN397,
                       DescribableTextures, EuroSAT, UCF101)
