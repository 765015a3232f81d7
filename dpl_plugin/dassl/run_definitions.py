"""The search definition of a Dassl run: every config value that changes what its search finds.

Whole nodes are taken rather than listed key by key, so that a key added later (a new
``TRAINER.DPL.SEARCH`` option, a fork's dataset option) is covered without touching this file.
Left out are the values the search never reads (``DATASET.ROOT``: data may move; ``OPTIM.LR`` and
``OPTIM.MAX_EPOCH``: the search uses ``SEARCH.LR`` and ``SEARCH.EPOCHS``) and the purely cosmetic
search keys (marked ``cosmetic`` in :class:`~dpl_plugin.search.settings.SearchSettings`, e.g. ``PLOT``).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..search.definition import flatten
from ..search.settings import cosmetic_keys

# OPTIM keys the search overrides or ignores (the prompts are one parameter group).
_OPTIM_UNUSED = ("LR", "MAX_EPOCH", "STAGED_LR", "NEW_LAYERS", "BASE_LR_MULT")


def search_definition(cfg, precision: str, objective: Optional[Any] = None) -> Dict[str, Any]:
    """``{config key: value}`` for the search that ``cfg`` asks for; ``precision`` is the one it
    runs at (``TRAINER.DPL.PREC`` after the CPU fallback); ``objective`` the search's loss
    (:class:`~dpl_plugin.engine.objectives.Objective`: its name and weights, which live in the
    method's own config node)."""
    dpl = cfg.TRAINER.DPL
    extra = {}
    if objective is not None and objective.name != "cross_entropy":  # plain: as recorded before objectives
        extra = flatten(objective.describe(), "objective.")
    return {
        **extra,
        "TRAINER.NAME": cfg.TRAINER.NAME,  # the design: which branches, coupled or not
        "MODEL.BACKBONE.NAME": cfg.MODEL.BACKBONE.NAME,
        "SEED": cfg.SEED,
        "TRAINER.DPL.PREC": precision,
        "TRAINER.DPL.CANDIDATES": sorted(set(dpl.CANDIDATES)),
        # OBJECTIVE: the objective.* entries above say which loss it chose (none: cross-entropy)
        **flatten(dpl.SEARCH, "TRAINER.DPL.SEARCH.", skip=cosmetic_keys() + ("OBJECTIVE",)),
        # FOLDER (ImageFolder's) only when set: searches recorded before the key existed stay reusable
        **flatten(cfg.DATASET, "DATASET.", skip=("ROOT",) if cfg.DATASET.get("FOLDER") else ("ROOT", "FOLDER")),
        **flatten(cfg.INPUT, "INPUT."),  # the search's train and validation transforms
        "DATALOADER.TRAIN_X.SAMPLER": cfg.DATALOADER.TRAIN_X.SAMPLER,
        **flatten(cfg.OPTIM, "OPTIM.", skip=_OPTIM_UNUSED),
    }
