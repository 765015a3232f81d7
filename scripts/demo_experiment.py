"""Does the length search help? Zero-shot CLIP vs each baseline's hand design vs DPL, on the demo task.

    python scripts/demo_experiment.py                  # 3 seeds, all four designs (~10 min on 2 cores)
    python scripts/demo_experiment.py --seeds 1 --designs maple --train-epochs 2   # a smoke run

For every seed and design: the baseline's hand design (native insertion, depths scaled to the
demo backbone's 4 layers) trained for ``--train-epochs``; and DPL: a length search of
``--search-epochs`` followed by the same training budget on the searched configuration, in the
form it was searched in (prefix) and in the baselines' form (native). Writes ``results.md`` (mean and standard deviation over seeds, and every run),
``results.json``, and each search's configuration, alpha history and heatmaps under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time

from torch.utils.data import DataLoader

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dpl_plugin as dpl  # noqa: E402
from dpl_plugin.demo.task import DEFAULT_SHIFT, as_datasets, demo_splits  # noqa: E402
from dpl_plugin.pipeline import search_prompt_lengths  # noqa: E402
from dpl_plugin.reproducibility import seed_everything  # noqa: E402
from dpl_plugin.training import TrainSettings, evaluate, train_prompts  # noqa: E402

# The baselines' hand designs at the demo backbone's depth (4 layers instead of ViT-B's 12).
HAND_DESIGNS = {"coop": {"n_ctx": 16}, "vpt": {"n_ctx": 8, "depth": 4},
                "ivlp": {"n_text": 2, "n_vision": 2, "depth_text": 4, "depth_vision": 4},
                "maple": {"n_ctx": 2, "depth": 3}}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--designs", nargs="+", default=list(HAND_DESIGNS), choices=list(HAND_DESIGNS))
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--shift", default=DEFAULT_SHIFT)
    parser.add_argument("--search-epochs", type=int, default=20)
    parser.add_argument("--train-epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--insertions", nargs="+", default=["prefix", "native"], choices=["prefix", "native"],
                        help="train the searched configuration in these forms (searched: prefix)")
    parser.add_argument("--output", default="output/demo_experiment")
    return parser.parse_args()


def fit_and_test(clip_model, classnames, config, train, test_loader, args, seed, ctx_init=""):
    seed_everything(seed)  # every method of a seed starts from the same random state
    model = dpl.build_prompted_clip(clip_model, classnames, config, ctx_init=ctx_init)
    train_prompts(model, DataLoader(train, batch_size=4, shuffle=True),
                  TrainSettings(epochs=args.train_epochs, lr=args.lr), progress=False)
    return evaluate(model, test_loader, progress=False)


def run_seed(clip_model, args, seed):
    splits = demo_splits(args.shots, seed, args.shift)
    train, val, test = as_datasets(splits)
    classnames, test_loader = splits.classnames, DataLoader(test, batch_size=500)
    spec = dpl.BackboneSpec.of(clip_model)
    zero = dpl.build_prompted_clip(clip_model, classnames, dpl.PromptConfig.zeros(spec.text_layers, spec.vision_layers))
    results = {"zero-shot": {"accuracy": evaluate(zero, test_loader, progress=False)}}
    for name in args.designs:
        design = dpl.get_design(name)
        hand = design.baseline_config(spec, **HAND_DESIGNS[name])
        results[f"{name} (hand design)"] = {
            "accuracy": fit_and_test(clip_model, classnames, hand, train, test_loader, args, seed, design.ctx_init),
            "text": hand.text, "vision": hand.vision}
        seed_everything(seed)
        searched = search_prompt_lengths(
            clip_model, classnames, DataLoader(train, batch_size=4, shuffle=True),
            DataLoader(val, batch_size=16, shuffle=True), design=name,
            settings=dpl.SearchSettings(epochs=args.search_epochs), lr=args.lr,
            output_dir=os.path.join(args.output, f"{name}_seed{seed}"),
            provenance={"task": f"fashion-mnist/{args.shift}", "shots": args.shots, "seed": seed}).config
        for insertion in args.insertions:
            results[f"{name} + DPL, {insertion}"] = {
                "accuracy": fit_and_test(clip_model, classnames, searched.with_insertion(insertion), train,
                                         test_loader, args, seed),
                "text": searched.text, "vision": searched.vision}
        print(f"seed {seed} {name}: " + " | ".join(f"{m[len(name) + 1:]} {r['accuracy']:.1f}%" for m, r in
                                                   results.items() if m.startswith(name + " ")),
              f"(searched: text {searched.text}, vision {searched.vision})")
    return results


def write_table(runs, args, seconds):
    methods = list(next(iter(runs.values())))
    lines = [f"# Demo experiment: Fashion-MNIST shifted by '{args.shift}', {args.shots} shots, seeds {args.seeds}",
             "", f"Search {args.search_epochs} epochs, training {args.train_epochs} epochs (every trained method), "
             f"SGD lr {args.lr}, batch 4; {seconds / 60:.1f} min in all.", "",
             "| method | accuracy (mean ± std) | per seed |", "|---|---|---|"]
    for method in methods:
        accs = [runs[seed][method]["accuracy"] for seed in args.seeds]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"| {method} | {statistics.mean(accs):.1f} ± {spread:.1f} | "
                     f"{', '.join(f'{a:.1f}' for a in accs)} |")
    lines += ["", "Configurations (text / vision tokens per layer):", ""]
    for seed in args.seeds:
        shown = set()  # the prefix and native runs of a design train the same searched configuration
        for method, r in runs[seed].items():
            label = method.split(",")[0]
            if "text" in r and label not in shown:
                shown.add(label)
                lines.append(f"- seed {seed}, {label}: text {r['text']}, vision {r['vision']}")
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump({"args": vars(args), "runs": runs}, f, indent=1)
    print("\n".join(lines))


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = time.time()
    clip_model = dpl.load_clip("dpl-demo")
    runs = {seed: run_seed(clip_model, args, seed) for seed in args.seeds}
    write_table(runs, args, time.time() - start)


if __name__ == "__main__":
    main()
