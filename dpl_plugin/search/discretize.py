"""From ``alpha`` to a configuration: argmax, token budgets, and how confident the choice is.

``n[b, l] = argmax_c softmax(alpha[b, l])`` per layer (DARTS's ``genotype()``); with a token budget,
the most probable configuration whose total tokens respect it (an exact multiple-choice knapsack
over ``sum log p``), so the budget holds without trimming a result afterwards.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import torch

from ..errors import OptionError
from ..prompt_config import PromptConfig
from .history import CONFIDENT, AlphaHistory
from .supernet import SupernetPromptLearner

class TokenBudgetError(OptionError):
    """A token budget too small for any configuration with a prompt."""



def _tokens_per_choice(learner: SupernetPromptLearner, key: str) -> int:
    """A coupled table's choice puts its tokens in both branches."""
    return len(learner.branches) if key == "coupled" else 1


def smallest_prompt(learner: SupernetPromptLearner) -> int:
    """Tokens of the cheapest configuration that prompts anything: the shortest positive candidate
    in one layer of the cheapest table (a coupled one counts in both branches)."""
    shortest = min(c for c in learner.candidates if c > 0)
    return shortest * min(_tokens_per_choice(learner, k) for k in learner.alpha.tables)


def check_budget(learner: SupernetPromptLearner, budget: int) -> None:
    """A token budget that no configuration with a prompt fits would make the search's result empty
    whatever alpha learns: refuse it before the search runs."""
    needed = smallest_prompt(learner)
    if budget and budget < needed:
        coupled = " (a coupled token counts in both branches)" if "coupled" in learner.alpha.tables else ""
        raise TokenBudgetError(
            f"TOKEN_BUDGET {budget} is below the {needed} tokens that the smallest configuration with any prompt "
            f"needs{coupled}: every result would be empty. Set TOKEN_BUDGET to at least {needed}, or 0 for no budget")


def choose(learner: SupernetPromptLearner, budget: int = 0) -> Dict[str, List[int]]:
    """Per table, the chosen candidate index of every layer (argmax, or the best within ``budget``)."""
    logp = {k: torch.log_softmax(t.detach().float(), dim=-1).cpu() for k, t in learner.alpha.tables.items()}
    argmax = {k: lp.argmax(dim=1).tolist() for k, lp in logp.items()}
    if not budget or _tokens(learner, argmax) <= budget:
        return argmax
    return _best_within(learner, logp, budget)


def _tokens(learner: SupernetPromptLearner, choice: Dict[str, List[int]]) -> int:
    return sum(_tokens_per_choice(learner, k) * learner.candidates[i] for k, row in choice.items() for i in row)


def _best_within(learner, logp: Dict[str, torch.Tensor], budget: int) -> Dict[str, List[int]]:
    """Maximise ``sum log p`` over layers subject to total tokens <= budget (dynamic programming over
    the tokens used; 0 tokens is always a candidate, so a solution exists)."""
    items = [(k, layer) for k in logp for layer in range(logp[k].shape[0])]
    best = [0.0] + [-math.inf] * budget  # best[t]: max log-probability using exactly t tokens
    picks: List[List[Optional[int]]] = []
    for key, layer in items:
        cost = _tokens_per_choice(learner, key)
        new, pick = [-math.inf] * (budget + 1), [None] * (budget + 1)
        for used, value in enumerate(best):
            if value == -math.inf:
                continue
            for index, length in enumerate(learner.candidates):
                total = used + cost * length
                score = value + float(logp[key][layer, index])
                if total <= budget and score > new[total]:
                    new[total], pick[total] = score, index
        best = new
        picks.append(pick)
    used = max(range(budget + 1), key=best.__getitem__)
    choice = {k: [0] * logp[k].shape[0] for k in logp}
    for (key, layer), pick in zip(reversed(items), reversed(picks)):
        index = pick[used]
        choice[key][layer] = index
        used -= _tokens_per_choice(learner, key) * learner.candidates[index]
    return choice


def derive_config(learner: SupernetPromptLearner, history: Optional[AlphaHistory] = None,
                  provenance: Optional[dict] = None, budget: int = 0,
                  choice: Optional[Dict[str, List[int]]] = None) -> PromptConfig:
    """The searched configuration as a prefix-insertion :class:`PromptConfig`: ``choice`` (per
    table, per layer, a candidate index: another selection's) or alpha's argmax within ``budget``.

    With a history, the per-layer confidence is recorded in the configuration's provenance.
    """
    lengths = {b: [0] * n for b, n in learner.layer_counts.items()}
    choice = choice if choice is not None else choose(learner, budget)
    for branch in learner.branches:
        for layer, k in enumerate(choice[learner.alpha.key(branch)]):
            lengths[branch][layer] = learner.candidates[k]
    info = dict(provenance or {})
    info["candidates"] = list(learner.candidates)
    if budget:
        info["token_budget"] = {"budget": budget, "tokens": _tokens(learner, choice),
                                "argmax_tokens": _tokens(learner, choose(learner))}
    if history is not None and history.epochs:
        info["epochs"] = history.epochs
        info["confidence"] = {key: [_rounded(asdict(c)) for c in history.confidence(key)] for key in history.tables}
        info["decided"] = confidence_summary(history).message
    return PromptConfig(text=lengths["text"], vision=lengths["vision"], insertion="prefix",
                        coupled=learner.coupled, max_length=max(learner.candidates), provenance=info)


def _rounded(entry: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()}


@dataclass
class ConfidenceSummary:
    decided: Dict[str, int]  # per table: layers whose top probability is >= the threshold
    layers: Dict[str, int]  # per table: searched layers
    threshold: float

    @property
    def fraction(self) -> float:
        return sum(self.decided.values()) / max(sum(self.layers.values()), 1)

    @property
    def settled(self) -> bool:
        return self.decided == self.layers

    @property
    def message(self) -> str:
        if self.settled:
            return f"The search settled: every searched layer's choice has probability >= {self.threshold:g}."
        undecided = ", ".join(f"{self.layers[k] - self.decided[k]} of {self.layers[k]} {k} layers"
                              for k in self.layers if self.decided[k] < self.layers[k])
        return (f"The search did not settle: {undecided} undecided (top probability < {self.threshold:g}); "
                f"their lengths are guesses. Consider more epochs, a larger ALPHA_LR, or WARMUP_EPOCHS.")


def confidence_summary(history: AlphaHistory, threshold: float = CONFIDENT) -> ConfidenceSummary:
    decided, layers = {}, {}
    for key in history.tables:
        probs = history.latest(key).max(dim=1).values
        decided[key], layers[key] = int((probs >= threshold).sum()), int(probs.numel())
    return ConfidenceSummary(decided, layers, threshold)


__all__ = ["CONFIDENT", "ConfidenceSummary", "choose", "confidence_summary", "derive_config"]
