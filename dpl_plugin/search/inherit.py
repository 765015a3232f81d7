"""Weight inheritance (one-shot NAS): the train stage starts from the supernet's prompts.

Instead of re-initialising the searched configuration, each prompted layer takes the supernet's
candidate of the chosen length (``P[l, n]``), and a coupled (MaPLe) configuration also its
coupling maps: the configuration starts where the search left it, which narrows the gap between
the supernet's accuracy and the trained configuration's (``TRAINER.DPL.TRAIN.INIT searched``).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from ..backbones.openai_clip import BackboneSpec
from ..engine.checkpoint import load_checkpoint
from ..prompt_config import PromptConfigError
from .supernet import SupernetPromptLearner


@torch.no_grad()
def inherit_prompts(model, supernet: SupernetPromptLearner) -> None:
    """Copy ``supernet``'s candidates of the configuration's lengths into ``model``'s learner."""
    learner = model.prompt_learner
    config = learner.config
    if config.coupled != supernet.coupled:
        raise PromptConfigError("TRAIN.INIT searched needs the configuration the supernet searched (coupled "
                                f"{supernet.coupled}), got a {'coupled' if config.coupled else 'independent'} one")
    for branch in ("text", "vision"):
        for layer, n in enumerate(config.lengths(branch)):
            if not n:
                continue
            if branch == "vision" and config.coupled:
                learner.maps[str(layer)].load_state_dict(_source_map(supernet, layer).state_dict())
                continue
            _check(supernet, branch, layer, n)
            getattr(learner, branch)[str(layer)].copy_(supernet.candidate_prompt(branch, layer, n))


def _source_map(supernet: SupernetPromptLearner, layer: int):
    if str(layer) not in supernet.maps:
        raise PromptConfigError(f"the supernet has no coupling map for layer {layer}: TRAIN.INIT searched needs a "
                                f"configuration within the searched layers")
    return supernet.maps[str(layer)]


def _check(supernet: SupernetPromptLearner, branch: str, layer: int, n: int) -> None:
    if branch not in supernet.branches or layer >= supernet.searched_layers[branch] or n not in supernet.candidates:
        raise PromptConfigError(
            f"TRAIN.INIT searched: the supernet has no {n}-token candidate for {branch} layer {layer} (it searched "
            f"{list(supernet.branches)} with candidates {supernet.candidates}); use another TRAIN.INIT")


def supernet_from_checkpoint(path: str, backbone: BackboneSpec, candidates: Sequence[int], branches: Sequence[str],
                             coupled: bool) -> SupernetPromptLearner:
    """The searched supernet's learner, read back from a search checkpoint (``search_checkpoint.pth``)."""
    if not os.path.isfile(path):
        raise PromptConfigError(f"TRAIN.INIT searched needs the search's checkpoint {path}, which does not exist; "
                                f"use TRAIN.INIT normal:0.02 or template, or run the search in this output folder")
    learner = SupernetPromptLearner(backbone, branches, candidates, coupled)
    learner.load_state_dict(load_checkpoint(path, map_location="cpu")["learner"])
    return learner


__all__ = ["inherit_prompts", "supernet_from_checkpoint"]
