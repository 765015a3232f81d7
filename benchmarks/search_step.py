"""One search step (forward + backward) at ViT-B/16 shapes: single pass vs alternatives.

Variants, measured in one process, their steps interleaved (a busy moment of a shared machine hits
all of them), time = the fastest of ``--repeats`` steps:

* ``single-pass``: the supernet as shipped (candidates mixed in one attention pass);
* ``per-candidate``: the same supernet with one full attention per candidate (the paper's
  formula computed literally: ``reference_mixture_attention``);
* ``fixed-max``: no search, a fixed prefix configuration with the largest candidate length in
  every layer of both branches (the cost floor a mixture cannot beat by much).

Random weights, CPU, batch 2, C = {0..6}, both branches searched. Memory is what autograd saves
for the backward pass (``dpl_plugin.runtime.memory.SavedActivations``: what an accelerator holds between
forward and backward), not the process's resident memory, which depends on the CPU allocator.
Targets: single-pass at least 3x faster than per-candidate, and at most 1.2x the fixed-max step
(``benchmarks/scale.py``: at most 1.1x in time and memory).

    python benchmarks/search_step.py [--classes 100] [--batch 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from common import random_clip  # first: puts the repository on sys.path
import dpl_plugin.prompting.insertion as insertion
from dpl_plugin import PromptConfig, build_prompted_clip
from dpl_plugin.prompting.attention import reference_mixture_attention
from dpl_plugin.classnames import benchmark_classnames
from dpl_plugin.runtime.memory import SavedActivations
from dpl_plugin.search import build_supernet

VARIANTS = ("single-pass", "per-candidate", "fixed-max")


@contextlib.contextmanager
def per_candidate(active: bool):
    """The supernet's layers compute the mixture literally, one attention per candidate."""
    fast = insertion.mixture_attention
    insertion.mixture_attention = reference_mixture_attention if active else fast
    try:
        yield
    finally:
        insertion.mixture_attention = fast


def variant_step(variant: str, clip_model, names, batch: int):
    """``(forward, step)`` of ``variant`` on a fixed random batch."""
    if variant == "fixed-max":
        model = build_prompted_clip(clip_model, names, PromptConfig(text=[6] * 12, vision=[6] * 12, insertion="prefix"))
    else:
        model = build_supernet(clip_model, names, candidates=range(7))
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(batch) % len(names)
    params = model.learnable_parameters()

    def forward():
        with per_candidate(variant == "per-candidate"):
            return torch.nn.functional.cross_entropy(model(images), labels)

    def step():
        with per_candidate(variant == "per-candidate"):
            torch.autograd.grad(forward(), params)

    return model, forward, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"search step at ViT-B/16 shapes, batch {args.batch}, {args.classes} classes, C = 0..6, "
          f"both branches; torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    clip_model = random_clip("ViT-B/16")
    names = benchmark_classnames("imagenet")[:args.classes]
    steps, saved = {}, {}
    for variant in VARIANTS:
        model, forward, steps[variant] = variant_step(variant, clip_model, names, args.batch)
        with SavedActivations(exclude=model.parameters()) as memory:
            loss = forward()
        saved[variant] = memory.bytes / 2**20
        del loss
        steps[variant]()  # warm-up
    seconds = {v: float("inf") for v in VARIANTS}
    for _ in range(args.repeats):
        for variant, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[variant] = min(seconds[variant], time.perf_counter() - start)
    print(f"{'variant':<15}{'step (s)':>10}{'saved for backward (MB)':>25}")
    for variant in VARIANTS:
        print(f"{variant:<15}{seconds[variant]:>10.3f}{saved[variant]:>25.1f}")
    single, per, fixed = (seconds[v] for v in VARIANTS)
    print(f"per-candidate / single-pass time: {per / single:.2f}x (target >= 3x)")
    print(f"single-pass / fixed-max time:     {single / fixed:.2f}x (target <= 1.2x)")
    print(f"memory: single-pass / fixed-max {saved['single-pass'] / saved['fixed-max']:.2f}x, "
          f"per-candidate / single-pass {saved['per-candidate'] / saved['single-pass']:.2f}x")


if __name__ == "__main__":
    main()
