"""The CLIP families: which one loads a name, and which one binds a loaded model.

openai ``clip`` names and files are the default; ``open_clip:...`` names go to OpenCLIP, which is
imported only then (it is an optional extra). A new family adds its module and one line to each
function here.
"""

from __future__ import annotations

import os

from typing import Optional, Union

import torch

from ..errors import require_instance
from . import openai_clip, openai_family
from .interface import Backbone, BPETokenizer, UnsupportedBackboneError

OPEN_CLIP_PREFIX = "open_clip:"


def load_clip(name_or_path: str, device: Union[str, torch.device] = "cpu", precision: str = "fp32",
              download_root: Optional[str] = None, trust_torchscript: bool = False):
    """A frozen, eval-mode CLIP: ``open_clip:ARCH/TAG``, ``open_clip:ARCH//path/to/weights`` and
    ``open_clip:/path/to/folder`` load OpenCLIP models offline (see :mod:`.open_clip_loading`);
    anything else is an openai ``clip`` name or weights file (see :func:`.openai_clip.load_clip`;
    ``trust_torchscript``: load a TorchScript file that is not one of clip's published models)."""
    require_instance(name_or_path, (str, os.PathLike), "load_clip's name_or_path",
                     "a model name or the path of a weights file")
    name_or_path = os.fspath(name_or_path)
    if name_or_path.startswith(OPEN_CLIP_PREFIX):
        from . import open_clip_loading

        return open_clip_loading.load(name_or_path[len(OPEN_CLIP_PREFIX):], device, precision, download_root)
    return openai_clip.load_clip(name_or_path, device, precision, download_root, trust_torchscript)


def bind(model) -> Backbone:
    """The family binding of a loaded model."""
    if isinstance(model, Backbone):
        return model
    if openai_family.owns(model):
        return openai_family.OpenAIClip(model)
    if type(model).__module__.split(".")[0] == "open_clip":
        from . import open_clip_family

        return open_clip_family.OpenCLIP(model)
    raise UnsupportedBackboneError(
        f"{type(model).__module__}.{type(model).__name__} is not a CLIP of a supported family (openai clip, "
        f"OpenCLIP); load the backbone with dpl_plugin.load_clip")


def default_tokenizer() -> BPETokenizer:
    """openai clip's tokenizer: the one a function uses when it is given no backbone."""
    return openai_family.TOKENIZER
