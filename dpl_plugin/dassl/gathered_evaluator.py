"""Dassl's evaluator over the images of every process (``torchrun``).

Each process records its share's predictions; :meth:`GatheredEvaluator.evaluate` gathers them and
runs Dassl's own evaluator on rank 0 over all of them (accuracy, macro F1, per-class results: the
one-process figures), then hands its results to every rank, so that all take the same decisions
(e.g. the best validation epoch). Non-finite logits are recorded rather than raised in the middle
of the loop, and raised on every rank at once (a rank raising alone would leave the others waiting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..engine.finite import check_finite_logits
from ..errors import NonFiniteLossError
from ..runtime import distributed


class GatheredEvaluator:
    def __init__(self, evaluator):
        self.evaluator = evaluator
        self.reset()

    def reset(self) -> None:
        self.evaluator.reset()
        self._pred, self._true, self._classes, self._error = [], [], 0, ""

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        try:
            check_finite_logits(logits, "evaluation")
        except NonFiniteLossError as err:
            self._error = self._error or str(err)
        self._classes = logits.shape[1]
        self._pred.append(logits.argmax(dim=1).cpu())
        self._true.append(labels.cpu())

    def evaluate(self):
        mine = (_cat(self._pred), _cat(self._true), self._classes, self._error)
        shares = distributed.gather_objects(mine)
        errors = [error for _, _, _, error in shares if error]
        if errors:
            raise NonFiniteLossError(errors[0])
        results = None
        if distributed.is_main():
            pred = torch.cat([p for p, _, _, _ in shares])
            true = torch.cat([t for _, t, _, _ in shares])
            classes = max(c for _, _, c, _ in shares)
            self.evaluator.reset()
            self.evaluator.process(F.one_hot(pred, classes).float(), true)  # its argmax is the prediction
            results = self.evaluator.evaluate()
        return distributed.broadcast_object(results)


def _cat(tensors) -> torch.Tensor:
    return torch.cat(tensors) if tensors else torch.zeros(0, dtype=torch.long)
