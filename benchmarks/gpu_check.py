"""GPU acceptance check: the CUDA, fp16, amp and NCCL paths against the CPU, in one command.

    python benchmarks/gpu_check.py          # a machine with a GPU: a few minutes, no downloads
    python benchmarks/gpu_check.py --device cpu --force --shape tiny --classes 5 10   # the same code on a CPU

On a CUDA device, with random weights at ViT-B/16 shapes (the installed ``clip.model.CLIP`` class):

* **precision**: a search step (alpha's gradient on a validation batch of 16, the candidate
  prompts' on a training batch of 4, MaPLe's coupled search space, candidates 0..6), a train step
  (prompts of MaPLe's shape, prefix insertion: loss and gradients) and an evaluation (logits of 16
  images) in fp32, fp16 (CLIP's half weights, as openai's ``build_model`` leaves them) and amp
  (fp32 weights, fp16 autocast), each compared with the same computation in fp32 on the CPU: the
  largest norm-wise relative difference ``|x - x_cpu| / |x_cpu|`` over its outputs, against
  :data:`TOLERANCES`. TF32 is switched off, so fp32 means fp32 on both sides;
* **cost**: the median time of each step over ``--repeats`` and the peak CUDA memory
  (``torch.cuda.max_memory_allocated``, the frozen CLIP's weights included) at each ``--classes``
  count (100 and 1,000); the CPU comparison is made at the counts up to ``--compare-up-to``;
* **kill + resume**: a search (amp, ``--resume-epochs`` 6 of 2 steps) in a subprocess, killed with SIGKILL once
  its first checkpoint is written, started again (it resumes), and compared with an uninterrupted
  run (deterministic algorithms requested; the difference is printed);
* **2 processes**: with two GPUs visible, a search step split over 2 NCCL processes (images and
  class prompts) against one process.

It prints one table (pass/fail, measured differences, step times, peak memory) and exits 1 if a
check failed. Without a CUDA device it prints so and exits 0, having checked nothing.
``--device cpu --force`` runs every branch on the CPU instead (2 processes over gloo, no CUDA
memory): what CI runs, with ``--shape tiny``; it shows that the script and the paths it drives
work, not that a GPU computes them right.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from common import SHAPES, random_clip  # first: puts the repository on sys.path
from dpl_plugin import PromptConfig, build_prompted_clip
from dpl_plugin.backbones.clip_package import clip_model_module
from dpl_plugin.backbones.spec import BackboneSpec
from dpl_plugin.classnames import benchmark_classnames
from dpl_plugin.designs import get_design
from dpl_plugin.runtime import distributed, sharded_data
from dpl_plugin.search import SearchSettings, build_supernet
from dpl_plugin.search.bilevel import CHECKPOINT_FILE
from dpl_plugin.search.stage import search_prompt_lengths

PRECISIONS = ("fp32", "fp16", "amp")
# Largest relative difference from the CPU's fp32 result. fp32 (TF32 off) differs in summation order
# only; fp16 keeps 11 significant bits, and gradients through 12 layers lose a few more. Set from
# half-precision runs on a CPU (ViT-B/16 shapes: at most 6.7e-3), not yet from a GPU.
TOLERANCES = {"fp32": 1e-3, "fp16": 5e-2, "amp": 5e-2}
RANKS_TOLERANCE = 1e-4  # 2 processes against 1, fp32: the same sums in another order
RESUME_TOLERANCE = 1e-5  # resumed against uninterrupted prompts and alpha (0 when bit-identical)
SHAPES = {**SHAPES, "tiny": (32, 32, 2, 128, 8, 128, 2)}  # a few seconds on a CPU
CPU = torch.device("cpu")


@dataclass
class Row:
    check: str
    precision: str = "-"
    classes: str = "-"
    difference: Optional[float] = None
    tolerance: Optional[float] = None
    seconds: Optional[float] = None
    peak_mb: Optional[float] = None
    result: str = "pass"
    note: str = ""


# -- inputs ---------------------------------------------------------------------------------------
def class_names(count: int) -> List[str]:
    names = benchmark_classnames("imagenet")
    return names[:count] if count <= len(names) else [f"class {i}" for i in range(count)]


def images(count: int, resolution: int, seed: int) -> torch.Tensor:
    return torch.randn(count, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


def labels(count: int, classes: int, seed: int) -> torch.Tensor:
    return torch.randint(classes, (count,), generator=torch.Generator().manual_seed(seed))


def batches(resolution: int, classes: int) -> Dict[str, tuple]:
    """The recipe's batches: validation 16 (alpha), training 4 (prompts); 16 images to evaluate."""
    return {"val": (images(16, resolution, 1), labels(16, classes, 1)),
            "train": (images(4, resolution, 2), labels(4, classes, 2)), "eval": (images(16, resolution, 3), None)}


def backbone(shape: str):
    """A frozen fp32 CLIP of ``shape`` with random weights (seed 0), on the CPU."""
    if shape != "tiny":
        return random_clip(shape)
    embed, res, v_layers, v_width, patch, t_width, t_layers = SHAPES["tiny"]
    torch.manual_seed(0)
    model = clip_model_module.CLIP(embed, res, v_layers, v_width, patch, 77, 49408, t_width, t_width // 64, t_layers)
    return model.requires_grad_(False).eval()


def device_clip(cpu_clip, device: torch.device, precision: str):
    """A copy of ``cpu_clip`` on ``device``; fp16: CLIP's half weights (``clip.model.convert_weights``)."""
    model = copy.deepcopy(cpu_clip).to(device)
    if precision == "fp16":
        clip_model_module.convert_weights(model)
    return model


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.float16, enabled=precision == "amp")


# -- the three computations: each is built once, then returns its outputs when called -------------
def search_step(clip, names, data, device, precision) -> Callable[[], Dict[str, torch.Tensor]]:
    torch.manual_seed(0)  # the same candidate prompts and alpha on every device
    model = build_supernet(clip, names, candidates=range(7), **get_design("maple").search_space()).train()
    learner = model.prompt_learner
    (val_x, val_y), (train_x, train_y) = (tuple(t.to(device) for t in data[k]) for k in ("val", "train"))

    def step():
        with autocast(device, precision):
            val_loss = F.cross_entropy(model(val_x), val_y)
        alpha = torch.autograd.grad(val_loss, learner.arch_parameters())
        with autocast(device, precision):
            train_loss = F.cross_entropy(model(train_x), train_y)
        prompts = torch.autograd.grad(train_loss, learner.prompt_parameters(), allow_unused=True)
        return {"validation loss": val_loss, "alpha gradient": _flat(alpha),
                "training loss": train_loss, "prompt gradient": _flat(prompts)}

    return step


def _trained_model(clip, names):
    backbone = BackboneSpec.of(clip)
    depth = min(9, backbone.text_layers, backbone.vision_layers)
    config = PromptConfig.maple(2, depth, backbone.text_layers, backbone.vision_layers, insertion="prefix")
    torch.manual_seed(0)
    return build_prompted_clip(clip, names, config)


def train_step(clip, names, data, device, precision) -> Callable[[], Dict[str, torch.Tensor]]:
    model = _trained_model(clip, names).train()
    x, y = (t.to(device) for t in data["train"])
    params = model.learnable_parameters()

    def step():
        with autocast(device, precision):
            loss = F.cross_entropy(model(x), y)
        return {"loss": loss, "prompt gradient": _flat(torch.autograd.grad(loss, params))}

    return step


def evaluation(clip, names, data, device, precision) -> Callable[[], Dict[str, torch.Tensor]]:
    model = _trained_model(clip, names).eval()
    x = data["eval"][0].to(device)

    def step():
        with torch.no_grad(), model.cached_text_features(), autocast(device, precision):
            return {"logits": model(x)}

    return step


STEPS = {"search step": search_step, "train step": train_step, "evaluation": evaluation}


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1).float() for t in tensors if t is not None])


# -- measuring ------------------------------------------------------------------------------------
def relative_difference(outputs: Dict[str, torch.Tensor], reference: Dict[str, torch.Tensor]) -> float:
    """The largest ``|x - x_ref| / |x_ref|`` (Frobenius norms) over the outputs; inf if any is not finite."""
    worst = 0.0
    for name, ref in reference.items():
        out, ref = outputs[name].detach().double().cpu(), ref.detach().double().cpu()
        if not torch.isfinite(out).all():
            return math.inf
        worst = max(worst, ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item())
    return worst


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_measured(step: Callable, device: torch.device, repeats: int):
    """The outputs of ``step``, its median time over ``repeats`` (after one warm-up call) and the
    peak CUDA memory during them (None off CUDA)."""
    outputs = step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return {k: v.detach().cpu() for k, v in outputs.items()}, statistics.median(times), peak


@contextlib.contextmanager
def strict_fp32():
    """No TF32 (cuDNN convolutions use it by default): fp32 compared with fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def precision_rows(cpu_clip, classes: int, device: torch.device, args) -> List[Row]:
    """Each step in each precision on ``device``, against the CPU's fp32 when ``classes`` is small enough."""
    names, data = class_names(classes), batches(cpu_clip.visual.input_resolution, classes)
    compare = classes <= args.compare_up_to
    reference = {name: make(cpu_clip, names, data, CPU, "fp32")() for name, make in STEPS.items()} if compare else {}
    rows = []
    for precision in PRECISIONS:
        clip = device_clip(cpu_clip, device, precision)
        for name, make in STEPS.items():
            try:
                outputs, seconds, peak = run_measured(make(clip, names, data, device, precision), device, args.repeats)
            except (RuntimeError, ValueError) as err:  # out of memory, an unsupported kernel: reported, not fatal
                rows.append(Row(name, precision, str(classes), result="FAIL", note=f"{type(err).__name__}: {err}"[:300]))
                continue
            rows.append(_precision_row(name, precision, classes, outputs, reference.get(name), seconds, peak))
        del clip
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _precision_row(name, precision, classes, outputs, reference, seconds, peak) -> Row:
    finite = all(bool(torch.isfinite(v).all()) for v in outputs.values())
    if reference is None:
        return Row(name, precision, str(classes), None, None, seconds, peak, "pass" if finite else "FAIL",
                   "finite (no CPU comparison at this size)" if finite else "non-finite outputs")
    difference = relative_difference(outputs, reference)
    tolerance = TOLERANCES[precision]
    note = ""
    if "logits" in outputs:
        agree = (outputs["logits"].argmax(1) == reference["logits"].argmax(1)).float().mean().item()
        note = f"top-1 agrees on {100 * agree:.0f}% of images"
    return Row(name, precision, str(classes), difference, tolerance, seconds, peak,
               "pass" if difference <= tolerance else "FAIL", note)


# -- subprocesses: a killed and resumed search, two processes ---------------------------------------
def worker_command(kind: str, args, out: str) -> List[str]:
    return [sys.executable, os.path.abspath(__file__), "--worker", kind, "--device", args.device, "--shape",
            args.shape, "--out", out, "--classes", str(args.classes[0]), "--resume-epochs", str(args.resume_epochs)]


def worker_env(**extra) -> Dict[str, str]:
    # Deterministic cuBLAS, so that a resumed run can equal the uninterrupted one bit for bit.
    return {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8", **{k: str(v) for k, v in extra.items()}}


def search_worker(args) -> None:
    """A small search (random images) into ``args.out``, resuming what is there; writes ``final.pt``."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device(args.device)
    clip = device_clip(backbone(args.shape), device, "fp32")
    names, resolution = class_names(args.classes[0]), clip.visual.input_resolution
    targets = torch.arange(8) % len(names)
    train = sharded_data.loader(torch.utils.data.TensorDataset(images(8, resolution, 4), targets), 4, seed=1)
    val = sharded_data.loader(torch.utils.data.TensorDataset(images(8, resolution, 5), targets), 4, seed=2)
    torch.manual_seed(0)
    settings = SearchSettings(epochs=args.resume_epochs, precision="amp" if device.type == "cuda" else "fp32",
                              plot=False, resume=True)
    result = search_prompt_lengths(clip, names, train, val, design="maple", settings=settings, output_dir=args.out)
    torch.save({k: v.cpu() for k, v in result.supernet.prompt_learner.state_dict().items()},
               os.path.join(args.out, "final.pt"))


def ranks_worker(args) -> None:
    """One of two processes (``torchrun``'s environment): its share of the search step's images and
    classes, the gradients averaged; rank 0 writes them."""
    device = distributed.init_from_env(use_cuda=args.device == "cuda")
    try:
        grads = split_search_gradients(args, device)
        if distributed.is_main():
            torch.save(grads, os.path.join(args.out, "ranks.pt"))
    finally:
        distributed.shutdown()


def split_search_gradients(args, device: torch.device) -> Dict[str, torch.Tensor]:
    """Alpha's and the prompts' gradients of the mean loss over a global batch of 4, this process
    taking every N-th image; in one process, all of them."""
    clip = device_clip(backbone(args.shape), device, "fp32")
    names = class_names(args.classes[0])
    x, y = batches(clip.visual.input_resolution, len(names))["train"]
    share = slice(distributed.rank(), None, distributed.world_size())
    torch.manual_seed(0)
    model = build_supernet(clip, names, candidates=range(7), **get_design("maple").search_space()).train()
    learner = model.prompt_learner
    with strict_fp32():
        loss = F.cross_entropy(model(x[share].to(device)), y[share].to(device))
        params = learner.arch_parameters() + learner.prompt_parameters()
        grads = distributed.average_gradients(torch.autograd.grad(loss, params, allow_unused=True))
    return {"alpha gradient": _flat(grads[: len(learner.arch_parameters())]).cpu(),
            "prompt gradient": _flat(grads[len(learner.arch_parameters()):]).cpu()}


def launch(kind: str, args, out: str, **env) -> subprocess.Popen:
    return subprocess.Popen(worker_command(kind, args, out), env=worker_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """Wait for ``proc``; its output if it failed, else ""."""
    output, _ = proc.communicate(timeout=timeout)
    return "" if proc.returncode == 0 else f"exit {proc.returncode}: {output.strip()[-600:]}"


def kill_after_first_checkpoint(proc: subprocess.Popen, folder: str, timeout: float, epochs: int) -> str:
    """SIGKILL ``proc`` as soon as its search checkpoint exists; "" if it was killed mid-search."""
    path, deadline = os.path.join(folder, CHECKPOINT_FILE), time.time() + timeout
    while not os.path.isfile(path):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            return finish(proc, 60) or "the search ended before writing a checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    if os.path.isfile(os.path.join(folder, "final.pt")):
        return f"the search finished before the kill: raise --resume-epochs ({epochs})"
    return ""


def resume_row(args) -> Row:
    precision = "amp" if args.device == "cuda" else "fp32"
    with tempfile.TemporaryDirectory() as root:
        killed, straight = os.path.join(root, "killed"), os.path.join(root, "straight")
        started = time.perf_counter()
        problem = (kill_after_first_checkpoint(launch("search", args, killed), killed, args.timeout, args.resume_epochs)
                   or finish(launch("search", args, killed), args.timeout)
                   or finish(launch("search", args, straight), args.timeout))
        seconds = time.perf_counter() - started
        if problem:
            return Row("kill + resume", precision, result="FAIL", seconds=seconds, note=problem)
        a, b = (torch.load(os.path.join(d, "final.pt"), weights_only=True) for d in (killed, straight))
    difference = max((a[k].double() - b[k].double()).abs().max().item() for k in b)
    note = "bit-identical" if difference == 0 else "max |difference| of prompts and alpha"
    return Row("kill + resume", precision, str(args.classes[0]), difference, RESUME_TOLERANCE, seconds, None,
               "pass" if difference <= RESUME_TOLERANCE else "FAIL",
               f"SIGKILL after the first checkpoint, resumed to epoch {args.resume_epochs}; {note}")


def ranks_row(args) -> Row:
    backend = "NCCL" if args.device == "cuda" else "gloo"
    if args.device == "cuda" and torch.cuda.device_count() < 2:
        return Row(f"2 processes ({backend})", result="skip", note="needs 2 visible GPUs")
    with tempfile.TemporaryDirectory() as out:
        started, port = time.perf_counter(), _free_port()
        procs = [launch("ranks", args, out, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=r, LOCAL_RANK=r,
                        WORLD_SIZE=2) for r in range(2)]
        problem = "; ".join(p for p in (finish(proc, args.timeout) for proc in procs) if p)
        seconds = time.perf_counter() - started
        if problem:
            return Row(f"2 processes ({backend})", "fp32", result="FAIL", seconds=seconds, note=problem)
        split = torch.load(os.path.join(out, "ranks.pt"), weights_only=True)
    one = split_search_gradients(args, torch.device(args.device, 0) if args.device == "cuda" else CPU)
    difference = relative_difference(split, one)
    return Row(f"2 processes ({backend})", "fp32", str(args.classes[0]), difference, RANKS_TOLERANCE, seconds, None,
               "pass" if difference <= RANKS_TOLERANCE else "FAIL", "search gradients against 1 process")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the table ------------------------------------------------------------------------------------
def _number(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(rows: List[Row]) -> None:
    header = ("check", "precision", "classes", "difference", "tolerance", "result", "step s", "peak MiB", "note")
    lines = [header] + [(r.check, r.precision, r.classes, _number(r.difference, ".2e"), _number(r.tolerance, ".0e"),
                         r.result, _number(r.seconds, ".3f"), _number(r.peak_mb, ".0f"), r.note) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])


def device_under_test(args) -> Optional[torch.device]:
    """The device to check, or None (after saying why) when there is none."""
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing was checked (this script checks the CUDA, fp16, amp and NCCL paths on a "
              "GPU; `--device cpu --force` runs its code on the CPU)")
        return None
    if args.device == "cpu" and not args.force:
        print("--device cpu checks the CPU against itself: add --force to run it anyway (what CI does)")
        return None
    return torch.device("cuda", 0) if args.device == "cuda" else CPU


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--force", action="store_true", help="with --device cpu: run every check on the CPU")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="ViT-B/16")
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--compare-up-to", type=int, default=100, help="compare with the CPU up to this many classes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resume-epochs", type=int, default=6, help="epochs of the killed and resumed search")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for each subprocess")
    parser.add_argument("--worker", choices=("search", "ranks"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker:
        (search_worker if args.worker == "search" else ranks_worker)(args)
        return 0
    device = device_under_test(args)
    if device is None:
        return 0
    cpu_clip = backbone(args.shape)
    print(f"GPU check: {args.shape} (random weights), torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU (forced)'}")
    started = time.perf_counter()
    with strict_fp32():
        rows = [row for classes in args.classes for row in precision_rows(cpu_clip, classes, device, args)]
    rows += [resume_row(args), ranks_row(args)]
    print_table(rows)
    failed = [r for r in rows if r.result == "FAIL"]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed or skipped, {len(failed)} failed, "
          f"in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
