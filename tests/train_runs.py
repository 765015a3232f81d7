"""``train.py`` (this repository's or a fork's) run as a user runs it, for the Dassl tests.

A :class:`Workspace` holds a small CLIP saved to a file, a small Caltech101 in CoOp's folder layout
and a tiny config; a :class:`Run` is one ``python train.py ...`` process with what it printed and
its exit code. Runs are real processes: exit codes, tracebacks and warnings are what a user sees.
``python`` runs fork from a prewarmed interpreter (:mod:`prewarmed`: torch, clip and Dassl already
imported, the code under test imported afresh); ``DPL_TEST_FRESH=1`` starts each in a fresh one.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence

import torch

import prewarmed
from conftest import make_clip
from dassl_data import write_caltech101

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "train.py")
CALTECH_CONFIG = os.path.join(REPO, "configs", "datasets", "caltech101.yaml")
WORKERS = 2  # the machine may have only two cores; every process uses one thread

# The command-line overrides that shrink a recipe (configs/trainers/*/vit_b16.yaml) to the tiny
# CLIP and data: 32x32 images, one search epoch and one training epoch, no worker processes.
TINY_OPTS = ("INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "16",
             "OPTIM.MAX_EPOCH", "1", "TRAIN.CHECKPOINT_FREQ", "1", "TRAINER.DPL.SEARCH.EPOCHS", "1",
             "TRAINER.DPL.SEARCH.VAL_BATCH_SIZE", "4", "TRAINER.DPL.SEARCH.PLOT", "False")


ACCURACY = re.compile(r"^\* accuracy: ([\d.]+)%", re.MULTILINE)


def process_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "DPL_DEBUG")}  # a plain shell's
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", **extra)
    return env


_server = None
_server_lock = threading.Lock()


def start(command: Sequence[str], cwd: str, env: dict, interruptible: bool = False):
    """``command`` started with text stdout and stderr pipes: forked by the prewarmed interpreter when
    it is ``python SCRIPT ...``, else (or with ``DPL_TEST_FRESH=1``) a fresh process. ``interruptible``:
    SIGINT as a terminal's process has it (a parent started in the background, by nohup, CI or time,
    may ignore it, and an ignored signal is inherited; a forked run restores Python's handler)."""
    global _server
    if command[0] == sys.executable and command[1].endswith(".py") and not prewarmed.fresh_requested():
        with _server_lock:
            if _server is None:
                _server = prewarmed.Server(process_env())
                atexit.register(_server.close)
        return _server.popen(command, cwd, env)
    return start_fresh(command, cwd, env, interruptible)


def start_fresh(command: Sequence[str], cwd: str, env: dict, interruptible: bool = False) -> subprocess.Popen:
    """``command`` in a fresh process (:func:`start`'s other way)."""
    restore = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if interruptible else None
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=restore)


class Run:
    """One ``python SCRIPT ARGS`` process in ``cwd``: ``log`` (stdout and stderr), ``stdout``, ``stderr``
    and ``returncode`` once called."""

    timeout = 600  # seconds

    def __init__(self, args: Sequence[str], output_dir: str, cwd: str = REPO, script: str = TRAIN_PY, **env):
        self.args, self.output_dir, self.cwd, self.script, self.env = list(args), output_dir, cwd, script, env
        self.stdout = self.stderr = ""
        self.returncode: Optional[int] = None

    @property
    def command(self) -> List[str]:
        return [sys.executable, self.script] + self.args

    def __call__(self) -> "Run":
        proc = start(self.command, self.cwd, process_env(**self.env))
        try:
            self.stdout, self.stderr = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        self.returncode = proc.returncode
        return self

    def interrupt_after(self, line_start: str) -> "Run":
        """Run, and press Ctrl-C (SIGINT) once a stdout line starts with ``line_start``."""
        proc = start(self.command, self.cwd, process_env(**self.env), interruptible=True)
        lines = []
        deadline = time.monotonic() + 600
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(line_start) or time.monotonic() > deadline:
                proc.send_signal(signal.SIGINT)
                break
        rest, self.stderr = proc.communicate(timeout=600)
        self.stdout, self.returncode = "".join(lines) + rest, proc.returncode
        return self

    @property
    def log(self) -> str:
        return self.stdout + self.stderr

    def ok(self) -> str:
        assert self.returncode == 0, f"{' '.join(self.args)} failed:\n{self.log[-4000:]}"
        return self.stdout

    @property
    def accuracy(self) -> float:
        """The final test accuracy Dassl printed (``* accuracy: X%``)."""
        found = ACCURACY.findall(self.ok())
        assert found, f"no '* accuracy: X%' line in the output:\n{self.log[-3000:]}"
        return float(found[-1])

    def failed(self, code: int = 1) -> str:
        """The message a failed run ends with (all of its stderr), after checking the exit code and
        that no traceback was printed."""
        assert self.returncode == code, f"expected exit code {code}, got {self.returncode}:\n{self.log[-3000:]}"
        assert "Traceback" not in self.log, self.log[-3000:]
        return self.stderr.strip()

    def failed_with_one_line(self, code: int = 1) -> str:
        message = self.failed(code)
        assert len(message.splitlines()) == 1, f"stderr should be one message line:\n{self.stderr}"
        return message

    def path(self, *parts) -> str:
        return os.path.join(self.output_dir, *parts)


class ScriptRun(Run):
    """One ``bash scripts/SCRIPT ARGS`` invocation on a workspace, configured through the scripts'
    environment variables, with the same tiny overrides."""

    timeout = 900  # base2new.sh: two train.py runs

    def __init__(self, ws: "Workspace", script: str, *args: str, trainer: str = "DPL_CoOp"):
        output_dir = os.path.join(ws.root, "script_output")
        opts = " ".join(["MODEL.BACKBONE.NAME", ws.clip] + [v.replace(" ", "") for v in TINY_OPTS])  # split on spaces
        super().__init__(list(args), output_dir, DPL_DATA=ws.data, DPL_TRAINER=trainer, DPL_OUTPUT=output_dir,
                         DPL_SEEDS="1", DPL_PYTHON=sys.executable, DPL_OPTS=opts)
        self.script = os.path.join(REPO, "scripts", script)

    @property
    def command(self) -> List[str]:
        return ["bash", self.script] + self.args


def run_all(runs):
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda r: r(), runs))


class Workspace:
    """A tiny CLIP file, a 4-class Caltech101 (10 images per class) and its 4-shot cache."""

    def __init__(self, root):
        self.root = str(root)
        self.clip = os.path.join(self.root, "tiny_clip.pt")
        torch.save(make_clip().state_dict(), self.clip)
        self.data = os.path.join(self.root, "data")
        self.classnames = write_caltech101(self.data, num_classes=4, images_per_class=10)

    def cache_fewshot_split(self, shots: int = 4, seed: int = 1) -> None:
        """Write the few-shot cache once, before runs start in parallel: the readers' cache writes
        are not atomic, and concurrent first runs would race on the same file."""
        import random

        from dassl.config import get_cfg_default
        from dassl.data.datasets import DATASET_REGISTRY

        from dpl_plugin.dassl import extend_cfg
        from dpl_plugin.dassl.datasets import register_datasets

        register_datasets()
        cfg = extend_cfg(get_cfg_default())
        cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = self.data, "Caltech101", shots, seed
        random.seed(seed)
        DATASET_REGISTRY.get("Caltech101")(cfg)

    def run(self, name: str, *opts: str, trainer: str = "DPL_MaPLe", flags: Sequence[str] = (),
            config: str = os.path.join(REPO, "configs", "trainers", "DPL_MaPLe", "vit_b16.yaml"),
            root: Optional[str] = None, **env) -> Run:
        """This repository's ``train.py`` on the workspace's data (or ``root``), writing ``output/<name>``;
        ``opts`` come after the tiny overrides."""
        output_dir = os.path.join(self.root, "output", name)
        args = ["--root", root or self.data, "--seed", "1", "--trainer", trainer, "--dataset-config-file", CALTECH_CONFIG,
                "--config-file", config, "--output-dir", output_dir, *flags, "DATASET.NUM_SHOTS", "4",
                "MODEL.BACKBONE.NAME", self.clip, *TINY_OPTS, *opts]
        return Run(args, output_dir, **env)
