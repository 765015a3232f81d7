"""Shared benchmark helpers: CLIP models at real shapes with random weights, and timing."""

from __future__ import annotations

import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from dpl_plugin.backbones.clip_package import clip_model_module  # noqa: E402

# (embed_dim, image_resolution, vision_layers, vision_width, patch, text_width, text_layers)
SHAPES = {
    "ViT-B/16": (512, 224, 12, 768, 16, 512, 12),
    "ViT-B/32": (512, 224, 12, 768, 32, 512, 12),
    "ViT-L/14": (768, 224, 24, 1024, 14, 768, 12),
}


def random_clip(name: str = "ViT-B/16", seed: int = 0):
    """A CLIP with the named model's shapes and random weights, frozen, fp32, eval mode."""
    embed, res, v_layers, v_width, patch, t_width, t_layers = SHAPES[name]
    torch.manual_seed(seed)
    model = clip_model_module.CLIP(embed, res, v_layers, v_width, patch, 77, 49408, t_width, t_width // 64, t_layers)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def timed(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def header(title: str) -> None:
    print(f"\n== {title} ==")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
