"""What the search learned: per-epoch ``softmax(alpha)``, per-layer confidence, the configuration.

Tables are keyed as they are learned: ``"text"`` and ``"vision"`` for independent branches,
``"coupled"`` for the one table a MaPLe-style search shares between them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from ..runtime.atomic import atomic_write
from .supernet import SupernetPromptLearner

CONFIDENT = 0.6  # top probability from which a layer's choice counts as decided


@dataclass
class LayerConfidence:
    layer: int
    length: int  # the chosen candidate
    probability: float  # its softmax probability
    margin: float  # minus the runner-up's probability
    entropy: float  # of the layer's distribution, in nats (log |C| = undecided)
    stable_since: int  # the epoch from which the choice has not changed


class AlphaHistory:
    """``tables[key][e][l][k]``: probability of candidate ``k`` at layer ``l`` after epoch ``e + 1``."""

    def __init__(self, candidates: Sequence[int], tables: Optional[Dict[str, List]] = None):
        self.candidates = list(candidates)
        self.tables: Dict[str, List] = tables or {}

    @property
    def epochs(self) -> int:
        return len(next(iter(self.tables.values()), []))

    def record(self, learner: SupernetPromptLearner) -> None:
        for key, probs in learner.alpha.tables_by_name().items():
            self.tables.setdefault(key, []).append(probs.tolist())

    def latest(self, key: str) -> torch.Tensor:
        return torch.tensor(self.tables[key][-1])

    def choices(self, key: str) -> List[List[int]]:
        """Per epoch, per layer: the index of the most probable candidate."""
        return [[max(range(len(row)), key=row.__getitem__) for row in epoch] for epoch in self.tables[key]]

    def stable_since(self, key: str) -> List[int]:
        """Per layer, the first epoch (1-based) from which its argmax never changed again."""
        choices = self.choices(key)
        since = []
        for layer in range(len(choices[-1])):
            epoch = len(choices)
            while epoch > 1 and choices[epoch - 2][layer] == choices[-1][layer]:
                epoch -= 1
            since.append(epoch)
        return since

    def stable_for(self, patience: int) -> bool:
        """True once every layer's choice has held for ``patience`` epochs."""
        if not self.tables or self.epochs < patience:
            return False
        return all(self.epochs - s + 1 >= patience for key in self.tables for s in self.stable_since(key))

    def confidence(self, key: str) -> List[LayerConfidence]:
        probs = self.latest(key)
        top2 = probs.topk(min(2, probs.shape[1]), dim=1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
        since = self.stable_since(key)
        out = []
        for layer in range(probs.shape[0]):
            values, index = top2.values[layer], top2.indices[layer]
            runner_up = float(values[1]) if len(values) > 1 else 0.0
            out.append(LayerConfidence(layer, self.candidates[int(index[0])], float(values[0]),
                                       float(values[0]) - runner_up, float(entropy[layer]), since[layer]))
        return out

    # -- files -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"candidates": self.candidates, "tables": self.tables}

    @classmethod
    def from_dict(cls, data: dict) -> "AlphaHistory":
        return cls(data["candidates"], data["tables"])

    def save(self, path: str) -> str:
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f)
        return path


def format_confidence(history: AlphaHistory, threshold: float = CONFIDENT) -> str:
    """A table for logs: one line per layer and table."""
    lines = [f"{'table':<8}{'layer':>6}{'length':>8}{'prob':>8}{'margin':>8}{'entropy*':>9}{'stable since':>14}"
             f"{'decided':>9}"]
    for key in history.tables:
        for c in history.confidence(key):
            lines.append(f"{key:<8}{c.layer:>6}{c.length:>8}{c.probability:>8.3f}{c.margin:>8.3f}"
                         f"{c.entropy / math.log(len(history.candidates)):>9.3f}{c.stable_since:>14}"
                         f"{'yes' if c.probability >= threshold else 'no':>9}")
    lines.append(f"* entropy / log|C|: 0 = certain, 1 = undecided; decided: probability >= {threshold:g}")
    return "\n".join(lines)


__all__ = ["AlphaHistory", "CONFIDENT", "LayerConfidence", "format_confidence"]
