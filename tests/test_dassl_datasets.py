"""The CoOp datasets registered in Dassl, built from small folders written in CoOp's layout."""

import json
import os
import pickle
import random
import subprocess
import sys

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

from dassl.config import get_cfg_default  # noqa: E402
from dassl.data.datasets import DATASET_REGISTRY, Datum  # noqa: E402
from dassl.utils import Registry  # noqa: E402

from dassl_data import (SPLIT_LAYOUTS, VARIANT_LAYOUTS, imagenet_wnids, shipped_classnames,  # noqa: E402
                        write_caltech101, write_fgvc_aircraft, write_imagenet, write_imagenet_variant,
                        write_split_dataset)
from dpl_plugin.dassl.datasets import DATASET_NAMES, DatasetLayoutError, read_split, register_datasets, save_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALTECH_SPLIT_ID = "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"
IMAGENET_CLASSNAMES_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"

register_datasets()


def make_cfg(root, name, shots=-1, seed=1, subsample="all"):
    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample  # CoOp's extend_cfg key
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.SEED = seed
    return cfg


def build(root, name, **kwargs):
    return DATASET_REGISTRY.get(name)(make_cfg(root, name, **kwargs))


def per_class(items):
    counts = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    return counts


def as_tuples(items):
    return [(d.impath, d.label, d.classname) for d in items]


# ------------------------------------------------------------------------------------------------
# Reading each layout


@pytest.mark.parametrize("name", sorted(SPLIT_LAYOUTS))
def test_split_file_datasets_read_coop_layout(tmp_path, name):
    names = write_split_dataset(tmp_path, name, num_classes=4, images_per_class=6)
    ds = build(tmp_path, name)
    assert ds.classnames == names == shipped_classnames(SPLIT_LAYOUTS[name][3])[:4]
    # 6 images per class -> 3 train, 1 val, 2 test (the writer's 50/20/30 split)
    assert per_class(ds.train_x) == {c: 3 for c in range(4)}
    assert per_class(ds.val) == {c: 1 for c in range(4)} and per_class(ds.test) == {c: 2 for c in range(4)}
    assert all(os.path.isfile(d.impath) and os.path.isabs(d.impath) for d in ds.train_x + ds.val + ds.test)
    assert ds.dataset_dir == os.path.join(str(tmp_path), SPLIT_LAYOUTS[name][0])


def test_caltech101_layout_matches_coop(tmp_path):
    names = write_caltech101(tmp_path)
    assert names == ["face", "leopard", "motorbike", "accordion"]
    ds = build(tmp_path, "Caltech101")
    assert ds.train_x[0].impath == str(tmp_path / "caltech-101" / "101_ObjectCategories" / "Faces" / "image_0001.jpg")
    assert ds.lab2cname == dict(enumerate(names)) and ds.num_classes == 4


def test_fgvc_aircraft_reads_variant_lists(tmp_path):
    write_fgvc_aircraft(tmp_path, num_classes=100, images_per_class=3, size=8)
    ds = build(tmp_path, "FGVCAircraft")
    assert ds.classnames == shipped_classnames("fgvc_aircraft")  # names with spaces and slashes included
    assert len(ds.train_x) == len(ds.val) == len(ds.test) == 100


def test_save_split_round_trip(tmp_path):
    write_caltech101(tmp_path)
    ddir = tmp_path / "caltech-101"
    image_dir = str(ddir / "101_ObjectCategories")
    splits = read_split(str(ddir / "split_zhou_Caltech101.json"), image_dir)
    save_split(*splits, str(tmp_path / "copy.json"), image_dir)
    assert (tmp_path / "copy.json").read_text() == (ddir / "split_zhou_Caltech101.json").read_text()
    assert [as_tuples(s) for s in read_split(str(tmp_path / "copy.json"), image_dir)] == [as_tuples(s) for s in splits]


# ------------------------------------------------------------------------------------------------
# Few-shot sampling and its cache


def test_fewshot_counts_and_cache_written_then_reused(tmp_path):
    write_caltech101(tmp_path, num_classes=3, images_per_class=20)  # 10 train, 4 val, 6 test per class
    random.seed(0)
    ds = build(tmp_path, "Caltech101", shots=8, seed=2)
    assert per_class(ds.train_x) == {c: 8 for c in range(3)}
    assert per_class(ds.val) == {c: 4 for c in range(3)}  # min(shots, 4)
    assert per_class(ds.test) == {c: 6 for c in range(3)}  # never few-shot sampled
    cache = tmp_path / "caltech-101" / "split_fewshot" / "shot_8-seed_2.json"
    with open(cache) as f:
        data = json.load(f)  # data only: [path, label, classname, domain] rows
    assert sorted(data) == ["train", "val"]
    assert [tuple(r[:3]) for r in data["train"]] == as_tuples(ds.train_x)
    assert [tuple(r[:3]) for r in data["val"]] == as_tuples(ds.val)

    random.seed(123)  # another random state: the split must come from the cache, not be resampled
    again = build(tmp_path, "Caltech101", shots=8, seed=2)
    assert as_tuples(again.train_x) == as_tuples(ds.train_x) and as_tuples(again.val) == as_tuples(ds.val)

    one = build(tmp_path, "Caltech101", shots=1, seed=2)
    assert per_class(one.train_x) == per_class(one.val) == {c: 1 for c in range(3)}
    assert (tmp_path / "caltech-101" / "split_fewshot" / "shot_1-seed_2.json").is_file()


class _RunsCode:
    """Unpickling this runs code: it writes a file (a crafted cache could do anything)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_coop_pickle_cache_is_never_loaded_and_can_be_converted_by_choice(tmp_path, capsys):
    write_caltech101(tmp_path, num_classes=2, images_per_class=10)
    full = build(tmp_path, "Caltech101")
    chosen = {"train": [full.train_x[4], full.train_x[7]], "val": [full.val[0], full.val[3]]}
    folder = tmp_path / "caltech-101" / "split_fewshot"
    os.makedirs(folder)
    marker = tmp_path / "code_ran"
    with open(folder / "shot_1-seed_5.pkl", "wb") as f:
        pickle.dump({**chosen, "payload": _RunsCode(marker)}, f, protocol=pickle.HIGHEST_PROTOCOL)
    random.seed(5)  # as train.py seeds it
    ds = build(tmp_path, "Caltech101", shots=1, seed=5)
    assert not marker.exists()  # the pickle was not loaded
    assert "Not reading " + str(folder / "shot_1-seed_5.pkl") in capsys.readouterr().out
    random.seed(5)  # the split is sampled as CoOp samples it
    assert as_tuples(ds.train_x) == as_tuples(full.generate_fewshot_dataset(full.train_x, num_shots=1))
    os.remove(folder / "shot_1-seed_5.json")
    with open(folder / "shot_1-seed_5.pkl", "wb") as f:  # a trusted CoOp cache, converted by choice
        pickle.dump(chosen, f, protocol=pickle.HIGHEST_PROTOCOL)
    subprocess.run([sys.executable, "-m", "dpl_plugin.dassl.datasets.trust_pickle_cache",
                    str(folder / "shot_1-seed_5.pkl")], check=True, cwd=REPO, capture_output=True)
    ds = build(tmp_path, "Caltech101", shots=1, seed=5)
    assert as_tuples(ds.train_x) == as_tuples(chosen["train"]) and as_tuples(ds.val) == as_tuples(chosen["val"])


@pytest.mark.parametrize("content", [b"", b'{"train": [["/x.jpg", 0, "a", 0]', b"\x80\x04garbage"])
def test_a_truncated_or_garbage_cache_names_the_file(tmp_path, content):
    write_caltech101(tmp_path, num_classes=2, images_per_class=10)
    folder = tmp_path / "caltech-101" / "split_fewshot"
    os.makedirs(folder)
    (folder / "shot_1-seed_1.json").write_bytes(content)
    with pytest.raises(DatasetLayoutError, match=r"the cache .*shot_1-seed_1\.json is truncated or not a dpl-plugin "
                                                 r"cache .*delete it to rebuild it"):
        build(tmp_path, "Caltech101", shots=1, seed=1)


def test_fewshot_sampling_equals_dassl_given_the_seed(tmp_path):
    """Fresh caches are sampled with Dassl's generate_fewshot_dataset from the split-file order, so
    they equal CoOp's for the same seed."""
    write_caltech101(tmp_path, num_classes=3, images_per_class=20)
    full = build(tmp_path, "Caltech101")
    random.seed(7)
    ds = build(tmp_path, "Caltech101", shots=4, seed=7)
    random.seed(7)
    expected_train = full.generate_fewshot_dataset(full.train_x, num_shots=4)
    expected_val = full.generate_fewshot_dataset(full.val, num_shots=4)
    assert as_tuples(ds.train_x) == as_tuples(expected_train) and as_tuples(ds.val) == as_tuples(expected_val)


def test_stale_cache_is_reported(tmp_path):
    """Caches hold absolute paths (as CoOp's): after moving the data folder they point nowhere."""
    write_caltech101(tmp_path / "old")
    build(tmp_path / "old", "Caltech101", shots=2, seed=1)
    os.rename(tmp_path / "old", tmp_path / "new")
    with pytest.raises(DatasetLayoutError, match=r"shot_2-seed_1\.json lists .*/old/caltech-101/.*Delete the cache"):
        build(tmp_path / "new", "Caltech101", shots=2, seed=1)


# ------------------------------------------------------------------------------------------------
# Base / new classes


def test_subsample_base_and_new(tmp_path):
    names = write_caltech101(tmp_path, num_classes=5, images_per_class=10)
    base = build(tmp_path, "Caltech101", shots=2, subsample="base")
    new = build(tmp_path, "Caltech101", shots=2, subsample="new")
    assert base.classnames == names[:3] and new.classnames == names[3:]  # ceil(5 / 2) = 3 base classes
    for ds, kept in ((base, names[:3]), (new, names[3:])):
        for split in (ds.train_x, ds.val, ds.test):
            assert sorted(per_class(split)) == list(range(len(kept)))  # relabelled from 0
            assert all(d.classname == kept[d.label] for d in split)
    assert per_class(new.train_x) == {0: 2, 1: 2}
    # the few-shot cache holds all classes; subsampling happens after it
    assert build(tmp_path, "Caltech101", shots=2).num_classes == 5


def test_subsample_validation_and_missing_key(tmp_path):
    write_caltech101(tmp_path)
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        build(tmp_path, "Caltech101", subsample="old")
    cfg = get_cfg_default()  # Dassl's defaults only: no SUBSAMPLE_CLASSES -> "all"
    cfg.DATASET.ROOT = str(tmp_path)
    assert DATASET_REGISTRY.get("Caltech101")(cfg).num_classes == 4


# ------------------------------------------------------------------------------------------------
# ImageNet and its variants


def test_imagenet_classnames_txt_and_val_is_test(tmp_path):
    names = write_imagenet(tmp_path, num_classes=4, train_per_class=4, val_per_class=2)
    ds = build(tmp_path, "ImageNet")
    assert ds.classnames == names == shipped_classnames("imagenet")[:4]  # "great white shark": spaces kept
    assert per_class(ds.train_x) == {c: 4 for c in range(4)} and per_class(ds.test) == {c: 2 for c in range(4)}
    assert ds.val is ds.test  # CoOp: the ILSVRC val set is both test and val
    assert (tmp_path / "imagenet" / "preprocessed.json").is_file()


def test_imagenet_fewshot_cache_holds_train_only_and_preprocessed_is_reused(tmp_path):
    write_imagenet(tmp_path, num_classes=4, train_per_class=4)
    ds = build(tmp_path, "ImageNet", shots=2, subsample="base")
    with open(tmp_path / "imagenet" / "split_fewshot" / "shot_2-seed_1.json") as f:
        assert sorted(json.load(f)) == ["train"]
    assert ds.classnames == shipped_classnames("imagenet")[:2] and per_class(ds.train_x) == {0: 2, 1: 2}
    assert per_class(ds.test) == {0: 2, 1: 2}
    # validation: other training images (never test images), min(shots, 4) per class, reproducible
    assert per_class(ds.val) == {0: 2, 1: 2}
    val_paths = {d.impath for d in ds.val}
    assert val_paths.isdisjoint(d.impath for d in ds.train_x) and val_paths.isdisjoint(d.impath for d in ds.test)
    assert all("/images/train/" in p for p in val_paths)
    assert as_tuples(build(tmp_path, "ImageNet", shots=2, subsample="base").val) == as_tuples(ds.val)
    # the folder scan is cached in preprocessed.json: a new class folder is not seen until it is deleted
    write_imagenet(tmp_path, num_classes=5, classnames_txt=False)
    assert build(tmp_path, "ImageNet").num_classes == 4
    os.remove(tmp_path / "imagenet" / "preprocessed.json")
    assert build(tmp_path, "ImageNet").num_classes == 5


def test_imagenet_missing_or_incomplete_classnames(tmp_path):
    write_imagenet(tmp_path, classnames_txt=False)
    with pytest.raises(DatasetLayoutError) as err:
        build(tmp_path, "ImageNet")
    msg = str(err.value)
    assert "classnames.txt" in msg and IMAGENET_CLASSNAMES_ID in msg and "images/train/<wnid>" in msg
    with open(tmp_path / "imagenet" / "classnames.txt", "w") as f:
        f.write(f"{imagenet_wnids()[0]} tench\n")
    with pytest.raises(DatasetLayoutError, match="not in classnames.txt"):
        build(tmp_path, "ImageNet")


@pytest.mark.parametrize("name", sorted(VARIANT_LAYOUTS))
def test_imagenet_variants_use_imagenet_names(tmp_path, name):
    labels = (3, 0, 7)
    names = write_imagenet_variant(tmp_path, name, labels=labels, images_per_class=2)
    ds = build(tmp_path, name, shots=1)  # test-only: NUM_SHOTS does not apply
    assert ds.val is None and ds.train_x is ds.test and len(ds.test) == 6
    imagenet_names = shipped_classnames("imagenet")
    if name == "ImageNetV2":  # folders are ImageNet labels: labels and names kept for all 1000
        assert ds.classnames == [imagenet_names[label] for label in sorted(labels)]
        assert sorted(per_class(ds.test)) == sorted(labels)
    else:  # wnid folders, relabelled in sorted wnid order (A and R: 200-class subsets)
        assert ds.classnames == [imagenet_names[label] for label in sorted(labels)]
        assert sorted(per_class(ds.test)) == [0, 1, 2]
    assert all(d.classname == imagenet_names[labels[names.index(d.classname)]] for d in ds.test)
    assert not os.path.exists(os.path.join(ds.dataset_dir, "split_fewshot"))


def test_variant_falls_back_to_imagenet_classnames(tmp_path):
    write_imagenet_variant(tmp_path, "ImageNetA", labels=(1, 2), classnames_txt=False)
    with pytest.raises(DatasetLayoutError, match=IMAGENET_CLASSNAMES_ID):
        build(tmp_path, "ImageNetA")
    write_imagenet(tmp_path, num_classes=1)  # writes imagenet/classnames.txt
    assert build(tmp_path, "ImageNetA").classnames == shipped_classnames("imagenet")[1:3]


# ------------------------------------------------------------------------------------------------
# Errors that say what is expected where


def test_missing_dataset_folder_describes_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as err:  # DatasetLayoutError is a FileNotFoundError
        build(tmp_path, "Caltech101")
    msg = str(err.value)
    assert f"dataset folder not found: {tmp_path / 'caltech-101'}" in msg
    for part in ("caltech-101/", "101_ObjectCategories/", "split_zhou_Caltech101.json", "DATASETS.md",
                 f"gdown 'https://drive.google.com/uc?id={CALTECH_SPLIT_ID}' -O "
                 f"'{tmp_path / 'caltech-101' / 'split_zhou_Caltech101.json'}'"):
        assert part in msg


def test_missing_split_file_gives_gdown_command(tmp_path):
    write_split_dataset(tmp_path, "OxfordPets", write_split=False)
    with pytest.raises(DatasetLayoutError) as err:
        build(tmp_path, "OxfordPets")
    msg = str(err.value)
    assert "split file not found" in msg and "split_zhou_OxfordPets.json" in msg
    assert "gdown 'https://drive.google.com/uc?id=1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs'" in msg


def test_missing_image_folder_and_listed_image(tmp_path):
    write_caltech101(tmp_path)
    image = tmp_path / "caltech-101" / "101_ObjectCategories" / "Leopards" / "image_0002.jpg"
    os.remove(image)
    with pytest.raises(DatasetLayoutError) as err:
        build(tmp_path, "Caltech101")
    assert str(image) in str(err.value) and "1 of 12 images listed in" in str(err.value)
    assert "split_zhou_Caltech101.json ('train')" in str(err.value)
    os.rename(tmp_path / "caltech-101" / "101_ObjectCategories", tmp_path / "caltech-101" / "other")
    with pytest.raises(DatasetLayoutError, match="image folder not found"):
        build(tmp_path, "Caltech101")


def test_malformed_split_file(tmp_path):
    write_caltech101(tmp_path)
    (tmp_path / "caltech-101" / "split_zhou_Caltech101.json").write_text('{"train": []}')
    with pytest.raises(DatasetLayoutError, match="is not a CoOp split file"):
        build(tmp_path, "Caltech101")


def test_fgvc_aircraft_missing_list(tmp_path):
    write_fgvc_aircraft(tmp_path, num_classes=3, size=8)
    os.remove(tmp_path / "fgvc_aircraft" / "images_variant_val.txt")
    with pytest.raises(DatasetLayoutError, match=r"(?s)images_variant_val.txt.*fgvc-aircraft-2013b"):
        build(tmp_path, "FGVCAircraft")


# ------------------------------------------------------------------------------------------------
# Registration, configs, Dassl's DataManager


def test_register_skips_names_already_registered():
    registry = Registry("DATASET")

    class Caltech101:  # e.g. a CoOp fork's own reader, registered first
        pass

    registry.register(Caltech101)
    added = register_datasets(registry)
    assert "Caltech101" not in added and sorted(added) == sorted(set(DATASET_NAMES) - {"Caltech101"})
    assert registry.get("Caltech101") is Caltech101
    assert register_datasets(registry) == []  # idempotent, no KeyError
    assert set(DATASET_NAMES) <= set(DATASET_REGISTRY.registered_names()) and len(DATASET_NAMES) == 17  # 15 + Demo + ImageFolder


def test_dataset_configs_name_registered_datasets():
    folder = os.path.join(REPO, "configs", "datasets")
    expected = {"imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a",
                "imagenet_r", "demo", "image_folder"}
    assert {f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")} == expected
    names = set()
    for fname in expected:
        cfg = get_cfg_default()
        cfg.merge_from_file(os.path.join(folder, fname + ".yaml"))
        names.add(cfg.DATASET.NAME)
    assert names == set(DATASET_NAMES)


def test_data_manager_loads_batches(tmp_path):
    from dassl.data import DataManager

    write_caltech101(tmp_path)
    cfg = make_cfg(tmp_path, "Caltech101", shots=2)
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ("normalize",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    dm = DataManager(cfg)
    batch = next(iter(dm.train_loader_x))
    assert tuple(batch["img"].shape) == (4, 3, 32, 32) and dm.num_classes == 4
    assert dm.lab2cname == {0: "face", 1: "leopard", 2: "motorbike", 3: "accordion"}


def test_core_import_does_not_import_dassl():
    code = "import sys, dpl_plugin; assert 'dassl' not in sys.modules, sorted(m for m in sys.modules if 'dassl' in m)"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)
