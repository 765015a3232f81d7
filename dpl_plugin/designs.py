"""The four prompt designs DPL plugs into, described as data.

A design says which branches carry prompts, whether vision prompts are mapped from text prompts,
and how its baseline places tokens by hand. Searching and training use the same description, so
adding a design is adding an entry here (and, for a new kind of prompt, a learner in
:mod:`dpl_plugin.prompting.learners`).

The baselines' published settings are the defaults of the :class:`PromptConfig` factories (CoOp's
16 input tokens; VPT-deep's 8 tokens in all 12 vision layers, IVLP's 2 + 2 tokens in all 12
layers and MaPLe's 2 tokens in 9 layers, as in MaPLe's repository's configs, whose baselines
MaPLe's and DPL's papers report); :meth:`Design.published` reads them there.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

from .backbones.spec import BackboneSpec
from .prompt_config import PromptConfig

_LAYER_ARGUMENTS = ("text_layers", "vision_layers", "insertion")


@dataclass(frozen=True)
class Design:
    name: str
    branches: Tuple[str, ...]
    coupled: bool
    factory: Callable[..., PromptConfig]  # the PromptConfig factory of its hand design

    def baseline_config(self, backbone: BackboneSpec, **settings) -> PromptConfig:
        """The hand design on ``backbone``: the published settings unless ``settings`` say otherwise."""
        return self.factory(**{**self.published(), **settings}, text_layers=backbone.text_layers,
                            vision_layers=backbone.vision_layers)

    def published(self) -> Dict[str, Any]:
        """The baseline's published settings (keyword arguments of :meth:`baseline_config`)."""
        parameters = inspect.signature(self.factory).parameters.values()
        return {p.name: p.default for p in parameters if p.name not in _LAYER_ARGUMENTS}

    def search_space(self) -> dict:
        """Keyword arguments of :func:`~dpl_plugin.search.build_supernet` for this design."""
        return {"branches": self.branches, "coupled": self.coupled}


DESIGNS: Dict[str, Design] = {
    "coop": Design("coop", ("text",), False, PromptConfig.coop),
    "vpt": Design("vpt", ("vision",), False, PromptConfig.vpt),
    "ivlp": Design("ivlp", ("text", "vision"), False, PromptConfig.ivlp),
    "maple": Design("maple", ("text", "vision"), True, PromptConfig.maple),
}


def get_design(name: str) -> Design:
    try:
        return DESIGNS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown prompt design '{name}'; choose one of {sorted(DESIGNS)}") from None
