"""Fashion-MNIST from its original idx files, and conversion to CLIP's input format.

The files are looked for locally first (Debian's ``dataset-fashion-mnist`` package puts them in
``/usr/share/datasets/fashion-mnist``); torchvision's download is only the last resort.
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

# Official class names, in label order.
CLASSNAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

ENV_VAR = "DPL_FASHION_MNIST"
SYSTEM_ROOT = "/usr/share/datasets/fashion-mnist"
CACHE_ROOT = os.path.expanduser("~/.cache/dpl_plugin/fashion-mnist")
# The normalisation of clip.clip._transform, applied to the grey value in all three channels.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_PREFIX = {"train": "train", "test": "t10k"}
_MAGIC = {"images": 0x0803, "labels": 0x0801}


def _find(root: str, stem: str) -> Optional[str]:
    """``stem`` (e.g. ``t10k-images-idx3-ubyte``) in ``root``, gzip'd or not."""
    for name in (stem + ".gz", stem):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return None


def _read_idx(path: str, kind: str) -> torch.Tensor:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = 3 if kind == "images" else 1
    magic, *shape = struct.unpack(">" + "I" * (1 + ndim), raw[: 4 * (1 + ndim)])
    if magic != _MAGIC[kind]:
        raise ValueError(f"{path} is not an idx {kind} file (magic {magic:#x})")
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: {data.size} bytes of data for shape {shape}")
    return torch.from_numpy(data.copy()).view(*shape)


def _read_split(root: str, split: str) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    prefix = _PREFIX[split]
    images = _find(root, f"{prefix}-images-idx3-ubyte")
    labels = _find(root, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    x, y = _read_idx(images, "images"), _read_idx(labels, "labels").long()
    if len(x) != len(y):
        raise ValueError(f"{root}: {len(x)} images but {len(y)} labels for split '{split}'")
    return x, y


def _download(split: str) -> None:
    """torchvision's download into the cache (it writes ``FashionMNIST/raw/*`` under the root)."""
    from torchvision.datasets import FashionMNIST

    FashionMNIST(CACHE_ROOT, train=split == "train", download=True)


def load_fashion_mnist(split: str, root: Optional[str] = None,
                       download: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)``: uint8 ``(N, 28, 28)`` and int64 ``(N,)`` for split ``train``/``test``.

    Looks in ``root``, then ``$DPL_FASHION_MNIST``, then the Debian package's directory, then the
    download cache; downloads with torchvision only if all of these miss (and ``download``).
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    cached = os.path.join(CACHE_ROOT, "FashionMNIST", "raw")
    roots: List[str] = [r for r in (root, os.environ.get(ENV_VAR)) if r] + [SYSTEM_ROOT, cached]
    for candidate in roots:
        found = _read_split(candidate, split)
        if found is not None:
            return found
    error = None
    if download:
        try:
            _download(split)
            found = _read_split(cached, split)
            if found is not None:
                return found
        except Exception as err:  # no network, no torchvision, a bad mirror: report below
            error = err
    raise FileNotFoundError(
        f"Fashion-MNIST '{split}' split not found; looked in: {', '.join(roots)}"
        + (f"; download failed: {error}" if error else "")
        + f". Fix: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set {ENV_VAR} to a "
        f"directory holding {_PREFIX[split]}-images-idx3-ubyte.gz and {_PREFIX[split]}-labels-idx1-ubyte.gz."
    )


def to_clip_input(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 grey images ``(N, H, W)`` (or one ``(H, W)``) -> CLIP input ``(N, 3, R, R)`` float32.

    Resized (bicubic, as CLIP's preprocessing) only when ``resolution`` differs from the image
    size; the grey value is copied to the three channels, then normalised with CLIP's mean/std.
    """
    x = images.float().div(255.0)
    if x.dim() == 2:
        x = x[None]
    x = x[:, None]  # (N, 1, H, W)
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", align_corners=False,
                          antialias=True).clamp_(0, 1)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


# Candidate distribution shifts for a few-shot task with a real gap (uint8 in, uint8 out;
# deterministic, so a shifted test set is the same every time).
def _low_contrast(x: torch.Tensor) -> torch.Tensor:
    return (128 + 0.3 * (x.float() - 128)).round().to(torch.uint8)  # grey background, faint object


def _noise(x: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return (x.float() + 48 * torch.randn(x.shape, generator=gen)).round().clamp(0, 255).to(torch.uint8)


SHIFTS = {
    "clean": lambda x: x,
    "invert": lambda x: 255 - x,
    "rot90": lambda x: torch.rot90(x, 1, (-2, -1)),
    "rot180": lambda x: torch.rot90(x, 2, (-2, -1)),
    "vflip": lambda x: x.flip(-2),
    "low_contrast": _low_contrast,
    "noise": _noise,
}
