"""The search's settings, one dataclass field per option, and named presets.

Every key of ``TRAINER.DPL.SEARCH`` is one field here, whose metadata carries its yacs key, help
text and rules, so the Dassl config node, its mapping (:func:`yacs_defaults`,
:meth:`SearchSettings.from_cfg`), the presets and the list of robustness options are generated
from this one definition. Adding a search option is adding a field (and the code that uses it).

Metadata of a field:

* ``key``: its yacs key (``TRAINER.DPL.SEARCH.<key>``); ``help``: what it does;
* ``presets``: makes it a *robustness option*: its default ``None`` means "as the preset says",
  and ``presets`` maps each preset's name to the value (or a function of the search epochs).
  ``preset="paper"`` (the default) is the official recipe, so a published result stays one setting
  away; a value given explicitly always wins over the preset;
* ``check``: ``(value) -> None``, raising ``ValueError`` for a value the search cannot use;
* ``choices``: the allowed values;
* ``legacy``: for an option added after searches began recording their definitions, the value
  every search ran with before it existed: a recorded definition without the option compares as
  that value (:data:`LEGACY_VALUES`), so upgrading keeps finished and interrupted searches reusable;
* ``setup``: read by whoever builds the supernet, its prompt optimizer and loaders
  (:func:`~dpl_plugin.search.stage.search_prompt_lengths`, the Dassl trainer), not by the loop;
  like ``cosmetic`` (does not change what a search finds) and ``length`` (how long it runs), it is
  not part of the loop's :meth:`~SearchSettings.definition`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, Optional, Tuple

from ..engine.optim import RECIPE_LR
from ..prompting.templates import TEXT_INPUTS
from ..errors import OptionError
from ..typed_fields import check_field_types
from .definition import plain
from .supernet import CANDIDATE_TEXT_INIT, CANDIDATE_VISION_INIT

PRESET_NAMES = ("paper", "robust")
PATH_MODES = ("mixture", "single")
SEARCH_OBJECTIVES = ("method", "cross_entropy")
from .selection import SAMPLE_SOURCES, SELECTIONS


def _opt(default, key: str, help: str, **metadata):
    return field(default=default, metadata={"key": key, "help": help, **metadata})


def _robustness(key: str, help: str, check: Callable, **presets):
    """A robustness option: ``None`` until resolved from the preset (``presets``: name -> value or
    ``(epochs) -> value``)."""
    assert set(presets) == set(PRESET_NAMES), f"{key}: a value for each preset {PRESET_NAMES}"
    return _opt(None, key, help, check=check, presets=presets)


def _count(name: str, non_negative: bool = True) -> Callable:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if non_negative:
            _at_least_zero(name, value)
    return check


def _number(name: str) -> Callable:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        _at_least_zero(name, value)
    return check


def _at_least_zero(name: str, value) -> None:
    if value < 0:
        raise ValueError(f"TOKEN_COST and TOKEN_BUDGET must be >= 0 (no negative cost or budget), got {name} {value}")


def _two_positive(value) -> None:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or min(value) <= 0:
        raise ValueError(f"TEMPERATURE must be two positive numbers (start, end), got {value}")


def _flag(key: str) -> Callable:
    def check(value):
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be True or False, got {value!r}")
    return check


def _positive_count(key: str) -> Callable:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return check


def _non_negative(key: str) -> Callable:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    return check


def _probability(key: str) -> Callable:
    def check(value):
        _non_negative(key)(value)
        if value > 1:
            raise ValueError(f"{key} is a probability: at most 1, got {value}")
    return check


@dataclass
class SearchSettings:
    epochs: int = _opt(80, "EPOCHS", "search epochs (alpha and prompt steps alternate every batch)", length=True)
    alpha_lr: float = _opt(RECIPE_LR, "ALPHA_LR", "Adam learning rate of alpha")
    alpha_betas: Tuple[float, float] = _opt((0.5, 0.999), "ALPHA_BETAS", "Adam betas of alpha")
    alpha_weight_decay: float = _opt(0.0, "ALPHA_WEIGHT_DECAY", "Adam weight decay of alpha")
    second_order: bool = _opt(False, "SECOND_ORDER", "DARTS's unrolled (second-order) alpha step")
    early_stop_patience: int = _opt(0, "EARLY_STOP", "> 0: stop once every layer's choice held this many epochs",
                                    length=True)
    precision: str = "fp32"  # fp32 | amp (autocast + gradient scaling on CUDA); from TRAINER.DPL.PREC
    resume: bool = field(default=True, metadata={"length": True})
    plot: bool = _opt(True, "PLOT", "alpha heatmaps (alpha_*.png) after every epoch", cosmetic=True)
    # -- what the supernet, its prompt optimizer and the loaders are built with --------------------
    lr: float = _opt(RECIPE_LR, "LR", "learning rate of the candidate prompts (their optimizer: OPTIM's other keys)",
                     setup=True)
    batch_size: int = _opt(4, "BATCH_SIZE", "training batch (prompt steps), global over processes", setup=True)
    val_batch_size: int = _opt(16, "VAL_BATCH_SIZE", "validation batch (alpha steps), global over processes",
                               setup=True)
    text: str = _opt("default", "TEXT", "the fixed text: the official search uses \"a photo of a {}.\" (default)",
                     setup=True, choices=TEXT_INPUTS)
    text_init: str = _opt(CANDIDATE_TEXT_INIT, "TEXT_INIT", "initialisation of the candidate text prompts", setup=True)
    vision_init: str = _opt(CANDIDATE_VISION_INIT, "VISION_INIT", "initialisation of the candidate vision prompts",
                            setup=True)
    objective: str = _opt("method", "OBJECTIVE", "the loss of both steps (Dassl trainers): method (the trainer's own "
                          "objective, e.g. KgCoOp's or PromptSRC's) or cross_entropy (the official search's)",
                          setup=True, choices=SEARCH_OBJECTIVES)
    # -- robustness options: None = the preset's value -------------------------------------------
    preset: str = _opt("paper", "PRESET", "paper (the official recipe) or robust; explicit keys win",
                       choices=PRESET_NAMES)
    # paper: alpha moves from the first step; robust: PC-DARTS's warm-up (a quarter of the epochs: 15 of 50 there).
    warmup_epochs: Optional[int] = _robustness(
        "WARMUP_EPOCHS", "epochs that train the prompts before alpha moves",
        _count("WARMUP_EPOCHS", non_negative=False),
        paper=0, robust=lambda epochs: epochs // 4)
    # robust: annealed, narrowing the gap between the mixture and its argmax.
    temperature: Optional[Tuple[float, float]] = _robustness(
        "TEMPERATURE", "(start, end) softmax temperature over candidates, annealed geometrically", _two_positive,
        paper=(1.0, 1.0), robust=(1.0, 0.1))
    gumbel: Optional[bool] = _robustness(
        "GUMBEL", "sample the mixture weights with Gumbel-softmax (GDAS/SNAS)", _flag("GUMBEL"),
        paper=False, robust=False)
    # robust: a small cost against the drift towards the longest candidates.
    token_cost: Optional[float] = _robustness(
        "TOKEN_COST", "lambda of the alpha-loss penalty lambda * E[tokens]", _number("TOKEN_COST"),
        paper=0.0, robust=1e-3)
    token_budget: Optional[int] = _robustness(
        "TOKEN_BUDGET", "total prompt tokens (all layers and branches) the result must respect; 0 = none",
        _count("TOKEN_BUDGET"), paper=0, robust=0)

    # -- the supernet's parametrisation and training, choosing from it, its regularisers, stopping --
    paths: str = _opt("mixture", "PATHS", "what a prompt step trains: mixture (every candidate, weighted by "
                      "softmax(alpha): DARTS, the paper) or single (one candidate per layer drawn uniformly, alpha "
                      "not trained: random search with weight sharing; needs SELECT sampled)", choices=PATH_MODES,
                      legacy="mixture")
    nested: bool = _opt(False, "NESTED", "candidates share tokens: a layer's c-token candidate is the first c tokens "
                        "of one prompt of the longest length (False: a prompt per candidate, the paper's)",
                        check=_flag("NESTED"), legacy=False)
    select: str = _opt("argmax", "SELECT", "how the configuration is chosen from the trained supernet: argmax "
                       "(the paper), perturbation (DARTS-PT) or sampled (random search with weight sharing)",
                       choices=SELECTIONS, legacy="argmax")
    select_samples: int = _opt(64, "SELECT_SAMPLES", "SELECT sampled: configurations scored on validation",
                               check=_positive_count("SELECT_SAMPLES"), legacy=64)
    select_from: str = _opt("alpha", "SELECT_FROM", "SELECT sampled: draw from softmax(alpha) (alpha) or "
                            "uniformly from the search space (space)", choices=SAMPLE_SOURCES,
                            legacy="alpha")
    alpha_noise: float = _opt(0.0, "ALPHA_NOISE", "SDARTS-RS: uniform noise in [-eps, eps] on alpha in the prompt "
                              "steps, eps rising linearly from a tenth of this to this (0.3 in their code)",
                              check=_non_negative("ALPHA_NOISE"), legacy=0.0)
    beta_decay: float = _opt(0.0, "BETA_DECAY", "beta-DARTS: lambda of lambda(t) * mean(logsumexp(alpha)) in the "
                             "alpha loss, rising linearly from 0 over the epochs", check=_non_negative("BETA_DECAY"),
                             legacy=0.0)
    # Where the search stops does not change its trajectory up to there: a length option.
    early_stop_confidence: float = _opt(0.0, "EARLY_STOP_CONFIDENCE", "> 0: stop once every layer's top "
                                        "probability is at least this and its choice held EARLY_STOP epochs (>= 1)",
                                        check=_probability("EARLY_STOP_CONFIDENCE"), length=True)

    @property
    def single_path(self) -> bool:
        """PATHS single: prompt steps train one drawn candidate per layer and alpha never learns."""
        return self.paths == "single"

    def __post_init__(self):
        check_field_types(self)  # SearchSettings(epochs="5") or (epochs=2.5): a clear error now, not mid-search

    def resolved(self) -> "SearchSettings":
        """Every ``None`` option replaced by the preset's value; explicit values kept."""
        if self.preset not in PRESETS:
            raise OptionError(f"unknown search preset '{self.preset}'; choose one of {sorted(PRESETS)}")
        preset = PRESETS[self.preset](self.epochs)
        values = {name: preset[name] for name in ROBUSTNESS_OPTIONS if getattr(self, name) is None}
        out = replace(self, **values)
        _check(out)
        out.temperature = tuple(float(t) for t in out.temperature)
        out.token_cost = float(out.token_cost)
        return out

    def definition(self) -> Dict[str, Any]:
        """What makes two searches the same search (for checkpoints): the options the loop reads,
        but the search's length and cosmetics."""
        skip = set(fields_of("length") + fields_of("cosmetic") + fields_of("setup"))
        return {f.name: plain(getattr(self, f.name)) for f in fields(self) if f.name not in skip}

    @classmethod
    def from_cfg(cls, node, **extra) -> "SearchSettings":
        """Settings from a yacs ``TRAINER.DPL.SEARCH`` node (keys made by :func:`yacs_defaults`)."""
        values = {f.name: _from_yacs(node[f.metadata["key"]]) for f in fields(cls) if "key" in f.metadata}
        return cls(**values, **extra)


# {KEY: value} of the options with a ``legacy`` value (read by search.definition's comparison).
LEGACY_VALUES = {f.metadata["key"]: f.metadata["legacy"] for f in fields(SearchSettings) if "legacy" in f.metadata}

ROBUSTNESS_OPTIONS = tuple(f.name for f in fields(SearchSettings) if "presets" in f.metadata)


def _preset(name: str) -> Callable[[int], Dict[str, Any]]:
    """The robustness options' values under preset ``name``, as a function of the search epochs."""
    def values(epochs: int) -> Dict[str, Any]:
        out = {}
        for f in fields(SearchSettings):
            if "presets" in f.metadata:
                value = f.metadata["presets"][name]
                out[f.name] = value(epochs) if callable(value) else value
        return out
    return values


PRESETS = {name: _preset(name) for name in PRESET_NAMES}


def fields_of(flag: str) -> Tuple[str, ...]:
    """Names of the fields whose metadata sets ``flag`` (``setup``, ``cosmetic``, ``length``)."""
    return tuple(f.name for f in fields(SearchSettings) if f.metadata.get(flag))


def yacs_defaults() -> Dict[str, Any]:
    """``{KEY: default}`` for every keyed field (yacs accepts any type in place of a ``None``)."""
    return {f.metadata["key"]: f.default for f in fields(SearchSettings) if "key" in f.metadata}


def cosmetic_keys() -> Tuple[str, ...]:
    """Keys that do not change what a search finds (e.g. plotting)."""
    return tuple(f.metadata["key"] for f in fields(SearchSettings) if f.metadata.get("cosmetic"))


def _from_yacs(value):
    return tuple(value) if isinstance(value, list) else value


def _check(s: SearchSettings) -> None:
    if not s.alpha_lr > 0:  # also NaN
        raise OptionError(f"ALPHA_LR must be a positive learning rate, got {s.alpha_lr}")
    if s.epochs < 1:
        raise ValueError(f"the search needs at least one epoch (got {s.epochs}): alpha untrained is no search result")
    for f in fields(s):
        value = getattr(s, f.name)
        if "choices" in f.metadata and value not in f.metadata["choices"]:
            raise ValueError(f"{f.metadata['key']} must be one of {list(f.metadata['choices'])}, got {value!r}")
        if "check" in f.metadata:
            f.metadata["check"](value)
    if s.single_path and s.select != "sampled":
        raise OptionError(f"PATHS single trains no alpha, so SELECT {s.select} would choose from untrained logits: "
                          f"set SELECT sampled (it scores SELECT_SAMPLES configurations on validation)")
    if s.single_path and (s.early_stop_patience or s.early_stop_confidence):
        raise OptionError("EARLY_STOP and EARLY_STOP_CONFIDENCE watch alpha, which PATHS single does not train: "
                          "set them to 0")
    if not 0 <= s.warmup_epochs < s.epochs:
        raise OptionError(f"WARMUP_EPOCHS must be in [0, EPOCHS) = [0, {s.epochs}), got {s.warmup_epochs}: "
                         f"alpha must move for at least one epoch")


def alpha_noise_at(settings: SearchSettings, epoch: int) -> float:
    """SDARTS-RS's epsilon in (0-based) ``epoch``: linear from a tenth of ``ALPHA_NOISE`` to it."""
    top = float(settings.alpha_noise)
    return top * (0.1 + 0.9 * epoch / max(settings.epochs - 1, 1))


def beta_decay_at(settings: SearchSettings, epoch: int) -> float:
    """beta-DARTS's lambda in (0-based) ``epoch``: linear from 0 to ``BETA_DECAY`` over the epochs."""
    return float(settings.beta_decay) * epoch / max(settings.epochs - 1, 1)


def temperature_at(settings: SearchSettings, epoch: int) -> float:
    """The softmax temperature of (0-based) ``epoch``: geometric from start to end over the epochs
    in which alpha moves (constant during warm-up)."""
    start, end = settings.temperature
    moving = settings.epochs - settings.warmup_epochs
    t = min(max(epoch - settings.warmup_epochs, 0) / max(moving - 1, 1), 1.0)
    return float(start * (end / start) ** t)


__all__ = ["PATH_MODES", "PRESETS", "PRESET_NAMES", "ROBUSTNESS_OPTIONS", "SearchSettings", "alpha_noise_at",
           "beta_decay_at", "cosmetic_keys", "fields_of", "temperature_at", "yacs_defaults"]
