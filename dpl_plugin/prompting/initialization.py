"""How a trained configuration's prompts start, besides random values (``normal:STD``, ``uniform``).

``template`` gives any configuration the hand designs' head start: the text prompts of layer 0
begin as the word embeddings of the design's context ("a photo of a", as MaPLe and IVLP do)
where the length allows (at most as many tokens as the context has), in either insertion form;
every other prompt starts from ``normal:0.02``. ``searched`` (one-shot NAS weight inheritance)
starts from the supernet's candidates of the chosen lengths: :mod:`dpl_plugin.search.inherit`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..backbones.clip_package import clip_api

TEMPLATE = "template"
SEARCHED = "searched"
TEMPLATE_CONTEXT = "a photo of a"  # the words before the class name in "a photo of a {}."
RANDOM_FOR_TEMPLATE = "normal:0.02"  # what ``template`` uses for the prompts it does not cover


def random_part(init: str) -> str:
    """The random initialisation behind ``init`` (``template`` and ``searched`` start from one too)."""
    return RANDOM_FOR_TEMPLATE if init in (TEMPLATE, SEARCHED) else init


def template_plan(text_init: str, ctx_init: str) -> Tuple[str, str, bool]:
    """``(random init for the other prompts, context, whether layer 0 starts from the context)``."""
    if text_init != TEMPLATE:
        return random_part(text_init), ctx_init, False
    return RANDOM_FOR_TEMPLATE, ctx_init or TEMPLATE_CONTEXT, True


@torch.no_grad()
def context_embeddings(clip_model, context: str, n: int) -> Optional[torch.Tensor]:
    """Token embeddings ``(n, width)`` of the first ``n`` tokens of ``context`` (None when shorter)."""
    tokens = clip_api.tokenize(context)[0]
    length = int(tokens.argmax()) - 1  # between SOS and EOT (EOT has the largest id)
    if n < 1 or n > length:
        return None
    device = clip_model.token_embedding.weight.device
    return clip_model.token_embedding(tokens[1:1 + n].to(device)).float()


__all__ = ["SEARCHED", "TEMPLATE", "TEMPLATE_CONTEXT", "context_embeddings", "random_part", "template_plan"]
