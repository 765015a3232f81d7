"""How prompts start: one dispatch for every initialisation a run can name.

* ``normal:STD``: ``N(0, STD^2)`` (the baselines: 0.02; the official DPL search's vision
  candidates: 1); ``uniform``: ``U[0, 1)`` (the official DPL search's text candidates);
* ``template``: the hand designs' head start for any configuration: the text prompts of layer 0
  begin as the word embeddings of the design's context ("a photo of a", as MaPLe and IVLP do)
  where the length allows (at most as many tokens as the context has), in either insertion form;
  every other prompt starts from ``normal:0.02``;
* ``searched`` (one-shot NAS weight inheritance): every prompted layer starts from the searched
  supernet's candidate of the chosen length (``P[l, n]``), and a coupled (MaPLe) configuration
  also from its coupling maps, so the configuration starts where the search left it. It needs the
  supernet: without one it is refused, never silently random.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..backbones.registry import bind
from ..prompt_config import BRANCHES, PromptConfigError
from .templates import DEFAULT_CONTEXT

TEMPLATE = "template"
SEARCHED = "searched"
RANDOM_FOR_TEMPLATE = "normal:0.02"  # what ``template`` and ``searched`` draw before their own values


def init_tensor(shape, spec: str) -> torch.Tensor:
    """A random tensor: ``normal:STD`` or ``uniform`` (``template`` and ``searched`` draw their
    :func:`random_part` first, then overwrite what they give values for)."""
    kind, _, arg = spec.partition(":")
    if kind == "normal":
        return torch.randn(shape) * float(arg or 1.0)
    if kind == "uniform":
        return torch.rand(shape)
    raise ValueError(f"unknown prompt initialisation '{spec}'; use 'normal:STD' or 'uniform'")


def random_part(init: str) -> str:
    """The random initialisation behind ``init`` (``template`` and ``searched`` start from one too)."""
    return RANDOM_FOR_TEMPLATE if init in (TEMPLATE, SEARCHED) else init


def template_plan(text_init: str, ctx_init: str) -> Tuple[str, bool]:
    """``(context, whether layer 0 starts from the context)``."""
    if text_init != TEMPLATE:
        return ctx_init, False
    return ctx_init or DEFAULT_CONTEXT, True


def check_searched(text_init: str, vision_init: str, supernet) -> bool:
    """Whether the prompts are inherited from ``supernet``; refuses ``searched`` without one, or for
    one branch only (inheritance copies every prompted layer)."""
    searched = [init == SEARCHED for init in (text_init, vision_init)]
    if any(searched) and supernet is None:
        raise PromptConfigError(f"the '{SEARCHED}' initialisation starts from a searched supernet's prompts: pass "
                                f"supernet= (the search result's supernet.prompt_learner), or use 'normal:0.02' "
                                f"or '{TEMPLATE}'")
    if any(searched) and not all(searched):
        raise PromptConfigError(f"'{SEARCHED}' inherits every prompt from the supernet: set both text_init and "
                                f"vision_init to '{SEARCHED}' (got {text_init!r} and {vision_init!r})")
    if supernet is not None and not all(searched):
        raise PromptConfigError(f"a supernet was given but the initialisation is {text_init!r}/{vision_init!r}: "
                                f"use '{SEARCHED}' to start from its prompts")
    return all(searched)


def context_embeddings(clip_model, context: str, n: int) -> Optional[torch.Tensor]:
    """Token embeddings ``(n, width)`` of the first ``n`` tokens of ``context`` (None when shorter)."""
    backbone = bind(clip_model)
    ids = backbone.tokenizer.encode(context)
    if n < 1 or n > len(ids):
        return None
    return backbone.word_embeddings(ids[:n])


@torch.no_grad()
def inherit_prompts(model, supernet) -> None:
    """Copy ``supernet``'s (a search's ``SupernetPromptLearner``) candidates of the configuration's
    lengths into ``model``'s learner."""
    learner = model.prompt_learner
    config = learner.config
    if config.coupled != supernet.coupled:
        raise PromptConfigError("TRAIN.INIT searched needs the configuration the supernet searched (coupled "
                                f"{supernet.coupled}), got a {'coupled' if config.coupled else 'independent'} one")
    for branch in BRANCHES:
        for layer, n in enumerate(config.lengths(branch)):
            if not n:
                continue
            if branch == "vision" and config.coupled:
                learner.maps[str(layer)].load_state_dict(_source_map(supernet, layer).state_dict())
                continue
            _check_candidate(supernet, branch, layer, n)
            getattr(learner, branch)[str(layer)].copy_(supernet.candidate_prompt(branch, layer, n))


def _source_map(supernet, layer: int):
    if str(layer) not in supernet.maps:
        raise PromptConfigError(f"the supernet has no coupling map for layer {layer}: TRAIN.INIT searched needs a "
                                f"configuration within the searched layers")
    return supernet.maps[str(layer)]


def _check_candidate(supernet, branch: str, layer: int, n: int) -> None:
    if branch not in supernet.branches or layer >= supernet.searched_layers[branch] or n not in supernet.candidates:
        raise PromptConfigError(
            f"TRAIN.INIT searched: the supernet has no {n}-token candidate for {branch} layer {layer} (it searched "
            f"{list(supernet.branches)} with candidates {supernet.candidates}); use another TRAIN.INIT")


__all__ = ["SEARCHED", "TEMPLATE", "check_searched", "context_embeddings", "inherit_prompts", "init_tensor",
           "random_part", "template_plan"]
