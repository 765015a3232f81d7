"""DPL end to end on CPU in minutes, with no internet, no GPU, no datasets and no Dassl.

    python scripts/quickstart.py                 # MaPLe's design, 8 shots, seed 1
    python scripts/quickstart.py --design ivlp --shots 8 --seed 2

The task: 10-class Fashion-MNIST, *rotated by 90 degrees*, 8 shots per class, seen through a small
CLIP (12 layers per branch, like ViT-B/16) pretrained on upright Fashion-MNIST (shipped as ``dpl-demo``; Debian's ``dataset-fashion-mnist``
provides the images). The script is also a short tour of dpl_plugin's plain-PyTorch API:

1. zero-shot accuracy of the frozen CLIP;
2. the search stage: a supernet with prompts of every candidate length in every layer, and
   ``alpha`` learned on the validation split (``BilevelSearch``) -> a ``PromptConfig``;
   The log says per layer whether the choice is decided (top probability >= 0.6);
3. the train stage: the searched lengths, text prompts of layer 0 starting from the words of
   "a photo of a" (``text_init="template"``), trained on the training split;
4. test accuracy. Search files (configuration, alpha history, heatmaps) go to ``--output``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dpl_plugin as dpl  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--design", default="maple", choices=sorted(dpl.DESIGNS))
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shift", default=dpl.demo.DEFAULT_SHIFT)
    parser.add_argument("--search-epochs", type=int, default=10)
    parser.add_argument("--train-epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.02)
    # A demo search makes a few hundred alpha steps; at the recipe's 0.0035 alpha cannot decide.
    parser.add_argument("--alpha-lr", type=float, default=0.02)
    parser.add_argument("--preset", default="paper", choices=sorted(dpl.search.PRESETS))
    parser.add_argument("--output", default="output/quickstart")
    parser.add_argument("--backbone", default="dpl-demo",
                        help="any dpl_plugin.load_clip name taking 28x28 images, e.g. open_clip:FOLDER (README, Backbones)")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.time()
    dpl.seed_everything(args.seed)
    clip_model = dpl.load_clip(args.backbone)
    splits = dpl.demo.demo_splits(args.shots, args.seed, args.shift)
    train, val, test = dpl.demo.as_datasets(splits)
    classnames = splits.classnames
    test_loader = DataLoader(test, batch_size=256)
    print(f"Task: Fashion-MNIST shifted by '{splits.shift}', {args.shots} shots x {len(classnames)} classes, "
          f"{len(val)} validation and {len(test)} test images; design: {args.design}")

    spec = dpl.BackboneSpec.of(clip_model)
    zero_shot = dpl.build_prompted_clip(clip_model, classnames, dpl.PromptConfig.zeros(spec.text_layers, spec.vision_layers))
    print(f"Zero-shot accuracy: {dpl.evaluate(zero_shot, test_loader, progress=False):.1f}%")

    # Stage 1: search prompt lengths (0..6 tokens) per layer and branch; alpha learns on `val`.
    dpl.seed_everything(args.seed)  # the search starts from the same state whatever ran before it
    settings = dpl.SearchSettings(epochs=args.search_epochs, lr=args.lr, alpha_lr=args.alpha_lr, preset=args.preset,
                                  text_init="normal:0.02", vision_init="normal:0.02")
    result = dpl.search_prompt_lengths(
        clip_model, classnames, DataLoader(train, batch_size=settings.batch_size, shuffle=True),
        DataLoader(val, batch_size=settings.val_batch_size, shuffle=True), design=args.design,
        settings=settings, output_dir=args.output,
        provenance={"task": f"fashion-mnist/{splits.shift}", "shots": args.shots, "seed": args.seed})
    config = result.config
    print(f"\nSearched configuration ({args.output}/searched_config.yaml):")
    print(f"  text   {config.text}\n  vision {config.vision}")

    print(f"  supernet validation accuracy {result.val_accuracy:.1f}%; "
          f"{dpl.search.confidence_summary(result.history).message}")

    # Stage 2: train the searched lengths (prefix insertion, as searched).
    dpl.seed_everything(args.seed)
    model = dpl.build_prompted_clip(clip_model, classnames, config, text_init="template")
    dpl.train_prompts(model, DataLoader(train, batch_size=4, shuffle=True),
                      dpl.TrainSettings(epochs=args.train_epochs, lr=args.lr), progress=True)
    accuracy = dpl.evaluate(model, test_loader, progress=False)
    learned = sum(p.numel() for p in model.learnable_parameters())
    print(f"\nDPL ({args.design}) test accuracy: {accuracy:.1f}% with {learned:,} learned parameters "
          f"({time.time() - start:.0f} s in all, {torch.get_num_threads()} CPU threads)")


if __name__ == "__main__":
    main()
