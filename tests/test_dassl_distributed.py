"""``torchrun --nproc_per_node 2 train.py``: the Dassl workflow in two CPU processes (gloo), as a user
runs it; rank 0 alone writes, and its evaluation counts the same images as one process's."""

import glob
import os
import re

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

import torch  # noqa: E402

from train_runs import REPO, Run, Workspace  # noqa: E402

CORRECT = re.compile(r"^\* correct: ([\d,]+)", re.MULTILINE)


def test_torchrun_searches_trains_and_evaluates_like_one_process(tmp_path):
    ws = Workspace(tmp_path)
    plain = ws.run("two_processes")
    two = Run(["torch.distributed.run", "--standalone", "--nproc_per_node", "2", os.path.join(REPO, "train.py"),
               *plain.args], plain.output_dir, ws.root, "-m")()
    log = two.ok()
    assert "Searched configuration" in log and "Finish training" in log
    assert os.listdir(two.path()).count("log.txt") == 1 and not glob.glob(two.path("log.txt-*"))
    assert len(glob.glob(two.path("tensorboard", "events.*"))) == 1
    assert log.count("=> result") == 1  # rank 1 prints nothing
    state = torch.load(two.path("prompt_learner", "model.pth.tar-1"), weights_only=True)
    assert isinstance(state["rng"], list) and len(state["rng"]) == 2  # every rank's random state

    one = ws.run("one_process_eval", flags=("--eval-only", "--model-dir", two.output_dir, "--load-epoch", "1"))()
    assert CORRECT.findall(one.ok())[-1] == CORRECT.findall(log)[-1]
    assert one.accuracy == two.accuracy
