"""What a training objective costs: one train step (forward + backward) of IVLP's hand design under
cross-entropy, KgCoOp's and PromptSRC's objectives, at ViT-B/16 shapes with random weights.

The objectives' steps are interleaved (a busy moment of a shared machine hits all of them); time =
the fastest of ``--repeats`` steps in wall-clock and in the process's CPU time (which a busy machine
inflates less), printed with its ratio to cross-entropy. Also printed: the one-off
cost of the frozen features each objective compares with (computed at its first step): KgCoOp one
hand-crafted prompt per class, PromptSRC the 60 ImageNet templates per class. Expected: KgCoOp's step
about cross-entropy's (its extra term is a cosine of features already computed), PromptSRC's up to
one unprompted image-encoder forward more. CPU only; GPU ratios are not shown by this.

    python benchmarks/objectives.py [--classes 10] [--batch 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import random_clip  # first: puts the repository on sys.path
from dpl_plugin import BackboneSpec, KgCoOp, Objective, PromptSRC, build_prompted_clip, get_design
from dpl_plugin.classnames import benchmark_classnames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    clip_model = random_clip("ViT-B/16")
    names = benchmark_classnames("caltech101")[: args.classes]
    config = get_design("ivlp").baseline_config(BackboneSpec.of(clip_model), n_text=4, n_vision=4, depth_text=9,
                                                depth_vision=9)
    model = build_prompted_clip(clip_model, names, config, ctx_init="a photo of a")
    params = model.learnable_parameters()
    images = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(args.batch) % args.classes
    objectives = {"cross-entropy": Objective(), "KgCoOp": KgCoOp(), "PromptSRC": PromptSRC()}
    print(f"train step of IVLP 4+4 depth 9 at ViT-B/16 shapes, batch {args.batch}, {args.classes} classes; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    prepare = {}
    for name, objective in objectives.items():
        objective.prepare(model, names)
        start = time.process_time()
        objective(model, images[:1], labels[:1])  # the first call computes the frozen features
        prepare[name] = time.process_time() - start
    wall, cpu = {name: [] for name in objectives}, {name: [] for name in objectives}
    for _ in range(args.repeats):
        for name, objective in objectives.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            torch.autograd.grad(objective(model, images, labels).loss, params)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    base, base_cpu = min(wall["cross-entropy"]), min(cpu["cross-entropy"])
    print(f"{'objective':<14} {'wall s':>8} {'x CE':>6} {'CPU s':>8} {'x CE':>6} {'first call CPU s':>17}")
    for name in objectives:
        w, c = min(wall[name]), min(cpu[name])
        print(f"{name:<14} {w:8.2f} {w / base:6.2f} {c:8.2f} {c / base_cpu:6.2f} {prepare[name]:17.1f}")


if __name__ == "__main__":
    main()
