"""Learnable prompts for a :class:`PromptConfig`: one module serves CoOp, VPT, IVLP and MaPLe.

The four designs differ only in data: which branches have prompts (the configuration's lengths)
and whether the vision prompts are free parameters (independent: VPT, IVLP) or images of the text
prompts through one linear map per prompted layer (coupled: MaPLe). A learner's ``forward``
returns a :class:`PromptSet`, one entry per layer and branch, that the encoders consume.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import torch
from torch import nn

from ..backbones.spec import BackboneSpec
from ..prompt_config import PromptConfig
from .initialization import init_tensor
from .insertion import LayerPrompt


class PromptSet(NamedTuple):
    text: List[LayerPrompt]
    vision: List[LayerPrompt]

    def any(self, branch: str) -> bool:
        return any(p is not None for p in getattr(self, branch))


def coupling_map(text_width: int, vision_width: int) -> nn.Linear:
    return nn.Linear(text_width, vision_width)


class PromptLearner(nn.Module):
    """Fixed-length prompts: ``text[l]`` is ``(config.text[l], text_width)``, likewise vision.

    ``layer0_text``: initial values for the text input tokens (e.g. the embeddings of "a photo");
    other tokens start from ``text_init``/``vision_init``.
    """

    def __init__(self, config: PromptConfig, backbone: BackboneSpec, text_init: str = "normal:0.02",
                 vision_init: str = "normal:0.02", layer0_text: Optional[torch.Tensor] = None):
        super().__init__()
        config.validate(backbone)
        self.config = config
        self.text_layers, self.vision_layers = backbone.text_layers, backbone.vision_layers
        self.text = nn.ParameterDict({
            str(layer): nn.Parameter(init_tensor((n, backbone.text_width), text_init))
            for layer, n in enumerate(config.text) if n
        })
        if layer0_text is not None and "0" in self.text:
            self.text["0"].data.copy_(layer0_text)
        if config.coupled:
            self.vision = nn.ParameterDict()
            self.maps = nn.ModuleDict({
                str(layer): coupling_map(backbone.text_width, backbone.vision_width)
                for layer, n in enumerate(config.vision) if n
            })
        else:
            self.vision = nn.ParameterDict({
                str(layer): nn.Parameter(init_tensor((n, backbone.vision_width), vision_init))
                for layer, n in enumerate(config.vision) if n
            })
            self.maps = nn.ModuleDict()

    @property
    def insertion(self) -> str:
        return self.config.insertion

    @property
    def text_input_slots(self) -> int:
        """Tokens the text input sequence must reserve for layer 0 (native insertion only)."""
        return self.config.input_length("text") if self.insertion == "native" else 0

    def forward(self) -> PromptSet:
        text = [self.text[str(layer)] if str(layer) in self.text else None for layer in range(self.text_layers)]
        if self.config.coupled:
            vision = [self.maps[str(layer)](text[layer]) if str(layer) in self.maps else None
                      for layer in range(self.vision_layers)]
        else:
            vision = [self.vision[str(layer)] if str(layer) in self.vision else None
                      for layer in range(self.vision_layers)]
        return PromptSet(text, vision)

