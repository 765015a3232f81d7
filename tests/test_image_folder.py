"""ImageFolder: a folder of one's own images as a Dassl dataset (layouts, split file, few-shot cache,
bad layouts), and the README's three commands from a folder to a searched, trained and evaluated model."""

import json
import os
import random
import re

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

import torch  # noqa: E402
from dassl.config import get_cfg_default  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import make_clip  # noqa: E402
from dpl_plugin.dassl import extend_cfg  # noqa: E402
from dpl_plugin.dassl.datasets import DatasetLayoutError, ImageFolder  # noqa: E402
from dpl_plugin.dassl.datasets.image_folder import SPLIT_FILE  # noqa: E402
from train_runs import REPO, TINY_OPTS, Run, run_all  # noqa: E402

CLASSES = ("daisy", "red_rose", "tulip")


def write_folder(root, name="flowers", splits=("train",), per_class=6, classes=CLASSES):
    """``root/name/<split>/<class>/<i>.png``: small images whose colour depends on the class."""
    for split in splits:
        for c, cls in enumerate(classes):
            folder = os.path.join(root, name, split, cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (12, 12), (40 * c + i, 200 - 50 * c, 30 * i % 255)).save(os.path.join(folder, f"{i}.png"))
    return os.path.join(root, name)


def build(root, folder="flowers", shots=0, seed=1):
    cfg = extend_cfg(get_cfg_default())
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.FOLDER = str(root), "ImageFolder", folder
    cfg.DATASET.NUM_SHOTS, cfg.SEED = shots, seed
    random.seed(seed)  # Dassl's few-shot sampling draws from Python's random, seeded by SEED in train.py
    return ImageFolder(cfg)


def paths(items):
    return sorted(d.impath for d in items)


def test_train_only_is_split_once_into_a_json_split_file(tmp_path):
    folder = write_folder(tmp_path)
    ds = build(tmp_path)
    assert ds.classnames == list(CLASSES) and ds.num_classes == 3
    # 6 images per class: 20% -> 1 val, 30% -> 2 test, 3 train; disjoint, all from train/
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (9, 3, 6)
    assert not set(paths(ds.train_x)) & set(paths(ds.val)) and not set(paths(ds.val)) & set(paths(ds.test))
    with open(os.path.join(folder, SPLIT_FILE)) as f:  # CoOp's format, paths relative to the folder
        split = json.load(f)
    assert split["val"][0][0].startswith("train/") and {r[2] for r in split["test"]} == set(CLASSES)
    again = build(tmp_path, seed=2)  # the split does not depend on SEED
    assert paths(again.test) == paths(ds.test) and paths(again.val) == paths(ds.val)


def test_given_splits_are_read_as_they_are_with_classnames_from_a_file(tmp_path):
    folder = write_folder(tmp_path, splits=("train", "val", "test"), per_class=3)
    with open(os.path.join(folder, "classnames.txt"), "w") as f:
        f.write("daisy common daisy\nred_rose red rose\ntulip tulip\n")
    ds = build(tmp_path)
    assert ds.classnames == ["common daisy", "red rose", "tulip"]
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (9, 9, 9)
    assert all(d.impath.split(os.sep)[-3] == "test" for d in ds.test)
    assert not os.path.exists(os.path.join(folder, SPLIT_FILE))


def test_few_shot_subsets_are_cached_as_json_and_reused(tmp_path):
    folder = write_folder(tmp_path, per_class=10)
    ds = build(tmp_path, shots=2)
    assert len(ds.train_x) == 6 and len(ds.val) == 6  # 2 per class; val min(2, 4) = 2 per class
    cache = os.path.join(folder, "split_fewshot", "shot_2-seed_1.json")
    with open(cache) as f:
        assert len(json.load(f)["train"]) == 6
    assert paths(build(tmp_path, shots=2).train_x) == paths(ds.train_x)  # read back, not drawn again
    assert paths(build(tmp_path, shots=2, seed=2).train_x) != paths(ds.train_x)  # another seed, another subset


@pytest.mark.parametrize("fault, message", [
    ("empty", r"class folder\(s\) without images .*flowers/train/tulip"),
    ("unreadable", r"1 image\(s\) cannot be read:\n  .*red_rose/3.png \(UnidentifiedImageError\)"),
    ("missing_from_test", r"the classes \['tulip'\] of train/ are missing from .*flowers/test"),
    ("extra_in_val", r"flowers/val has class folders that train/ has not: \['lily'\]"),
    ("no_train", r"train/ folder not found: .*flowers/train\nExpected layout"),
    ("too_few", r"class 'tulip' has 2 image\(s\) in train/: at least 3 are needed to split off val and test"),
    ("classnames", r"classnames.txt names no class for the folders \['tulip'\]"),
])
def test_bad_layouts_get_one_clear_message(tmp_path, fault, message):
    folder = write_folder(tmp_path, splits=("train", "val", "test") if fault in ("missing_from_test", "extra_in_val")
                          else ("train",))
    if fault == "empty":
        for f in os.listdir(os.path.join(folder, "train", "tulip")):
            os.remove(os.path.join(folder, "train", "tulip", f))
    elif fault == "unreadable":
        with open(os.path.join(folder, "train", "red_rose", "3.png"), "w") as f:
            f.write("not an image")
    elif fault == "missing_from_test":
        for f in os.listdir(os.path.join(folder, "test", "tulip")):
            os.remove(os.path.join(folder, "test", "tulip", f))
        os.rmdir(os.path.join(folder, "test", "tulip"))
    elif fault == "extra_in_val":
        os.makedirs(os.path.join(folder, "val", "lily"))
    elif fault == "no_train":
        os.rename(os.path.join(folder, "train"), os.path.join(folder, "images"))
    elif fault == "too_few":
        for f in ("2.png", "3.png", "4.png", "5.png"):
            os.remove(os.path.join(folder, "train", "tulip", f))
    elif fault == "classnames":
        with open(os.path.join(folder, "classnames.txt"), "w") as f:
            f.write("daisy daisy\nred_rose rose\n")
    with pytest.raises(DatasetLayoutError, match=message):
        build(tmp_path)
    assert not os.path.exists(os.path.join(folder, SPLIT_FILE))  # nothing written from a bad layout


def test_readme_three_commands_search_train_and_evaluate_a_folder(tmp_path):
    """The README's how-to, with the tiny CLIP and the tiny overrides: search, train (reusing the
    search), evaluate (the trained model reloaded)."""
    with open(os.path.join(REPO, "README.md")) as f:
        section = f.read().split("### Your own images")[1].split("\n### ")[0]
    commands = re.findall(r"^python train\.py .*(?:\n  .*)*", section, re.MULTILINE)
    assert len(commands) == 3, section
    write_folder(tmp_path / "data", per_class=10)
    clip = str(tmp_path / "tiny_clip.pt")
    torch.save(make_clip().state_dict(), clip)
    out = str(tmp_path / "output" / "flowers" / "DPL_CoOp" / "seed1")
    tiny = ["MODEL.BACKBONE.NAME", clip, *TINY_OPTS]

    def args(command):  # the data under tmp_path/data, the output under tmp_path/output
        words = command.replace("\\\n", " ").replace("~/data", str(tmp_path / "data")).split()[2:]
        return [str(tmp_path / w) if w.startswith("output/") else w for w in words] + tiny

    runs = [Run(args(c), out) for c in commands]
    for run in runs:  # in order: each builds on the one before
        run_all([run])
    search, train, evaluate = (r.ok() for r in runs)
    assert "Search finished" in search and os.path.isfile(os.path.join(out, "search", "searched_config.yaml"))
    assert "Using the finished search" in train and "Finish training" in train
    accuracy = re.findall(r"^\* accuracy: ([\d.]+)%", train, re.MULTILINE)[-1]
    assert re.findall(r"^\* accuracy: ([\d.]+)%", evaluate, re.MULTILINE)[-1] == accuracy
