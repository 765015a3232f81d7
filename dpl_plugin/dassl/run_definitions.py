"""The search and train-stage definitions of a Dassl run: every config value that changes what
its search finds, and what its train stage trains.

Whole nodes are taken rather than listed key by key, so that a key added later (a new
``TRAINER.DPL.SEARCH`` option, a fork's dataset option) is covered without touching this file.
Left out are the values the search never reads (``DATASET.ROOT``: data may move; ``OPTIM.LR`` and
``OPTIM.MAX_EPOCH``: the search uses ``SEARCH.LR`` and ``SEARCH.EPOCHS``) and the purely cosmetic
search keys (marked ``cosmetic`` in :class:`~dpl_plugin.search.settings.SearchSettings`, e.g. ``PLOT``).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

from ..errors import DPLError
from ..prompting.initialization import SEARCHED
from ..search.definition import differences, flatten
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


# -- the train stage ----------------------------------------------------------------------------
EPOCHS_KEY = "OPTIM.MAX_EPOCH"  # more epochs than a checkpoint's: resumed and extended, as Dassl does


class TrainDefinitionMismatchError(DPLError, ValueError):
    """A trained model on disk was trained with other settings than the ones this run asks for."""


def train_definition(cfg, precision: str, ctx_init: str) -> Dict[str, Any]:
    """``{config key: value}`` for what the train stage trains, given its prompt configuration
    (compared on its own): optimiser and schedule (all of ``OPTIM``, epochs included), prompt
    initialisation and fixed text, data and augmentation, seed, design, backbone and precision.
    ``ctx_init`` is the baseline's text context init (its ``CTX_INIT``), which starts the text prompts."""
    dpl = cfg.TRAINER.DPL
    return {
        "TRAINER.NAME": cfg.TRAINER.NAME,
        "MODEL.BACKBONE.NAME": cfg.MODEL.BACKBONE.NAME,
        "SEED": cfg.SEED,
        "TRAINER.DPL.PREC": precision,
        "TRAINER.DPL.TEXT": dpl.TEXT,
        "CTX_INIT": ctx_init,
        **flatten(dpl.TRAIN, "TRAINER.DPL.TRAIN.", skip=() if probes(cfg) else ("PROBE_EPOCHS",)),
        **flatten(cfg.DATASET, "DATASET.", skip=("ROOT",)),
        **flatten(cfg.INPUT, "INPUT."),
        **flatten(cfg.DATALOADER.TRAIN_X, "DATALOADER.TRAIN_X."),
        **flatten(cfg.OPTIM, "OPTIM."),
    }


def probes(cfg) -> bool:
    """Whether the train stage's start is chosen by a probe. Otherwise ``TRAIN.PROBE_EPOCHS`` changes
    nothing and stays out of the definition, so runs trained before the option existed stay reusable."""
    dpl = cfg.TRAINER.DPL
    return dpl.TRAIN.PROBE_EPOCHS > 0 and dpl.TRAIN.INIT == SEARCHED and dpl.MODE != "baseline"


def check_trained(recorded: Optional[Mapping[str, Any]], current: Mapping[str, Any], path: str,
                  trained_epochs: int) -> None:
    """Before a run resumes (or reuses) the model trained at ``path``: raise unless it was trained
    with ``current``'s settings and for no more epochs than ``current`` asks for."""
    folder = os.path.dirname(path)
    start_over = f"To train again, delete {folder} or use another output directory"
    if recorded is None:
        raise TrainDefinitionMismatchError(
            f"{path} records no train-stage definition (it was written by an older dpl-plugin), so whether it was "
            f"trained with this run's settings cannot be told. {start_over}")
    changed = differences({k: v for k, v in recorded.items() if k != EPOCHS_KEY},
                          {k: v for k, v in current.items() if k != EPOCHS_KEY})
    if changed:
        raise TrainDefinitionMismatchError(
            f"{path} was trained with other settings than this run's ({'; '.join(changed)}): resuming or reusing it "
            f"would report a model this run did not ask for. {start_over}; to reuse it, set the old values again")
    asked = current.get(EPOCHS_KEY)
    if asked is not None and asked < trained_epochs:
        raise TrainDefinitionMismatchError(
            f"{path} was trained for {trained_epochs} epochs, but this run asks for {asked} ({EPOCHS_KEY}: "
            f"{trained_epochs} -> {asked}); a shorter schedule is another training. Set {EPOCHS_KEY} "
            f"{trained_epochs} to reuse it. {start_over}")
