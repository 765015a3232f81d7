"""DPL_KgCoOp and DPL_PromptSRC end to end on the demo dataset, as a user runs them: ``scripts/dpl_train.sh``
searches and trains (1 epoch), the same command with 2 epochs resumes, ``--eval-only`` reloads the model,
``parse_results.py`` reads the result. For PromptSRC an uninterrupted 2-epoch run (on the same search)
must equal the resumed one: the prompt aggregation's state survives the checkpoint.

Tiny: the 3-layer CLIP of tests/conftest.py, 2 shots, train_runs.TINY_OPTS (one search epoch)."""

import os
import random
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

import torch  # noqa: E402

from conftest import make_clip  # noqa: E402
from dpl_plugin.demo.fashion_mnist import load_fashion_mnist  # noqa: E402
from train_runs import REPO, TINY_OPTS, Run, process_env, run_all  # noqa: E402

sys.path.insert(0, REPO)
import parse_results  # noqa: E402

try:
    load_fashion_mnist("test", download=False)
except FileNotFoundError:
    pytest.skip("Fashion-MNIST not found: apt-get install dataset-fashion-mnist", allow_module_level=True)

TRAINERS = ("DPL_KgCoOp", "DPL_PromptSRC")
SHOTS = "2"
# The tiny overrides but the epoch count, which each command sets (DPL_OPTS come last and would win).
_i = TINY_OPTS.index("OPTIM.MAX_EPOCH")
OPTS = TINY_OPTS[:_i] + TINY_OPTS[_i + 2:]
# Aggregation centred between the 2 epochs (equal weights), so that the average differs from either.
METHOD_OPTS = {"DPL_KgCoOp": (), "DPL_PromptSRC": ("TRAINER.PROMPTSRC.GPA_MEAN", "1.5")}


class ScriptRun(Run):
    """``bash scripts/dpl_train.sh demo SHOTS 1 TRAINER KEY VALUE...`` with the tiny options in DPL_OPTS."""

    def __init__(self, root, clip, trainer, *opts):
        output = os.path.join(root, "output")
        super().__init__([], os.path.join(output, "demo", trainer, f"demo_{SHOTS}shots", "seed1"))
        self.cmd = ["bash", os.path.join(REPO, "scripts", "dpl_train.sh"), "demo", SHOTS, "1", trainer, *opts]
        self.env = {"DPL_DATA": os.path.join(root, "data"), "DPL_OUTPUT": output, "DPL_PYTHON": sys.executable,
                    "DPL_OPTS": " ".join(v.replace(" ", "") for v in ("MODEL.BACKBONE.NAME", clip) + OPTS
                                         + METHOD_OPTS[trainer])}  # split at spaces: none inside a value

    def __call__(self):
        proc = subprocess.run(self.cmd, cwd=REPO, env=process_env(**self.env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=900)
        self.stdout, self.stderr, self.returncode = proc.stdout, proc.stderr, proc.returncode
        return self


def _write_demo_data(root):
    """The demo images and the 2-shot cache once, before runs start in parallel (cache writes race)."""
    from dassl.config import get_cfg_default
    from dassl.data.datasets import DATASET_REGISTRY

    from dpl_plugin.dassl import extend_cfg
    from dpl_plugin.dassl.datasets import register_datasets

    register_datasets()
    cfg = extend_cfg(get_cfg_default())
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = root, "Demo", int(SHOTS), 1
    random.seed(1)
    DATASET_REGISTRY.get("Demo")(cfg)


def _accuracy(run):
    found = [line for line in run.ok().splitlines() if line.startswith("* accuracy:")]
    assert found, run.log[-3000:]
    return float(found[-1].split()[-1].rstrip("%"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("methods"))
    clip = os.path.join(root, "tiny_clip.pt")
    torch.save(make_clip().state_dict(), clip)
    os.makedirs(os.path.join(root, "data"))
    _write_demo_data(os.path.join(root, "data"))
    r = {}
    first = {f"A/{t}": ScriptRun(root, clip, t, "OPTIM.MAX_EPOCH", "1") for t in TRAINERS}
    run_all(first.values())
    for run in first.values():
        run.ok()  # the later runs build on these
    r.update(first)
    second = {f"B/{t}": ScriptRun(root, clip, t, "OPTIM.MAX_EPOCH", "2") for t in TRAINERS}
    uninterrupted = os.path.join(root, "uninterrupted")
    shutil.copytree(first["A/DPL_PromptSRC"].path("search"), os.path.join(uninterrupted, "search"))
    second["U"] = Run(["--root", os.path.join(root, "data"), "--seed", "1", "--trainer", "DPL_PromptSRC",
                       "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "demo.yaml"),
                       "--config-file", os.path.join(REPO, "configs", "trainers", "DPL_PromptSRC", "demo.yaml"),
                       "--output-dir", uninterrupted, "DATASET.NUM_SHOTS", SHOTS, "MODEL.BACKBONE.NAME", clip,
                       *OPTS, *METHOD_OPTS["DPL_PromptSRC"], "OPTIM.MAX_EPOCH", "2"], uninterrupted)
    run_all(second.values())
    r.update(second)
    third = {}
    for t in TRAINERS:
        b = r[f"B/{t}"]
        third[f"C/{t}"] = Run(["--root", os.path.join(root, "data"), "--seed", "1", "--trainer", t,
                               "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "demo.yaml"),
                               "--config-file", os.path.join(REPO, "configs", "trainers", t, "demo.yaml"),
                               "--output-dir", os.path.join(root, "eval", t), "--eval-only", "--model-dir",
                               b.output_dir, "DATASET.NUM_SHOTS", SHOTS, "MODEL.BACKBONE.NAME", clip, *OPTS,
                               *METHOD_OPTS[t]],
                              os.path.join(root, "eval", t))
    run_all(third.values())
    r.update(third)
    r["root"] = root
    return r


@pytest.mark.parametrize("trainer", TRAINERS)
def test_search_train_resume_evaluate_and_parse(runs, trainer):
    first, resumed, evaluated = runs[f"A/{trainer}"], runs[f"B/{trainer}"], runs[f"C/{trainer}"]
    log = first.ok()
    assert "Searching prompt lengths" in log and "Finish training" in log
    assert os.path.isfile(first.path("search", "searched_config.yaml"))
    # the search ran with the method's objective, and recorded it
    with open(first.path("search", "definition.json")) as f:
        definition = f.read()
    assert f'"objective.name": "{trainer[4:].lower()}"' in definition
    log = resumed.ok()
    assert "Using the finished search" in log and "Resumed from" in log and "epoch [2/2]" in log
    assert evaluated.ok() and _accuracy(evaluated) == _accuracy(resumed)
    groups = parse_results.collect(os.path.join(runs["root"], "output", "demo"))
    assert groups[f"{trainer}/demo_{SHOTS}shots"] == [("seed1", _accuracy(resumed))]


def test_promptsrc_averages_the_prompts_and_a_resumed_run_equals_the_uninterrupted_one(runs):
    resumed, uninterrupted = runs["B/DPL_PromptSRC"], runs["U"]
    assert "Prompts averaged over 2 epoch(s)" in resumed.ok()
    a = torch.load(resumed.path("prompt_learner", "model.pth.tar-2"), weights_only=True)
    b = torch.load(uninterrupted.path("prompt_learner", "model.pth.tar-2"), weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # what is evaluated is the average, not the last epoch's prompts (kept for resuming)
    trained = a["averaging"]["trained"]
    assert any(not torch.equal(trained[k], a["state_dict"][k]) for k in trained)
    assert _accuracy(resumed) == _accuracy(uninterrupted)
