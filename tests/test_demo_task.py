"""The demo task and the quickstart that drives the plain API on it."""

import os
import subprocess
import sys

import pytest
import torch

from dpl_plugin.demo import task
from dpl_plugin.demo.fashion_mnist import load_fashion_mnist

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

try:
    load_fashion_mnist("test", download=False)
    HAVE_DATA = True
except FileNotFoundError:
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="Fashion-MNIST not found: apt-get install dataset-fashion-mnist")


@needs_data
def test_splits_are_few_shot_disjoint_and_reproducible():
    a = task.demo_splits(shots=8, seed=1)
    b = task.demo_splits(shots=8, seed=1)
    c = task.demo_splits(shots=8, seed=2)
    assert torch.equal(a.train[0], b.train[0]) and not torch.equal(a.train[0], c.train[0])
    assert torch.bincount(a.train[1]).tolist() == [8] * 10 and torch.bincount(a.val[1]).tolist() == [4] * 10
    assert torch.equal(a.test[0], c.test[0]) and len(a.test[1]) == task.TEST_SIZE  # one test set for all seeds
    train_pool, val_pool, _ = task.demo_pools()
    flat = lambda x: {bytes(img.numpy()) for img in x}  # noqa: E731
    assert flat(a.train[0]) <= flat(train_pool[0]) and flat(a.val[0]) <= flat(val_pool[0])
    assert flat(train_pool[0]).isdisjoint(flat(val_pool[0]))


@needs_data
def test_the_shift_is_applied():
    clean_pool = task.demo_pools("clean")[2][0]
    rotated = task.demo_pools(task.DEFAULT_SHIFT)[2][0]
    assert torch.equal(rotated, torch.rot90(clean_pool, 1, (-2, -1)))


@needs_data
def test_quickstart_runs_search_train_and_evaluation(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "quickstart.py"), "--shots", "2", "--search-epochs", "1",
         "--train-epochs", "1", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Zero-shot accuracy:" in out.stdout and "Searched configuration" in out.stdout
    assert "supernet validation accuracy" in out.stdout and "The search did not settle" in out.stdout
    assert "test accuracy:" in out.stdout
    assert (tmp_path / "searched_config.yaml").is_file() and (tmp_path / "alpha_coupled.png").is_file()
