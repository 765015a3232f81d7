"""Shared fixtures: small CLIPs built from the installed ``clip.model`` classes, saved to files and
loaded back through :func:`dpl_plugin.load_clip`, the same path real weights take."""

import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from dpl_plugin.backbones.clip_package import clip_model_module  # noqa: E402
from dpl_plugin import load_clip  # noqa: E402

CLASSNAMES = ["cat", "golden_retriever", "sea turtle", "airliner", "a rather long class name for testing"]


def make_clip(vision_width=128, vision_layers=3, text_width=128, text_layers=3, patch=8, resolution=32,
              embed_dim=32, seed=0, vision_resnet=False):
    """A randomly initialised CLIP. Heads = width // 64, as ``clip.model.build_model`` infers them."""
    torch.manual_seed(seed)
    vision = (1, 1, 1, 1) if vision_resnet else vision_layers
    model = clip_model_module.CLIP(
        embed_dim=embed_dim, image_resolution=resolution, vision_layers=vision, vision_width=vision_width,
        vision_patch_size=patch, context_length=77, vocab_size=49408, transformer_width=text_width,
        transformer_heads=text_width // 64, transformer_layers=text_layers,
    )
    # CLIP's init leaves biases at zero; randomise them so tests see every term of the computation.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") and "ln" not in name and "bn" not in name:
                param.normal_(std=0.02)
    return model


def epoch_lrs(optimizer, scheduler, epochs):
    """The learning rate of each epoch when ``scheduler`` is stepped once per epoch."""
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def save_and_load(model, path):
    torch.save(model.state_dict(), path)
    return load_clip(str(path))


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny_vit.pt"
    torch.save(make_clip().state_dict(), path)
    return str(path)


@pytest.fixture()
def tiny_clip(tiny_clip_path):
    """A fresh copy per test: tests may not leak state through the shared model."""
    return load_clip(tiny_clip_path)


@pytest.fixture()
def images():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
