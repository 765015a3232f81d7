"""The search's settings, one dataclass field per option, and named presets.

Each field carries its yacs key (``TRAINER.DPL.SEARCH.<key>``) and help text in its metadata, so
the Dassl config node and its mapping are generated from this one definition
(:func:`yacs_defaults`, :meth:`SearchSettings.from_cfg`) instead of being written three times.

The robustness options (warm-up, temperature, Gumbel sampling, token cost, token budget) default
to ``None``: "as the preset says". ``preset="paper"`` (the default) is the official recipe, so a
published result stays one setting away; a value given explicitly always wins over the preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Optional, Tuple

from .definition import plain
from .selection import SAMPLE_SOURCES, SELECTIONS


def _opt(default, key: str, help: str, **kwargs):
    return field(default=default, metadata={"key": key, "help": help, **kwargs})


@dataclass
class SearchSettings:
    epochs: int = _opt(80, "EPOCHS", "search epochs (alpha and prompt steps alternate every batch)")
    alpha_lr: float = _opt(3.5e-3, "ALPHA_LR", "Adam learning rate of alpha")
    alpha_betas: Tuple[float, float] = _opt((0.5, 0.999), "ALPHA_BETAS", "Adam betas of alpha")
    alpha_weight_decay: float = _opt(0.0, "ALPHA_WEIGHT_DECAY", "Adam weight decay of alpha")
    second_order: bool = _opt(False, "SECOND_ORDER", "DARTS's unrolled (second-order) alpha step")
    early_stop_patience: int = _opt(0, "EARLY_STOP", "> 0: stop once every layer's choice held this many epochs")
    precision: str = "fp32"  # fp32 | amp (autocast + gradient scaling on CUDA); from TRAINER.DPL.PREC
    resume: bool = True
    plot: bool = _opt(True, "PLOT", "alpha heatmaps (alpha_*.png) after every epoch", cosmetic=True)
    # -- robustness options: None = the preset's value -------------------------------------------
    preset: str = _opt("paper", "PRESET", "paper (the official recipe) or robust; explicit keys win")
    warmup_epochs: Optional[int] = _opt(None, "WARMUP_EPOCHS", "epochs that train the prompts before alpha moves")
    temperature: Optional[Tuple[float, float]] = _opt(
        None, "TEMPERATURE", "(start, end) softmax temperature over candidates, annealed geometrically")
    gumbel: Optional[bool] = _opt(None, "GUMBEL", "sample the mixture weights with Gumbel-softmax (GDAS/SNAS)")
    token_cost: Optional[float] = _opt(None, "TOKEN_COST", "lambda of the alpha-loss penalty lambda * E[tokens]")
    token_budget: Optional[int] = _opt(
        None, "TOKEN_BUDGET", "total prompt tokens (all layers and branches) the result must respect; 0 = none")
    # -- choosing from the supernet, its regularisers, stopping ----------------------------------
    select: str = _opt("argmax", "SELECT", "how the configuration is chosen from the trained supernet: argmax "
                       "(the paper), perturbation (DARTS-PT) or sampled (random search with weight sharing)")
    select_samples: int = _opt(64, "SELECT_SAMPLES", "SELECT sampled: configurations scored on validation")
    select_from: str = _opt("alpha", "SELECT_FROM", "SELECT sampled: draw from softmax(alpha) (alpha) or "
                            "uniformly from the search space (space)")
    alpha_noise: float = _opt(0.0, "ALPHA_NOISE", "SDARTS-RS: uniform noise in [-eps, eps] on alpha in the prompt "
                              "steps, eps rising linearly from a tenth of this to this (0.3 in their code)")
    beta_decay: float = _opt(0.0, "BETA_DECAY", "beta-DARTS: lambda of lambda(t) * mean(logsumexp(alpha)) in the "
                             "alpha loss, rising linearly from 0 over the epochs")
    early_stop_confidence: float = _opt(0.0, "EARLY_STOP_CONFIDENCE", "> 0: stop once every layer's top "
                                        "probability is at least this and its choice held EARLY_STOP epochs (>= 1)")

    def resolved(self) -> "SearchSettings":
        """Every ``None`` option replaced by the preset's value; explicit values kept."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown search preset '{self.preset}'; choose one of {sorted(PRESETS)}")
        preset = PRESETS[self.preset](self.epochs)
        values = {name: preset[name] for name in ROBUSTNESS_OPTIONS if getattr(self, name) is None}
        out = replace(self, **values)
        _check(out)
        out.temperature = tuple(float(t) for t in out.temperature)
        out.token_cost = float(out.token_cost)
        return out

    def definition(self) -> Dict[str, Any]:
        """What makes two searches the same search (for checkpoints): all but length and cosmetics."""
        # Where the search stops (epochs, early stopping) does not change its trajectory up to there.
        skip = {"epochs", "resume", "plot", "early_stop_patience", "early_stop_confidence"}
        return {f.name: plain(getattr(self, f.name)) for f in fields(self) if f.name not in skip}

    @classmethod
    def from_cfg(cls, node, **extra) -> "SearchSettings":
        """Settings from a yacs ``TRAINER.DPL.SEARCH`` node (keys made by :func:`yacs_defaults`)."""
        values = {f.name: _from_yacs(node[f.metadata["key"]]) for f in fields(cls) if "key" in f.metadata}
        return cls(**values, **extra)


ROBUSTNESS_OPTIONS = ("warmup_epochs", "temperature", "gumbel", "token_cost", "token_budget")

# A preset maps the number of search epochs to the robustness options' values.
PRESETS = {
    # The official DPL recipe: alpha moves from the first step, plain softmax, no cost, no budget.
    "paper": lambda epochs: dict(warmup_epochs=0, temperature=(1.0, 1.0), gumbel=False, token_cost=0.0,
                                 token_budget=0),
    # PC-DARTS's warm-up (a quarter of the epochs: 15 of 50 there) and an annealed temperature that
    # narrows the gap between the mixture and its argmax; a small token cost against the drift
    # towards the longest candidates.
    "robust": lambda epochs: dict(warmup_epochs=epochs // 4, temperature=(1.0, 0.1), gumbel=False,
                                  token_cost=1e-3, token_budget=0),
}


def yacs_defaults() -> Dict[str, Any]:
    """``{KEY: default}`` for every keyed field (yacs accepts any type in place of a ``None``)."""
    return {f.metadata["key"]: f.default for f in fields(SearchSettings) if "key" in f.metadata}


def cosmetic_keys() -> Tuple[str, ...]:
    """Keys that do not change what a search finds (e.g. plotting)."""
    return tuple(f.metadata["key"] for f in fields(SearchSettings) if f.metadata.get("cosmetic"))


def _from_yacs(value):
    return tuple(value) if isinstance(value, list) else value


def _check(s: SearchSettings) -> None:
    if s.epochs < 1:
        raise ValueError(f"the search needs at least one epoch (got {s.epochs}): alpha untrained is no search result")
    if not 0 <= s.warmup_epochs < s.epochs:
        raise ValueError(f"WARMUP_EPOCHS must be in [0, EPOCHS) = [0, {s.epochs}), got {s.warmup_epochs}: "
                         f"alpha must move for at least one epoch")
    for name in ("warmup_epochs", "token_budget"):
        if isinstance(getattr(s, name), bool) or not isinstance(getattr(s, name), int):
            raise ValueError(f"{name.upper()} must be an integer, got {getattr(s, name)!r}")
    if not isinstance(s.token_cost, (int, float)) or isinstance(s.token_cost, bool):
        raise ValueError(f"TOKEN_COST must be a number, got {s.token_cost!r}")
    if not isinstance(s.temperature, (list, tuple)) or len(s.temperature) != 2 or min(s.temperature) <= 0:
        raise ValueError(f"TEMPERATURE must be two positive numbers (start, end), got {s.temperature}")
    if s.token_cost < 0 or s.token_budget < 0:
        raise ValueError(f"TOKEN_COST and TOKEN_BUDGET must be >= 0, got {s.token_cost} and {s.token_budget}")
    if not isinstance(s.gumbel, bool):
        raise ValueError(f"GUMBEL must be True or False, got {s.gumbel!r}")
    if s.select not in SELECTIONS:
        raise ValueError(f"SELECT must be one of {', '.join(SELECTIONS)}, got {s.select!r}")
    if s.select_from not in SAMPLE_SOURCES:
        raise ValueError(f"SELECT_FROM must be one of {', '.join(SAMPLE_SOURCES)}, got {s.select_from!r}")
    if isinstance(s.select_samples, bool) or not isinstance(s.select_samples, int) or s.select_samples < 1:
        raise ValueError(f"SELECT_SAMPLES must be a positive integer, got {s.select_samples!r}")
    for key, value in (("ALPHA_NOISE", s.alpha_noise), ("BETA_DECAY", s.beta_decay),
                       ("EARLY_STOP_CONFIDENCE", s.early_stop_confidence)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    if s.early_stop_confidence > 1:
        raise ValueError(f"EARLY_STOP_CONFIDENCE is a probability: at most 1, got {s.early_stop_confidence}")


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


__all__ = ["PRESETS", "ROBUSTNESS_OPTIONS", "SearchSettings", "alpha_noise_at", "beta_decay_at", "cosmetic_keys",
           "temperature_at", "yacs_defaults"]
