"""The search at scale: memory and time of one search step, measured side by side.

One search step is a forward and backward pass of the supernet (ViT-B/16 shapes, random weights,
CPU, C = {0..6}, both branches searched) on one batch, gradients for every learnable parameter.
Sections, one function each; ``main`` runs the chosen ones and prints them together:

* ``mixture``: the single-pass candidate mixture against the fixed configuration with the
  largest candidate in every layer of both branches, at 20 and 100 classes, batch 2. Memory is
  what autograd saves for backward (``dpl_plugin.runtime.memory.SavedActivations``), the bytes an
  accelerator holds between forward and backward; time is the fastest of interleaved steps (the
  least disturbed by other processes), wall-clock and CPU.
  Targets: at most 1.1x the fixed step's memory and at most 1.1x its time.
* ``checkpoint``: 1,000 classes, batch 4, with and without text activation checkpointing
  (``TRAINER.DPL.TEXT_CHECKPOINT``), each in fresh processes: peak resident memory above the
  process's memory before the step (with freed tensors returned to the system at once, see
  ``EXACT_RSS``), and the step's time. Target: with checkpointing at most a third of the memory
  at no more than 1.35x the time. Needs about 8 GB and some 10-15 minutes on 2 cores.
* ``ranks``: the class prompts split across processes (``dpl_plugin.runtime.distributed``): the text side
  of a search step (the text branch's supernet at 1,000 classes: forward, gather, backward) with
  1 and with 2 gloo processes, one thread each, fresh processes; time per rank (the slowest rank
  of each step). Target: 2 processes at most 0.6x one process's time.

    python benchmarks/scale.py [--quick] [--sections mixture checkpoint ranks]

``--quick`` uses a few classes (a smoke test of the script, not the figures above).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CANDIDATES = range(7)
MB = 2**20


# -- shared pieces ---------------------------------------------------------------------------------
def build(variant: str, classes: int, text_checkpoint: bool = False):
    """``single-pass``: the supernet; ``fixed-max``: 6 prefix tokens in every layer of both branches."""
    from common import random_clip  # first: puts the repository on sys.path
    from dpl_plugin import PromptConfig, build_prompted_clip
    from dpl_plugin.classnames import benchmark_classnames
    from dpl_plugin.search import build_supernet

    clip_model = random_clip("ViT-B/16")
    names = (benchmark_classnames("imagenet") * (classes // 1000 + 1))[:classes]
    if variant == "fixed-max":
        config = PromptConfig(text=[max(CANDIDATES)] * 12, vision=[max(CANDIDATES)] * 12, insertion="prefix")
        return build_prompted_clip(clip_model, names, config, text_checkpoint=text_checkpoint)
    return build_supernet(clip_model, names, candidates=CANDIDATES, text_checkpoint=text_checkpoint)


def search_step(model, batch: int, seed: int = 0):
    """A function running one forward + backward pass of ``model`` on a fixed random batch."""
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, 224, 224, generator=g)
    labels = torch.arange(batch) % model.num_classes
    params = model.learnable_parameters()

    def forward():
        return torch.nn.functional.cross_entropy(model(images), labels)

    def step():
        torch.autograd.grad(forward(), params)

    return forward, step


def run_child(section: str, env=None, **kwargs) -> dict:
    """Run ``section``'s measurement in a fresh process (its peak memory is its own)."""
    args = [sys.executable, os.path.abspath(__file__), "--child", section, "--child-args", json.dumps(kwargs)]
    out = subprocess.run(args, capture_output=True, text=True, cwd=HERE, env={**os.environ, **(env or {})})
    if out.returncode:
        sys.exit(f"{section} {kwargs} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- section: single-pass mixture vs fixed maximum length ------------------------------------------
def timed_step(step) -> dict:
    """Wall-clock and CPU seconds of one call (CPU time: all of this process's threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def fastest(times) -> dict:
    """Per clock, the fastest of several steps: the one least disturbed by other processes."""
    return {clock: min(t[clock] for t in times) for clock in ("wall", "cpu")}


def mixture_vs_fixed(class_counts, batch: int, repeats: int) -> dict:
    """Saved activations and step time of both variants at each class count, in this process."""
    from dpl_plugin.runtime.memory import SavedActivations

    rows = []
    for classes in class_counts:
        steps, saved = {}, {}
        for variant in ("single-pass", "fixed-max"):
            model = build(variant, classes)
            forward, steps[variant] = search_step(model, batch)
            with SavedActivations(exclude=model.parameters()) as memory:
                loss = forward()
            saved[variant] = memory.bytes
            del loss
            steps[variant]()  # warm-up
        times = {v: [] for v in steps}
        for _ in range(repeats):  # interleaved, so that a busy moment of the machine hits both
            for variant, step in steps.items():
                times[variant].append(timed_step(step))
        best = {v: fastest(t) for v, t in times.items()}
        rows.append({"classes": classes, "saved_mb": {v: b / MB for v, b in saved.items()}, "seconds": best,
                     "memory_ratio": saved["single-pass"] / saved["fixed-max"],
                     "time_ratio": {c: best["single-pass"][c] / best["fixed-max"][c] for c in ("wall", "cpu")}})
    return {"batch": batch, "repeats": repeats, "rows": rows}


def print_mixture(result: dict) -> None:
    print(f"\n== single-pass mixture vs fixed maximum length (batch {result['batch']}; time: fastest of "
          f"{result['repeats']} interleaved steps) ==")
    print(f"{'classes':>8} | {'saved for backward (MB)':^25} | {'step, wall (s)':^17} | "
          f"{'single-pass / fixed-max':^32}")
    print(f"{'':>8} | {'single-pass':>12}{'fixed-max':>13} | {'single':>8}{'fixed':>9} | "
          f"{'memory':>9}{'wall time':>11}{'CPU time':>11}")
    for r in result["rows"]:
        saved, seconds, ratio = r["saved_mb"], r["seconds"], r["time_ratio"]
        print(f"{r['classes']:>8} | {saved['single-pass']:>12.1f}{saved['fixed-max']:>13.1f} | "
              f"{seconds['single-pass']['wall']:>8.2f}{seconds['fixed-max']['wall']:>9.2f} | "
              f"{r['memory_ratio']:>8.3f}x{ratio['wall']:>10.3f}x{ratio['cpu']:>10.3f}x")
    print("targets: memory <= 1.1x, time <= 1.1x")


# -- section: text activation checkpointing at many classes ----------------------------------------
def peak_step(classes: int, batch: int, text_checkpoint: bool, repeats: int) -> dict:
    """(child process) Peak resident memory added by a search step, and the fastest step's time."""
    model = build("single-pass", classes, text_checkpoint=text_checkpoint)
    _, step = search_step(model, batch)
    with PeakRSS() as memory:
        times = [timed_step(step) for _ in range(repeats)]
    return {"peak_mb": memory.added / MB, "seconds": fastest(times)}


class PeakRSS:
    """Peak resident memory of this process above its level on entry (Linux ``VmHWM``, reset on entry)."""

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {key}")

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak to the current resident size
        self.start = self._status("VmRSS:")
        return self

    def __exit__(self, *exc):
        self.added = self._status("VmHWM:") - self.start


# glibc keeps freed blocks below its (self-raising) mmap threshold in the heap, so that the resident
# peak would count memory no tensor holds any more; with a fixed low threshold every tensor is its
# own mapping, returned on free. It slows allocation, so time is measured in another process.
EXACT_RSS = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def text_checkpointing(classes: int, batch: int, repeats: int) -> dict:
    runs = {}
    for flag in (False, True):
        memory = run_child("checkpoint", env=EXACT_RSS, classes=classes, batch=batch, text_checkpoint=flag, repeats=1)
        timing = run_child("checkpoint", classes=classes, batch=batch, text_checkpoint=flag, repeats=repeats)
        runs[flag] = {"peak_mb": memory["peak_mb"], "seconds": timing["seconds"]}
    return {"classes": classes, "batch": batch, "repeats": repeats, "runs": runs,
            "memory_ratio": runs[True]["peak_mb"] / runs[False]["peak_mb"],
            "time_ratio": {c: runs[True]["seconds"][c] / runs[False]["seconds"][c] for c in ("wall", "cpu")}}


def print_checkpointing(result: dict) -> None:
    print(f"\n== text activation checkpointing, {result['classes']} classes, batch {result['batch']} (fresh "
          f"processes: peak resident memory of one step; time: fastest of {result['repeats']} steps) ==")
    print(f"{'TEXT_CHECKPOINT':<16}{'peak memory (MB)':>18}{'step, wall (s)':>16}{'CPU (s)':>9}")
    for flag, r in result["runs"].items():
        print(f"{str(flag):<16}{r['peak_mb']:>18.0f}{r['seconds']['wall']:>16.1f}{r['seconds']['cpu']:>9.1f}")
    ratio = result["time_ratio"]
    print(f"with / without: memory {result['memory_ratio']:.3f}x (target <= 0.333x), time {ratio['wall']:.3f}x "
          f"wall, {ratio['cpu']:.3f}x CPU (target <= 1.35x)")


# -- section: class prompts split across processes -------------------------------------------------
def text_rank_worker(rank: int, world: int, port: int, classes: int, repeats: int, out: str) -> None:
    """(spawned) One rank, one thread: its share of the class texts through the supernet's text side
    (forward, gather, backward to the prompts and alpha), ``repeats`` times."""
    import torch

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    sys.path.insert(0, HERE)
    from common import random_clip  # first: puts the repository on sys.path
    from dpl_plugin.runtime import distributed
    from dpl_plugin.classnames import benchmark_classnames
    from dpl_plugin.search import build_supernet

    distributed.init_from_env(use_cuda=False)  # one process: no process group, all classes here
    try:
        names = (benchmark_classnames("imagenet") * (classes // 1000 + 1))[:classes]
        model = build_supernet(random_clip("ViT-B/16"), names, branches=("text",), candidates=CANDIDATES)
        params = model.learnable_parameters()
        probe = torch.randn(model.backbone.embed_dim, generator=torch.Generator().manual_seed(0))
        seconds, cpu = [], []
        for _ in range(repeats):
            distributed.barrier()
            start, start_cpu = time.perf_counter(), time.process_time()
            feats = model.encode_text()
            torch.autograd.grad((feats @ probe).square().sum(), params)  # every class's feature in the loss
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        shard = distributed.shard(classes)
        torch.save({"seconds": seconds, "cpu": cpu, "classes": len(shard), "features": feats.detach()},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        distributed.shutdown()


def text_per_rank(classes: int, repeats: int) -> dict:
    """The text side's step time per rank with 1 and with 2 processes (gloo), fresh processes each."""
    import socket
    import tempfile

    import torch
    import torch.multiprocessing as mp

    runs = {}
    for world in (1, 2):
        with tempfile.TemporaryDirectory() as out, socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            mp.spawn(text_rank_worker, args=(world, port, classes, repeats, out), nprocs=world)
            ranks = [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(world)]
        runs[world] = {"seconds": _median_of_slowest(ranks, "seconds"), "cpu": _median_of_slowest(ranks, "cpu"),
                       "classes": [r["classes"] for r in ranks], "features": ranks[0]["features"]}
    diff = (runs[1]["features"] - runs[2]["features"]).abs().max().item()
    for run in runs.values():
        del run["features"]
    return {"classes": classes, "repeats": repeats, "runs": runs, "max_feature_diff": diff,
            "ratio": runs[2]["seconds"] / runs[1]["seconds"], "cpu_ratio": runs[2]["cpu"] / runs[1]["cpu"]}


def _median_of_slowest(ranks, key: str) -> float:
    """Per step the slowest rank (a step waits for it), then the median over steps."""
    steps = sorted(max(r[key][i] for r in ranks) for i in range(len(ranks[0][key])))
    return steps[len(steps) // 2]


def print_ranks(result: dict) -> None:
    print(f"\n== class prompts split across processes: text side of a search step (forward + backward), "
          f"{result['classes']} classes, gloo, one thread per process, median of {result['repeats']} ==")
    print(f"{'processes':<10}{'classes per rank':>18}{'wall time per rank (s)':>24}{'CPU time per rank (s)':>23}")
    for world, r in result["runs"].items():
        print(f"{world:<10}{'/'.join(map(str, r['classes'])):>18}{r['seconds']:>24.2f}{r['cpu']:>23.2f}")
    print(f"2 processes / 1: wall {result['ratio']:.3f}x, CPU {result['cpu_ratio']:.3f}x (target <= 0.6x; CPU "
          f"time counts a rank's own work, not its waits for a core on a busy machine); gathered features equal "
          f"one process's to {result['max_feature_diff']:.1e}")


# -- main ------------------------------------------------------------------------------------------
# Each section: name -> (run(args) -> result, print(result)). A section that needs fresh processes
# registers its measurement in CHILDREN, called as `scale.py --child NAME --child-args JSON`.
SECTIONS = {
    "mixture": (lambda args: mixture_vs_fixed((4, 8) if args.quick else (20, 100), batch=2,
                                              repeats=1 if args.quick else args.repeats), print_mixture),
    "checkpoint": (lambda args: text_checkpointing(50 if args.quick else 1000, batch=4,
                                                   repeats=1 if args.quick else 2), print_checkpointing),
    "ranks": (lambda args: text_per_rank(50 if args.quick else 1000, repeats=1 if args.quick else 2), print_ranks),
}
CHILDREN = {"checkpoint": peak_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few classes: a smoke test of the script")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant in the mixture section")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    if args.child:
        print(json.dumps(CHILDREN[args.child](**json.loads(args.child_args))))
        return

    from common import header

    header("search step at ViT-B/16 shapes, random weights, C = 0..6, both branches")
    results = {name: SECTIONS[name][0](args) for name in args.sections}  # all measured, then all printed
    for name, result in results.items():
        SECTIONS[name][1](result)


if __name__ == "__main__":
    main()
