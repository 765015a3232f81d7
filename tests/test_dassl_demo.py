"""The demo task through Dassl: the Demo dataset and the user-facing scripts on it."""

import os
import subprocess

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

from dassl.config import get_cfg_default  # noqa: E402
from dassl.data.datasets import DATASET_REGISTRY  # noqa: E402

from dpl_plugin.dassl.datasets import Demo, register_datasets  # noqa: E402
from dpl_plugin.demo import task  # noqa: E402
from dpl_plugin.demo.fashion_mnist import CLASSNAMES, load_fashion_mnist  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    load_fashion_mnist("test", download=False)
except FileNotFoundError:
    pytest.skip("Fashion-MNIST not found: apt-get install dataset-fashion-mnist", allow_module_level=True)

register_datasets()


def build(root, shots):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = str(root), "Demo", shots, 1
    return DATASET_REGISTRY.get("Demo")(cfg)


def test_demo_dataset_is_written_once_and_read_like_the_benchmarks(tmp_path):
    assert Demo.shift == task.DEFAULT_SHIFT
    ds = build(tmp_path, shots=4)
    assert ds.classnames == CLASSNAMES and len(ds.train_x) == 40 and len(ds.val) == 40
    assert len(ds.test) == task.TEST_SIZE
    split = tmp_path / Demo.dataset_dir / Demo.split_file
    written = split.stat().st_mtime_ns
    assert len(build(tmp_path, shots=2).train_x) == 20 and split.stat().st_mtime_ns == written
    # the images on disk are the task's pools, shift included
    from PIL import Image
    import numpy as np

    _, _, (test_images, test_labels) = task.demo_pools()
    first = next(d for d in ds.test if d.impath.endswith("00000.png"))
    assert np.array_equal(np.array(Image.open(first.impath)), test_images[0].numpy())
    assert first.label == int(test_labels[0])


def test_scripts_search_then_train_on_the_demo(tmp_path):
    env = {**os.environ, "DPL_OUTPUT": str(tmp_path / "out"), "DPL_DATA": str(tmp_path / "data"),
           "DPL_PYTHON": __import__("sys").executable, "OMP_NUM_THREADS": "1",
           "DPL_OPTS": "TRAINER.DPL.SEARCH.EPOCHS 1 OPTIM.MAX_EPOCH 1"}
    run_dir = tmp_path / "out" / "demo" / "DPL_MaPLe" / "demo_2shots" / "seed1"
    search = subprocess.run(["bash", os.path.join(REPO, "scripts", "dpl_search.sh"), "demo", "2"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    assert (run_dir / "search" / "searched_config.yaml").is_file()
    train = subprocess.run(["bash", os.path.join(REPO, "scripts", "dpl_train.sh"), "demo", "2"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert "Using the finished search" in train.stdout and "* accuracy:" in train.stdout
    assert (run_dir / "prompt_learner" / "model.pth.tar-1").is_file()
