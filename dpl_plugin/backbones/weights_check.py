"""Checks of a CLIP weights file before a model is built from it.

``torch.load`` reads a file corrupted in place without complaint, and ``clip.model.build_model``
infers the architecture from the tensors themselves: a token embedding with cut rows makes a model
with a smaller vocabulary, which fails much later with a bare ``IndexError``. So:

* checksums: a file named like one of clip's models (``ViT-B-16.pt``, ...) must have clip's
  published SHA-256 (part of its download URL); a file with a ``<file>.sha256`` beside it (as the
  demo weights have) must match it;
* shapes: every tensor must have the shape that a CLIP of the architecture read from the file has,
  with clip's tokenizer's vocabulary and context length (a CLIP is built on the meta device, so no
  memory is used);
* values: every floating-point tensor must be finite.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from typing import Dict, List, Optional

import torch

from .clip_package import clip_api, clip_model_module

# Entries of TorchScript archives' state dicts that are not tensors of the model.
_NON_TENSOR_KEYS = ("input_resolution", "context_length", "vocab_size")


def url_sha256(url: str) -> str:
    """The SHA-256 clip publishes for a model: the second-to-last part of its download URL."""
    return url.split("/")[-2]


def file_sha256(path: str) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (model files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def published_sha256(path: str) -> Optional[tuple]:
    """``(model name, SHA-256, URL)`` if ``path``'s file name is one of clip's models, else None."""
    for name, url in clip_api._MODELS.items():
        if os.path.basename(url) == os.path.basename(path):
            return name, url_sha256(url), url
    return None


def checksum_problem(path: str, raw: bytes) -> Optional[str]:
    """What is wrong with the file's bytes (``raw``) against clip's published SHA-256 or the
    ``.sha256`` file beside it; None if nothing (or nothing to compare with)."""
    published, sidecar = published_sha256(path), path + ".sha256"
    if published is None and not os.path.isfile(sidecar):
        return None
    actual = hashlib.sha256(raw).hexdigest()
    if published is not None and actual != published[1]:
        name, expected, url = published
        return (
            f"{path} is named like clip's '{name}' weights, but its SHA-256 is {actual}, not the published "
            f"{expected}: the file is corrupt or modified. Download {url} again (or, if these are deliberately "
            f"other weights, rename the file)")
    if os.path.isfile(sidecar):
        with open(sidecar) as f:
            words = f.read().split()  # sha256sum format: "<hex digest>  <file name>"
        expected = words[0].lower() if words else "(an empty file)"
        if actual != expected:
            return (
                f"{path} does not match its checksum file {sidecar} (SHA-256 {actual}, expected {expected}): the "
                f"file was corrupted or changed after the checksum was written. Restore it (re-download or "
                f"reinstall), or delete {os.path.basename(sidecar)} if the change is intended")
    return None


def state_dict_problem(state_dict: Dict[str, torch.Tensor], path: str) -> Optional[str]:
    """What is wrong with the tensors (naming the first wrong ones), or None."""
    missing = [key for key in _anchors(state_dict) if key not in state_dict]
    if missing:
        return (f"{path} does not hold a complete CLIP: tensor '{missing[0]}' is missing. The file is truncated or "
                f"not a CLIP checkpoint: re-download or re-export it")
    architecture = _architecture(state_dict)
    with torch.device("meta"):
        reference = clip_model_module.CLIP(**architecture)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items() if k not in _NON_TENSOR_KEYS}
    problems: List[str] = []
    for key in expected:
        if key not in found:
            problems.append(f"tensor '{key}' is missing (expected shape {expected[key]})")
        elif found[key] != expected[key]:
            problems.append(f"tensor '{key}' has shape {found[key]}, expected {expected[key]}")
    problems += [f"tensor '{key}' {found[key]} is not part of a CLIP" for key in found if key not in expected]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return (
            f"{path} does not hold a complete CLIP ({_describe(architecture)}, read from the file): "
            f"{'; '.join(problems[:3])}{more}. The file is truncated, cut or not a CLIP checkpoint: re-download "
            f"or re-export it")
    return nonfinite_problem(state_dict, path)


def nonfinite_problem(state_dict: Dict[str, torch.Tensor], path: str) -> Optional[str]:
    """Which tensor holds NaN or infinite values (any family's weights), or None."""
    for key, tensor in state_dict.items():
        # A NaN or inf makes the sum non-finite: one pass, 4x faster than isfinite() on fp16 weights.
        if torch.is_tensor(tensor) and tensor.is_floating_point() and \
                not torch.isfinite(tensor.sum(dtype=torch.float32)):
            bad = int((~torch.isfinite(tensor)).sum())
            what = f"{bad} NaN or infinite values" if bad else "values so large that their sum overflows"
            return (f"{path}: tensor '{key}' holds {what} (of {tensor.numel()}): the file is corrupt (damaged on disk "
                    f"or in transfer). Re-download or re-export it")
    return None


def _anchors(sd: Dict[str, torch.Tensor]) -> tuple:
    """The tensors the architecture is read from (a ViT has ``visual.proj``; a ResNet has not)."""
    vision = (("visual.positional_embedding", "visual.conv1.weight") if "visual.proj" in sd
              else ("visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding"))
    return ("token_embedding.weight", "text_projection") + vision


def _architecture(sd: Dict[str, torch.Tensor]) -> dict:
    """``clip.model.CLIP``'s arguments, read from the file's tensors (as ``build_model`` reads them,
    but widths from columns, which cut rows leave intact) and from clip's tokenizer."""
    if "visual.proj" in sd:  # ViT
        vision_layers = _count(sd, "visual.transformer.resblocks.")
        vision_width = sd["visual.positional_embedding"].shape[1]
        patch = sd["visual.conv1.weight"].shape[-1]
        resolution = patch * round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    else:  # ModifiedResNet: four stages of bottlenecks, an attention pool over a 1/32 grid
        vision_layers = tuple(_count(sd, f"visual.layer{stage}.") for stage in (1, 2, 3, 4))
        vision_width = sd["visual.layer1.0.conv1.weight"].shape[1]
        patch = None
        resolution = 32 * round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = sd["token_embedding.weight"].shape[1]
    return dict(embed_dim=sd["text_projection"].shape[1], image_resolution=resolution,
                vision_layers=vision_layers, vision_width=vision_width, vision_patch_size=patch,
                context_length=_context_length(), vocab_size=len(clip_api._tokenizer.encoder),
                transformer_width=text_width, transformer_heads=text_width // 64,
                transformer_layers=_count(sd, "transformer.resblocks."))


def _count(sd: Dict[str, torch.Tensor], prefix: str) -> int:
    """Number of distinct blocks ``prefix<i>.`` in the state dict."""
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def _context_length() -> int:
    return inspect.signature(clip_api.tokenize).parameters["context_length"].default


def _describe(a: dict) -> str:
    vision = (f"ViT {a['vision_layers']} layers, width {a['vision_width']}, patch {a['vision_patch_size']}"
              if a["vision_patch_size"] else f"ResNet {a['vision_layers']}, width {a['vision_width']}")
    return (f"{vision}, {a['image_resolution']}px; text {a['transformer_layers']} layers, width "
            f"{a['transformer_width']}, {a['context_length']} positions, vocabulary {a['vocab_size']}")
