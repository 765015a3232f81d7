"""One search step (forward + backward) at ViT-B/16 shapes: single pass vs alternatives.

Variants, each in its own process, measured in one run:

* ``single-pass``: the supernet as shipped (candidates mixed in one attention pass);
* ``per-candidate``: the same supernet with one full attention per candidate (the paper's
  formula computed literally: ``reference_mixture_attention``);
* ``fixed-max``: no search, a fixed prefix configuration with the largest candidate length in
  every layer of both branches (the cost floor a mixture cannot beat by much).

Random weights, CPU, batch 2, C = {0..6}, both branches searched. Memory is what autograd saves
for the backward pass (``dpl_plugin.memory.SavedActivations``: what an accelerator holds between
forward and backward), not the process's resident memory, which depends on the CPU allocator.
Targets (issue #3): single-pass at least 3x faster than per-candidate, and at most 1.2x the
fixed-max step (issue 10, ``benchmarks/scale.py``: at most 1.1x in time and memory).

    python benchmarks/search_step.py [--classes 100] [--batch 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = ("single-pass", "per-candidate", "fixed-max")


def measure(variant: str, classes: int, batch: int, repeats: int) -> dict:
    import torch

    from common import random_clip, timed  # first: puts the repository on sys.path
    import dpl_plugin.insertion as insertion
    from dpl_plugin import PromptConfig, build_prompted_clip
    from dpl_plugin.attention import reference_mixture_attention
    from dpl_plugin.classnames import benchmark_classnames
    from dpl_plugin.memory import SavedActivations
    from dpl_plugin.search import build_supernet

    clip_model = random_clip("ViT-B/16")
    names = benchmark_classnames("imagenet")[:classes]
    candidates = range(7)
    if variant == "fixed-max":
        config = PromptConfig(text=[6] * 12, vision=[6] * 12, insertion="prefix")
        model = build_prompted_clip(clip_model, names, config)
    else:
        model = build_supernet(clip_model, names, candidates=candidates)
        if variant == "per-candidate":
            insertion.mixture_attention = reference_mixture_attention
    images = torch.randn(batch, 3, 224, 224)
    labels = torch.arange(batch) % classes
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        torch.autograd.grad(loss, params)

    with SavedActivations(exclude=model.parameters()) as saved:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
    del loss
    seconds = timed(step, repeats=repeats, warmup=1)
    return {"variant": variant, "seconds": seconds, "saved_mb": saved.bytes / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.classes, args.batch, args.repeats)))
        return

    import torch

    print(f"search step at ViT-B/16 shapes, batch {args.batch}, {args.classes} classes, C = 0..6, "
          f"both branches; torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    results = {}
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--classes", str(args.classes),
                              "--batch", str(args.batch), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        if out.returncode:
            sys.exit(f"{variant} failed:\n{out.stderr}")
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'variant':<15}{'step (s)':>10}{'saved for backward (MB)':>25}")
    for variant, r in results.items():
        print(f"{variant:<15}{r['seconds']:>10.3f}{r['saved_mb']:>25.1f}")
    single, per, fixed = (results[v] for v in VARIANTS)
    print(f"per-candidate / single-pass time: {per['seconds'] / single['seconds']:.2f}x (target >= 3x)")
    print(f"single-pass / fixed-max time:     {single['seconds'] / fixed['seconds']:.2f}x (target <= 1.2x)")
    print(f"memory: single-pass / fixed-max {single['saved_mb'] / fixed['saved_mb']:.2f}x, "
          f"per-candidate / single-pass {per['saved_mb'] / single['saved_mb']:.2f}x")


if __name__ == "__main__":
    main()
