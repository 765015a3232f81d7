"""Gaussian weighted prompt aggregation (PromptSRC's GPA), a schedule of the train stage.

After epoch ``e`` (1-based) the prompts are added to a running average with weight
``N(e; mean, std)``, normalised over the epochs; after the last epoch the average replaces the
trained prompts (PromptSRC: ``GPA_MEAN`` 15, ``GPA_STD`` 1 over 20 epochs in base-to-new).

The average is kept as an online log-sum-exp (weights relative to the largest so far), so that
(1) weights far in the Gaussian's tail do not underflow to a 0/0 average, and (2) it does not
depend on the total number of epochs: a run resumed with more epochs continues the same average.
Its state goes into the training checkpoint, with the trained prompts when the average has
replaced them, so that resuming continues training the trained prompts, not their average.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn

from ..errors import DPLError


class GaussianPromptAveraging:
    def __init__(self, mean: float, std: float):
        if not std > 0:
            raise DPLError(f"the Gaussian prompt aggregation needs a positive standard deviation, got {std} "
                           f"(TRAINER.PROMPTSRC.GPA_STD)")
        self.mean, self.std = float(mean), float(std)
        self._log_scale = -math.inf  # log of the weight the sums are relative to
        self._weights = 0.0  # sum of relative weights
        self._sum: Optional[Dict[str, torch.Tensor]] = None  # sum of relative weight * prompts
        self.trained: Optional[Dict[str, torch.Tensor]] = None  # the prompts the average replaced

    def log_weight(self, epoch: int) -> float:
        """Unnormalised log-weight of 1-based ``epoch``."""
        return -0.5 * ((epoch - self.mean) / self.std) ** 2

    def add(self, learner: nn.Module, epoch: int) -> None:
        """Add ``learner``'s prompts after 1-based ``epoch`` to the average."""
        log_w = self.log_weight(epoch)
        scale = max(self._log_scale, log_w)
        old, new = math.exp(self._log_scale - scale), math.exp(log_w - scale)
        state = {k: v.detach().float() for k, v in learner.state_dict().items()}
        if self._sum is None:
            self._sum = {k: new * v for k, v in state.items()}
        else:
            self._sum = {k: old * self._sum[k].to(state[k].device) + new * state[k] for k in state}
        self._weights = old * self._weights + new
        self._log_scale = scale

    def average(self) -> Dict[str, torch.Tensor]:
        if self._sum is None:
            raise DPLError("no epoch has been added to the prompt average yet")
        return {k: v / self._weights for k, v in self._sum.items()}

    def apply(self, learner: nn.Module) -> None:
        """Replace ``learner``'s prompts by the average, keeping the trained ones (for resuming)."""
        self.trained = {k: v.detach().clone() for k, v in learner.state_dict().items()}
        current = learner.state_dict()
        learner.load_state_dict({k: v.to(current[k].dtype) for k, v in self.average().items()})

    def state_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "log_scale": self._log_scale, "weights": self._weights,
                "sum": self._sum, "trained": self.trained}

    def load_state_dict(self, state: dict, learner: nn.Module) -> None:
        """Restore the average; if it had replaced the trained prompts, put those back into ``learner``
        (training goes on from them)."""
        self._log_scale, self._weights, self._sum = state["log_scale"], state["weights"], state["sum"]
        if state.get("trained") is not None:
            learner.load_state_dict(state["trained"])
        self.trained = None


__all__ = ["GaussianPromptAveraging"]
