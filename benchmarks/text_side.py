"""Text-side savings: sequences cut after the last EOT, and class features once per evaluation.

Part 1 counts, on the 11 benchmark datasets' class names, how many of the 77 context positions
the text encoder still processes once every class prompt is cut after the last EOT among the
classes (exact under causal attention).
Part 2 measures, at ViT-B/16 shapes with 1,000 ImageNet classes (random weights, CPU), the text
encoder at 77 vs cut positions and one image batch, runs a small evaluation both ways (class
features per batch at 77 positions, as CoOp-family code does, vs once per evaluation, cut), and
extrapolates the speed-up to ImageNet's test protocol (50,000 images, batch 100).

    python benchmarks/text_side.py [--classes 1000] [--batch 16] [--batches 3]
"""

from __future__ import annotations

import argparse

import torch

from common import header, random_clip, timed
from dpl_plugin import PromptConfig, build_prompted_clip
from dpl_plugin.classnames import BENCHMARK_DATASETS, benchmark_classnames
from dpl_plugin.prompting.text_inputs import build_prompts

TEMPLATES = {"DPL (a photo of a {}.)": ("a photo of a {}.", 0), "CoOp (16 context tokens + {}.)": ("{}.", 16)}


def token_counts() -> None:
    header("Part 1: text positions processed per class prompt (of 77)")
    for label, (template, slots) in TEMPLATES.items():
        print(f"\n{label}")
        print(f"{'dataset':<16}{'classes':>8}{'mean len':>10}{'max len':>9}{'kept':>7}{'saved':>8}")
        kept_all = []
        for dataset in BENCHMARK_DATASETS:
            names = benchmark_classnames(dataset)
            prompts = build_prompts(names, [template], slots)
            lengths = (prompts.eot + 1).float()
            kept = prompts.length / 77
            kept_all.append(kept)
            print(f"{dataset:<16}{len(names):>8}{lengths.mean():>10.1f}{prompts.length:>9}{kept:>7.2f}{1 - kept:>8.0%}")
        mean = sum(kept_all) / len(kept_all)
        print(f"{'mean':<16}{'':>8}{'':>10}{'':>9}{mean:>7.2f}{1 - mean:>8.0%}  "
              f"(positions ratio 77/L = {1 / mean:.1f}x)")


def evaluation_speedup(classes: int, batch: int, batches: int) -> None:
    header(f"Part 2: evaluation at {classes} classes, ViT-B/16 shapes (random weights)")
    torch.manual_seed(0)
    clip_model = random_clip("ViT-B/16")
    names = (benchmark_classnames("imagenet") * (classes // 1000 + 1))[:classes]
    config = PromptConfig(text=[2] * 12, vision=[2] * 12, insertion="prefix")
    cut = build_prompted_clip(clip_model, names, config)
    full = build_prompted_clip(clip_model, names, config, truncate=False)
    full.prompt_learner.load_state_dict(cut.prompt_learner.state_dict())
    images = torch.randn(batches, batch, 3, 224, 224)

    with torch.no_grad():
        t_full = timed(full.encode_text, repeats=1, warmup=0)
        t_cut = timed(cut.encode_text, repeats=1, warmup=0)
        t_img = timed(lambda: cut.encode_image(images[0]), repeats=1, warmup=1)
        print(f"text encoder, {classes} classes: 77 positions {t_full:.2f} s | cut to "
              f"{cut.text_tokens.shape[1]} positions {t_cut:.2f} s | ratio {t_full / t_cut:.2f}x")
        print(f"image encoder, batch {batch}: {t_img:.2f} s")

        def per_batch_full():  # class features recomputed for every batch, all 77 positions
            return [full(x) for x in images]

        def once_cut():
            with cut.cached_text_features():
                return [cut(x) for x in images]

        old, new = timed(per_batch_full, repeats=1, warmup=0), timed(once_cut, repeats=1, warmup=0)
        same = all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(per_batch_full(), once_cut()))
    print(f"measured evaluation of {batches} batches: per batch at 77 positions {old:.1f} s | once, cut "
          f"{new:.1f} s | speed-up {old / new:.2f}x | same logits: {same}")
    n = 50_000 // 100
    t_img100 = t_img * 100 / batch
    projected_old = n * (t_full + t_img100)
    projected_new = t_cut + n * t_img100
    print(f"ImageNet test protocol (50,000 images, batch 100 = {n} batches), from the timings above: "
          f"{projected_old / 3600:.1f} h -> {projected_new / 3600:.1f} h, speed-up {projected_old / projected_new:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--skip-timing", action="store_true", help="only count tokens (part 1)")
    args = parser.parse_args()
    token_counts()
    if not args.skip_timing:
        evaluation_speedup(args.classes, args.batch, args.batches)


if __name__ == "__main__":
    main()
