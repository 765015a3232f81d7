"""The four prompt designs DPL plugs into, described as data.

A design says which branches carry prompts, whether vision prompts are mapped from text prompts,
how its baseline places tokens by hand, and how its text input starts. Searching and training
use the same description, so adding a design is adding an entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from .backbones.openai_clip import BackboneSpec
from .prompt_config import PromptConfig


@dataclass(frozen=True)
class Design:
    name: str
    branches: Tuple[str, ...]
    coupled: bool
    ctx_init: str  # the baseline's text context initialisation ("" = random)
    baseline: Callable[..., PromptConfig]  # (backbone, **design kwargs) -> the hand design

    def baseline_config(self, backbone: BackboneSpec, **kwargs) -> PromptConfig:
        return self.baseline(backbone, **kwargs)

    def search_space(self) -> dict:
        """Keyword arguments of :func:`~dpl_plugin.search.build_supernet` for this design."""
        return {"branches": self.branches, "coupled": self.coupled}


def _coop(backbone, n_ctx=16):
    return PromptConfig.coop(n_ctx, backbone.text_layers, backbone.vision_layers)


def _vpt(backbone, n_ctx=8, depth=None):
    depth = backbone.vision_layers if depth is None else depth
    return PromptConfig.vpt(n_ctx, depth, backbone.text_layers, backbone.vision_layers)


def _ivlp(backbone, n_text=2, n_vision=2, depth_text=None, depth_vision=None):
    depth_text = backbone.text_layers if depth_text is None else depth_text
    depth_vision = backbone.vision_layers if depth_vision is None else depth_vision
    return PromptConfig.ivlp(n_text, n_vision, depth_text, depth_vision, backbone.text_layers, backbone.vision_layers)


def _maple(backbone, n_ctx=2, depth=9):
    return PromptConfig.maple(n_ctx, depth, backbone.text_layers, backbone.vision_layers)


DESIGNS: Dict[str, Design] = {
    "coop": Design("coop", ("text",), False, "", _coop),
    "vpt": Design("vpt", ("vision",), False, "", _vpt),
    "ivlp": Design("ivlp", ("text", "vision"), False, "a photo of a", _ivlp),
    "maple": Design("maple", ("text", "vision"), True, "a photo of a", _maple),
}


def get_design(name: str) -> Design:
    try:
        return DESIGNS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown prompt design '{name}'; choose one of {sorted(DESIGNS)}") from None
