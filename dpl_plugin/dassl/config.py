"""``extend_cfg``: every config key the DPL trainers read, added to a Dassl config.

yacs rejects unknown keys, so a config file or command line can only set keys that exist. Keys are
added only where missing: a CoOp/MaPLe fork's own baseline nodes (TRAINER.COOP, TRAINER.MAPLE, ...)
keep their values, and calling ``extend_cfg`` twice changes nothing.

``TRAINER.DPL``:

* ``MODE``: ``dpl`` (search unless ``CONFIG_FILE`` is given, then train and evaluate), ``search``
  (search only), ``train`` (train ``CONFIG_FILE``), ``baseline`` (the hand design, no search);
* ``CONFIG_FILE``: a searched (or hand-written) prompt configuration YAML;
* ``INSERTION``: ``""`` = as configured (a searched configuration: ``prefix``, the paper's form; the
  baseline: ``native``), or force ``prefix`` / ``native``;
* ``CANDIDATES``: the prompt lengths the search chooses from (must include 0);
* ``PREC``: ``fp32`` | ``fp16`` | ``amp`` (GPU only; CPU always runs fp32);
* ``TEXT``: the train stage's fixed text: ``default`` (the design's own: "a photo of a {}." or the
  baseline's context), ``embedding_ensemble`` (the official DPL train stage: the 60 ImageNet
  templates' token embeddings averaged into one sequence per class, the cost of one template),
  ``ensemble`` (the 60 templates' features averaged, CLIP-style: 60x the text cost when text
  prompts are learned), ``custom`` (CoOp's hand-written prompt of the dataset);
* ``SEARCH.*``: the search stage (epochs, batch sizes, prompt and alpha learning rates, ...): one
  key per field of :class:`~dpl_plugin.search.SearchSettings`, generated from it, including
  ``PRESET`` (``paper``: the official recipe; ``robust``) and the robustness options, ``None`` =
  the preset's; the prompt optimizer's other settings (momentum, weight decay, warm-up) come from
  ``OPTIM``;
* ``TRAIN.INIT``: initialisation of the trained prompts; ``TRAIN.PROBE_EPOCHS`` (with ``INIT
  searched``): train the inherited start and fresh prompts (``template``) that many epochs each
  first and start the train stage from whichever validates better
  (:mod:`dpl_plugin.engine.start_probe`); 0: always inherit;
* ``TEXT_CHECKPOINT``: activation checkpointing in the text encoder, search and train stages: its
  activations are recomputed in the backward pass instead of kept (far less memory with many
  classes, such as ImageNet's 1,000, for one more forward pass of the text encoder per step).

Batch sizes (``DATALOADER.TRAIN_X.BATCH_SIZE``, ``SEARCH.BATCH_SIZE``, ``SEARCH.VAL_BATCH_SIZE``,
``DATALOADER.TEST.BATCH_SIZE``) are global: under ``torchrun`` with N processes each takes 1/N of
every batch (:mod:`dpl_plugin.runtime.sharded_data`), so a recipe means the same for any N that
divides its batch sizes (the recipe's 4 and 16: 1, 2 or 4 processes).
"""

from __future__ import annotations

import os

from yacs.config import CfgNode as CN

from ..backbones.openai_clip import PRECISIONS
from ..designs import get_design
from ..errors import OptionError
from ..prompt_config import INSERTIONS as PROMPT_INSERTIONS
from ..prompting.templates import DEFAULT_CONTEXT, TEXT_INPUTS
from ..search.settings import SearchSettings, yacs_defaults
from ..search.supernet import DEFAULT_CANDIDATES

MODES = ("dpl", "search", "train", "baseline")
INSERTIONS = ("",) + PROMPT_INSERTIONS  # "": as configured

_DPL = {
    "MODE": "dpl",
    "CONFIG_FILE": "",
    "INSERTION": "",
    "CANDIDATES": DEFAULT_CANDIDATES,
    "PREC": "fp32",
    "TEXT": "default",
    "TEXT_CHECKPOINT": False,  # recompute the text encoder's activations in backward (many classes)
    "SEARCH": yacs_defaults(),  # one key per SearchSettings field
    "TRAIN": {
        "INIT": "normal:0.02",
        "PROBE_EPOCHS": 0,
    },
}


def _baseline_nodes() -> dict:
    """The baselines' nodes with the key names of the CoOp and MaPLe repositories' train.py and the
    published settings of :mod:`dpl_plugin.designs` as defaults."""
    coop, vpt, ivlp, maple = (get_design(n).published() for n in ("coop", "vpt", "ivlp", "maple"))
    return {
        # W: KgCoOp's weight, read from CoOp's node as its repository does (htyao89/KgCoOp; 8.0 in its scripts)
        "COOP": {"N_CTX": coop["n_ctx"], "CSC": False, "CTX_INIT": "", "PREC": "fp16", "CLASS_TOKEN_POSITION": "end",
                 "W": 8.0},
        "VPT": {"N_CTX_VISION": vpt["n_ctx"], "CTX_INIT": DEFAULT_CONTEXT, "PREC": "fp16",
                "PROMPT_DEPTH_VISION": vpt["depth"]},
        "IVLP": {"N_CTX_VISION": ivlp["n_vision"], "N_CTX_TEXT": ivlp["n_text"], "CTX_INIT": DEFAULT_CONTEXT,
                 "PREC": "fp16", "PROMPT_DEPTH_VISION": ivlp["depth_vision"], "PROMPT_DEPTH_TEXT": ivlp["depth_text"]},
        "MAPLE": {"N_CTX": maple["n_ctx"], "CTX_INIT": DEFAULT_CONTEXT, "PREC": "fp16", "PROMPT_DEPTH": maple["depth"]},
        # PromptSRC's repository's train.py and configs (muzairkhattak/PromptSRC): IVLP 4 + 4 tokens, depth 9
        "PROMPTSRC": {"N_CTX_VISION": 4, "N_CTX_TEXT": 4, "CTX_INIT": DEFAULT_CONTEXT, "PREC": "fp16",
                      "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9, "TEXT_LOSS_WEIGHT": 25.0,
                      "IMAGE_LOSS_WEIGHT": 10.0, "GPA_MEAN": 15.0, "GPA_STD": 1.0},
    }


def _add_missing(node: CN, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            if key not in node:
                setattr(node, key, CN())
            _add_missing(node[key], value)
        elif key not in node:
            setattr(node, key, value)  # setattr, not item assignment: yacs checks the value type


def extend_cfg(cfg: CN) -> CN:
    """Add ``TRAINER.DPL.*``, the baseline nodes, ``DATASET.SUBSAMPLE_CLASSES`` and ``DATASET.FOLDER``
    where missing."""
    if cfg.is_frozen():
        raise RuntimeError("extend_cfg(cfg) must be called before cfg.freeze()")
    _add_missing(cfg.TRAINER, {"DPL": _DPL, **_baseline_nodes()})
    _add_missing(cfg.DATASET, {"SUBSAMPLE_CLASSES": "all",  # all | base | new
                               "FOLDER": ""})  # ImageFolder: the folder under ROOT ("" = ROOT itself)
    return cfg


def check_dpl_cfg(cfg: CN) -> None:
    """Reject values the trainers cannot use, naming the key and the allowed values."""
    dpl = cfg.TRAINER.DPL
    for key, value, allowed in (("MODE", dpl.MODE, MODES), ("PREC", dpl.PREC, PRECISIONS),
                                ("INSERTION", dpl.INSERTION, INSERTIONS), ("TEXT", dpl.TEXT, TEXT_INPUTS),
                                ("SEARCH.TEXT", dpl.SEARCH.TEXT, TEXT_INPUTS)):
        if value not in allowed:
            raise OptionError(f"TRAINER.DPL.{key} must be one of {list(allowed)}, got '{value}'")
    if dpl.MODE == "train" and not dpl.CONFIG_FILE:
        raise OptionError("TRAINER.DPL.MODE train needs TRAINER.DPL.CONFIG_FILE (a searched prompt configuration); "
                          "use MODE dpl to search first")
    if dpl.MODE == "baseline" and dpl.CONFIG_FILE:
        raise OptionError("TRAINER.DPL.MODE baseline trains the hand design and ignores TRAINER.DPL.CONFIG_FILE; "
                          "use MODE train (or dpl) to train that configuration")
    searches = dpl.MODE == "search" or (dpl.MODE == "dpl" and not dpl.CONFIG_FILE)
    if searches and dpl.SEARCH.EPOCHS < 1:
        raise OptionError(f"TRAINER.DPL.SEARCH.EPOCHS must be at least 1, got {dpl.SEARCH.EPOCHS}: a search of no "
                         f"epochs would write a 'searched' configuration from untrained alpha. To train without a "
                         f"search use TRAINER.DPL.MODE baseline, or MODE train with TRAINER.DPL.CONFIG_FILE")
    if searches:
        try:
            SearchSettings.from_cfg(dpl.SEARCH).resolved()
        except (ValueError, TypeError) as err:
            raise OptionError(f"TRAINER.DPL.SEARCH: {err}") from None
    probe = dpl.TRAIN.PROBE_EPOCHS
    if isinstance(probe, bool) or not isinstance(probe, int) or probe < 0:
        raise OptionError(f"TRAINER.DPL.TRAIN.PROBE_EPOCHS must be a whole number of epochs, 0 to always start "
                          f"from the inherited prompts, got {probe!r}")
    for key, lr in (("TRAINER.DPL.SEARCH.LR", dpl.SEARCH.LR), ("OPTIM.LR", cfg.OPTIM.LR)):
        if not lr > 0:  # also NaN; torch's optimizers would raise a bare ValueError
            raise OptionError(f"{key} must be a positive learning rate, got {lr}")
    if any(isinstance(c, bool) or not isinstance(c, int) for c in dpl.CANDIDATES):
        raise OptionError(f"TRAINER.DPL.CANDIDATES must be whole numbers of tokens, got {list(dpl.CANDIDATES)}")
    candidates = sorted(set(dpl.CANDIDATES))
    if len(candidates) < 2 or candidates[0] != 0:
        raise OptionError(f"TRAINER.DPL.CANDIDATES must include 0 and at least one positive length, "
                          f"got {list(dpl.CANDIDATES)}")


def require_dpl_keys(cfg: CN, trainer: type) -> None:
    """A fork's train.py that never called ``extend_dpl_cfg(cfg)`` has no ``TRAINER.DPL`` node: say
    which lines to add (the config files' TRAINER.DPL keys would have failed before; a baseline's
    config file gets this far)."""
    if "DPL" in cfg.TRAINER:
        return
    module = trainer.__module__
    raise OptionError(f"{trainer.__name__} needs the TRAINER.DPL config keys: in your train.py, add "
                      f"`extend_dpl_cfg(cfg)` after `extend_cfg(cfg)` in setup_cfg() "
                      f"(and `from {module} import extend_dpl_cfg` with the other imports)")


def available_cpus() -> int:
    """CPUs this process may run on (a cluster job's share, not the whole node's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def fit_workers_to_cpus(cfg: CN) -> None:
    """More data-loading workers than CPUs only add processes that compete for them: use as many as
    there are CPUs, and say so once."""
    workers, cpus = cfg.DATALOADER.NUM_WORKERS, available_cpus()
    if workers <= cpus:
        return
    print(f"DATALOADER.NUM_WORKERS {workers} is more than the {cpus} CPUs available: using {cpus}")
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = cpus
    if frozen:
        cfg.freeze()
