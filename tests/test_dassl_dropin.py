"""README's "Drop-in" section, done to a CoOp-style fork that this test writes: copy the trainer file
and its configs, apply the README's two-line diff to the fork's ``train.py``, then search, train and
evaluate with the fork's own command line, dataset reader and vendored ``clip/`` folder.
"""

import os
import re
import shutil

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

from train_runs import REPO, TINY_OPTS, Run, Workspace, run_all  # noqa: E402

ACCURACY = re.compile(r"^\* accuracy: ([\d.]+)%", re.MULTILINE)

FORK_TRAIN = '''\
"""A CoOp-style fork's train.py: CoOp's command line, config order and setup_cfg."""
import argparse

import torch
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.utils import set_random_seed, setup_logger

# the fork's dataset readers and trainers, imported as CoOp's train.py does
import datasets.caltech101
import trainers.coop


def reset_cfg(cfg, args):
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed:
        cfg.SEED = args.seed
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone


def extend_cfg(cfg):
    from yacs.config import CfgNode as CN

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    reset_cfg(cfg, args)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def main(args):
    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("--root", "--output-dir", "--resume", "--config-file", "--dataset-config-file", "--trainer",
                 "--backbone", "--model-dir"):
        parser.add_argument(flag, type=str, default="")
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--load-epoch", type=int)
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER)
    main(parser.parse_args())
'''

FORK_FILES = {
    # CoOp's trainers import the fork's vendored clip, whose build_model differs (MaPLe's takes an
    # extra argument): the DPL trainer must load the installed package, not these files.
    "clip/__init__.py": "from .clip import *  # noqa: F401,F403\n",
    "clip/clip.py": "def load(*args, **kwargs):\n    raise RuntimeError(\"the fork's vendored clip was used\")\n",
    "clip/model.py": "def build_model(state_dict, design_details):\n"
                     "    raise RuntimeError(\"the fork's vendored clip was used\")\n",
    "trainers/__init__.py": "",
    "trainers/coop.py": "from clip import clip  # noqa: F401  (the vendored copy)\n"
                        "from dassl.engine import TRAINER_REGISTRY, TrainerX\n\n\n"
                        "@TRAINER_REGISTRY.register()\nclass CoOp(TrainerX):\n    pass\n",
    "datasets/__init__.py": "",
    "datasets/caltech101.py": '''\
import json
import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum


@DATASET_REGISTRY.register()
class Caltech101(DatasetBase):
    def __init__(self, cfg):
        root = os.path.join(cfg.DATASET.ROOT, "caltech-101")
        with open(os.path.join(root, "split_zhou_Caltech101.json")) as f:
            split = json.load(f)
        image_dir = os.path.join(root, "101_ObjectCategories")
        read = lambda items: [Datum(os.path.join(image_dir, p), int(y), c) for p, y, c in items]
        train, val, test = read(split["train"]), read(split["val"]), read(split["test"])
        train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
        val = self.generate_fewshot_dataset(val, num_shots=min(cfg.DATASET.NUM_SHOTS, 4))
        print("FORK READER: Caltech101")
        super().__init__(train_x=train, val=val, test=test)
''',
    "configs/datasets/caltech101.yaml": 'DATASET:\n  NAME: "Caltech101"\n',
    # A baseline recipe of the fork: no TRAINER.DPL keys
    "configs/trainers/CoOp/tiny.yaml": 'OPTIM:\n  NAME: "sgd"\n  LR: 0.002\n  MAX_EPOCH: 1\n',
}


def readme_dropin():
    """The README's drop-in section: (its text, the ``diff`` block's lines)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("### Drop-in", 1)[1].split("\n## ", 1)[0]
    diff = section.split("```diff\n", 1)[1].split("```", 1)[0]
    return section, diff.splitlines()


def apply_readme_diff(source: str, diff_lines, only_first: bool = False) -> str:
    """Insert each ``+`` line after its nearest preceding context line, found in order in ``source``
    (``...`` skips). ``only_first`` applies the first added line alone (a half-done edit)."""
    lines, position, anchor, applied = source.splitlines(), 0, None, 0
    for line in diff_lines:
        if line.startswith("+"):
            assert anchor is not None, "an added line without a context line before it"
            index = lines.index(anchor, position)
            lines.insert(index + 1, line[1:])
            position = index + 2
            applied += 1
            if only_first:
                break
        elif line.strip() != "...":
            anchor = line[1:]
    assert applied == (1 if only_first else 2), f"expected the README's two added lines, applied {applied}"
    return "\n".join(lines) + "\n"


def make_fork(root, edit):
    fork = os.path.join(str(root), "fork")
    for path, text in FORK_FILES.items():
        os.makedirs(os.path.dirname(os.path.join(fork, path)), exist_ok=True)
        with open(os.path.join(fork, path), "w") as f:
            f.write(text)
    with open(os.path.join(fork, "train.py"), "w") as f:
        f.write(edit(FORK_TRAIN))
    # README step 1: the trainer file into the fork's trainers/, the recipes into its configs
    shutil.copy(os.path.join(REPO, "trainers", "dpl_maple.py"), os.path.join(fork, "trainers"))
    shutil.copytree(os.path.join(REPO, "configs", "trainers", "DPL_MaPLe"),
                    os.path.join(fork, "configs", "trainers", "DPL_MaPLe"))
    return fork


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    section, diff = readme_dropin()
    assert "`trainers/dpl_maple.py`" in section and "`configs/trainers/DPL_MaPLe/`" in section
    recipe = re.search(r"--config-file (configs/trainers/DPL_MaPLe/\S+\.yaml)", section).group(1)
    root = tmp_path_factory.mktemp("dropin")
    ws = Workspace(root)
    fork = make_fork(root / "edited", lambda text: apply_readme_diff(text, diff))
    half = make_fork(root / "half_edited", lambda text: apply_readme_diff(text, diff, only_first=True))

    def fork_run(folder, name, *opts, config=recipe, flags=(), dpl_keys=True):
        output = os.path.join(str(root), "output", name)
        tiny = [x for k, v in zip(TINY_OPTS[::2], TINY_OPTS[1::2]) if dpl_keys or "DPL" not in k for x in (k, v)]
        args = ["--root", ws.data, "--seed", "1", "--trainer", "DPL_MaPLe", "--dataset-config-file",
                "configs/datasets/caltech101.yaml", "--config-file", config, "--output-dir", output, *flags,
                "DATASET.NUM_SHOTS", "4", "MODEL.BACKBONE.NAME", ws.clip, *tiny, *opts]
        return Run(args, output, cwd=folder, script=os.path.join(folder, "train.py"))

    r = {"train_py": open(os.path.join(fork, "train.py")).read()}
    r["search"], r["half"] = run_all([fork_run(fork, "run", "TRAINER.DPL.MODE", "search"),
                                      fork_run(half, "half", config="configs/trainers/CoOp/tiny.yaml", dpl_keys=False)])
    r["train"] = fork_run(fork, "run")()  # the same command without MODE search: trains the searched lengths
    r["eval"] = fork_run(fork, "eval", flags=["--eval-only", "--model-dir", r["train"].output_dir,
                                              "--load-epoch", "1"])()
    return r


def test_the_readme_diff_adds_the_import_and_the_config_call(runs):
    text = runs["train_py"]
    assert "import trainers.coop\nfrom trainers.dpl_maple import extend_dpl_cfg" in text
    assert "    extend_cfg(cfg)\n    extend_dpl_cfg(cfg)\n" in text


def test_search_runs_in_the_fork_with_its_own_reader_and_clip_folder(runs):
    run = runs["search"]
    log = run.ok()
    assert "FORK READER: Caltech101" in log and "Search finished" in log
    assert os.path.isfile(run.path("search", "searched_config.yaml"))
    assert "Checkpoint saved" not in log  # stage 1 only (the train run below writes to the same folder)


def test_progress_in_a_log_is_one_line_per_epoch(runs):
    """Output to a pipe (as to a log file): no progress bar, the epoch's line instead, also in log.txt."""
    run = runs["search"]
    assert "\r" not in run.log and "it/s" not in run.log
    line = re.search(r"^epoch \[1/1\] train loss \d+\.\d{4} .* \| \d+:\d\d:\d\d, ETA 0:00:00$", run.stdout,
                     re.MULTILINE)
    assert line, run.stdout[-3000:]
    assert len(re.findall(r"^(search|epoch)\b.*\b1/1\b", run.stdout, re.MULTILINE)) == 1  # one line for the epoch
    with open(run.path("log.txt")) as f:
        assert line.group(0) in f.read().splitlines()


def test_train_reuses_the_search_and_eval_only_reproduces_its_accuracy(runs):
    log = runs["train"].ok()
    assert "Using the finished search" in log and "Searching prompt lengths" not in log
    assert os.path.isfile(runs["train"].path("prompt_learner", "model.pth.tar-1"))
    trained = float(ACCURACY.findall(log)[-1])
    evaluated = runs["eval"].ok()
    assert "model.pth.tar-1" in evaluated and float(ACCURACY.findall(evaluated)[-1]) == trained


def test_a_fork_without_extend_dpl_cfg_is_told_which_line_to_add(runs):
    run = runs["half"]
    assert run.returncode != 0
    assert ("DPL_MaPLe needs the TRAINER.DPL config keys: in your train.py, add `extend_dpl_cfg(cfg)` after "
            "`extend_cfg(cfg)` in setup_cfg() (and `from trainers.dpl_maple import extend_dpl_cfg`") in run.stderr
