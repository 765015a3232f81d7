"""The CLIP families: which one loads a name, and which one binds a loaded model.

openai ``clip`` names and files are the only family so far. A new family adds its module and one
line to each function here.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from . import openai_clip, openai_family
from .interface import Backbone, BPETokenizer, UnsupportedBackboneError

def load_clip(name_or_path: str, device: Union[str, torch.device] = "cpu", precision: str = "fp32",
              download_root: Optional[str] = None):
    """A frozen, eval-mode CLIP: an openai ``clip`` name or weights file (see
    :func:`.openai_clip.load_clip`)."""
    return openai_clip.load_clip(name_or_path, device, precision, download_root)


def bind(model) -> Backbone:
    """The family binding of a loaded model."""
    if isinstance(model, Backbone):
        return model
    if openai_family.owns(model):
        return openai_family.OpenAIClip(model)
    raise UnsupportedBackboneError(
        f"{type(model).__module__}.{type(model).__name__} is not a CLIP of a supported family (openai clip); load the backbone with dpl_plugin.load_clip")


def default_tokenizer() -> BPETokenizer:
    """openai clip's tokenizer: the one a function uses when it is given no backbone."""
    return openai_family.TOKENIZER
