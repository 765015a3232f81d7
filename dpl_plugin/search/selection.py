"""Choosing the configuration from a trained supernet (``TRAINER.DPL.SEARCH.SELECT``).

* ``argmax``: ``argmax_c alpha[l, c]`` per layer (the paper's rule; within the token budget, the
  most probable configuration, see :mod:`~dpl_plugin.search.discretize`);
* ``perturbation``: DARTS-PT (Wang et al., ICLR 2021, "Rethinking architecture selection in
  differentiable NAS"): alpha's magnitude does not measure what a candidate contributes to the
  supernet, so measure it. Layer by layer, fix the layer to each candidate in the trained supernet
  (the layers already decided stay fixed, the others keep their mixture), score the supernet on the
  validation split and keep the best candidate;
* ``sampled``: random search with weight sharing (Li & Talwalkar, UAI 2019): score ``K``
  configurations drawn from ``softmax(alpha)`` (or uniformly from the space) with the supernet's
  shared prompts on the validation split, and keep the best.

A score is the validation accuracy, ties broken by the lower cross-entropy. "Fixing" a layer sets
its logits to a one-hot mixture for the duration of the score; alpha is restored bit for bit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..engine.batches import default_batch
from ..runtime import distributed
from .discretize import _tokens, _tokens_per_choice, choose
from .supernet import SupernetPromptLearner

SELECTIONS = ("argmax", "perturbation", "sampled")
SAMPLE_SOURCES = ("alpha", "space")
_OFF = -1e4  # a logit whose softmax weight is exactly 0 in float32 (exp(-1e4) underflows)

Choice = Dict[str, List[Optional[int]]]  # per alpha table, per layer: candidate index (None: still mixed)


@dataclass(frozen=True)
class Score:
    accuracy: float  # % on the validation split
    loss: float  # mean cross-entropy

    def key(self) -> Tuple[float, float]:
        return self.accuracy, -self.loss


@dataclass
class Selection:
    choice: Dict[str, List[int]]  # per table, per layer: the chosen candidate index
    method: str
    scored: int = 0  # supernet evaluations on the validation split
    samples: int = 0  # images evaluated (forward only), over all processes
    best: Optional[Score] = None  # the chosen configuration's score, where one was measured
    trace: List[dict] = field(default_factory=list)  # what was scored, in order (for the provenance)

    def summary(self) -> dict:
        out = {"method": self.method, "scored": self.scored, "samples": self.samples}
        if self.best is not None:
            out["val_accuracy"] = round(self.best.accuracy, 2)
            out["val_loss"] = round(self.best.loss, 4)
        return out


@contextlib.contextmanager
def fixed_layers(learner: SupernetPromptLearner, choice: Choice):
    """The supernet with every layer whose ``choice`` is an index fixed to that one candidate."""
    saved = {key: table.detach().clone() for key, table in learner.alpha.tables.items()}
    try:
        with torch.no_grad():
            for key, row in choice.items():
                table = learner.alpha.tables[key]
                for layer, index in enumerate(row):
                    if index is not None:
                        table[layer].fill_(_OFF)
                        table[layer, index] = 0.0
        yield learner
    finally:
        with torch.no_grad():
            for key, table in learner.alpha.tables.items():
                table.copy_(saved[key])


@torch.no_grad()
def validation_score(model, loader: Iterable, batch_fn: Callable = default_batch) -> Tuple[Score, int]:
    """The model's accuracy and mean cross-entropy on ``loader`` (summed over processes), and the
    number of images evaluated."""
    model.eval()
    device = model.logit_scale.device
    correct, loss, seen = 0, 0.0, 0
    with model.cached_text_features():
        for batch in loader:
            images, labels = (t.to(device) for t in batch_fn(batch))
            logits = model(images).float()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            seen += labels.numel()
    totals = distributed.sum_values({"correct": correct, "loss": loss, "seen": seen})
    if not totals["seen"]:
        raise ValueError("the validation loader yields no batches: selection scores the supernet on validation data")
    return Score(100.0 * totals["correct"] / totals["seen"], totals["loss"] / totals["seen"]), int(totals["seen"])


def select(model, val_loader: Iterable, method: str = "argmax", budget: int = 0, samples: int = 64,
           source: str = "alpha", generator: Optional[torch.Generator] = None,
           batch_fn: Callable = default_batch) -> Selection:
    """The configuration ``method`` chooses from the trained supernet ``model`` (a PromptedCLIP
    with a :class:`SupernetPromptLearner`), within ``budget`` total tokens (0: none)."""
    learner = model.prompt_learner
    if method == "argmax":
        return Selection(choose(learner, budget), method)
    if method not in SELECTIONS:
        raise ValueError(f"unknown selection '{method}'; choose one of {', '.join(SELECTIONS)}")
    scorer = _Scorer(model, val_loader, batch_fn)
    if method == "perturbation":
        choice = _perturbation(learner, scorer, budget)
    else:
        choice = _sampled(learner, scorer, budget, samples, source, generator)
    return Selection(choice, method, scorer.calls, scorer.samples, scorer.scores[_frozen(choice)]
                     if _frozen(choice) in scorer.scores else None, scorer.trace)


class _Scorer:
    """Scores of (partially) fixed supernets, each configuration measured once."""

    def __init__(self, model, loader, batch_fn):
        self.model, self.loader, self.batch_fn = model, loader, batch_fn
        self.scores: Dict[tuple, Score] = {}
        self.calls = self.samples = 0
        self.trace: List[dict] = []

    def __call__(self, choice: Choice) -> Score:
        key = _frozen(choice)
        if key not in self.scores:
            with fixed_layers(self.model.prompt_learner, choice):
                score, seen = validation_score(self.model, self.loader, self.batch_fn)
            self.scores[key] = score
            self.calls += 1
            self.samples += seen
            self.trace.append({"choice": {k: list(v) for k, v in choice.items()},
                               "val_accuracy": round(score.accuracy, 2), "val_loss": round(score.loss, 4)})
        return self.scores[key]


def _frozen(choice: Choice) -> tuple:
    return tuple((k, tuple(v)) for k, v in sorted(choice.items()))


def _perturbation(learner: SupernetPromptLearner, scorer: _Scorer, budget: int) -> Dict[str, List[int]]:
    """Layers decided in order (tables, then layers); a candidate that would leave no room in the
    budget is not tried (the undecided layers can always take 0 tokens)."""
    choice: Choice = {key: [None] * table.shape[0] for key, table in learner.alpha.tables.items()}
    for key, row in choice.items():
        per_token = _tokens_per_choice(learner, key)
        for layer in range(len(row)):
            used = _tokens(learner, {k: [i for i in v if i is not None] for k, v in choice.items()})
            best = None
            for index, length in enumerate(learner.candidates):
                if budget and used + per_token * length > budget:
                    continue
                row[layer] = index
                score = scorer(choice)
                if best is None or score.key() > best[1].key():
                    best = (index, score)
            row[layer] = best[0]
    return choice


def _sampled(learner: SupernetPromptLearner, scorer: _Scorer, budget: int, count: int, source: str,
             generator: Optional[torch.Generator]) -> Dict[str, List[int]]:
    if source not in SAMPLE_SOURCES:
        raise ValueError(f"unknown source of sampled configurations '{source}'; choose one of {SAMPLE_SOURCES}")
    if count < 1:
        raise ValueError(f"SELECT_SAMPLES must be at least 1 for SELECT sampled, got {count}")
    generator = generator or torch.Generator().manual_seed(0)
    best = None
    for _ in range(count):
        choice = _draw(learner, source, generator)
        if budget and _tokens(learner, choice) > budget:
            continue
        score = scorer(choice)
        if best is None or score.key() > best[1].key():
            best = (choice, score)
    if best is None:  # every draw over budget: the most probable configuration within it
        return choose(learner, budget)
    return best[0]


def _draw(learner: SupernetPromptLearner, source: str, generator: torch.Generator) -> Dict[str, List[int]]:
    out = {}
    for key, table in learner.alpha.tables.items():
        if source == "alpha":
            probs = torch.softmax(table.detach().float().cpu(), dim=-1)
            out[key] = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()
        else:
            out[key] = torch.randint(table.shape[1], (table.shape[0],), generator=generator).tolist()
    return out


__all__ = ["SAMPLE_SOURCES", "SELECTIONS", "Score", "Selection", "fixed_layers", "select", "validation_score"]
