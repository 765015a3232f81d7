"""The searched supernet read back from its search checkpoint, for weight inheritance
(``TRAINER.DPL.TRAIN.INIT searched``: :func:`dpl_plugin.prompting.initialization.inherit_prompts`)."""

from __future__ import annotations

import os
from typing import Sequence

from ..backbones.spec import BackboneSpec
from ..engine.checkpoint import load_checkpoint
from ..prompt_config import PromptConfigError
from .supernet import SupernetPromptLearner


def supernet_from_checkpoint(path: str, backbone: BackboneSpec, candidates: Sequence[int], branches: Sequence[str],
                             coupled: bool) -> SupernetPromptLearner:
    """The searched supernet's learner, read back from a search checkpoint (``search_checkpoint.pth``)."""
    if not os.path.isfile(path):
        raise PromptConfigError(f"TRAIN.INIT searched needs the search's checkpoint {path}, which does not exist; "
                                f"use TRAIN.INIT normal:0.02 or template, or run the search in this output folder")
    state = load_checkpoint(path, map_location="cpu")
    # The candidates' layout is the search's (NESTED, recorded with its settings; absent: not nested).
    nested = bool(state.get("settings", {}).get("nested", False))
    learner = SupernetPromptLearner(backbone, branches, candidates, coupled, nested=nested)
    learner.load_state_dict(state["learner"])
    return learner


__all__ = ["supernet_from_checkpoint"]
