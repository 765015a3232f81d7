"""The CoOp-family recipe's optimizer and learning-rate schedule, on any PyTorch version.

Dassl 0.6.3's warm-up schedulers pass ``verbose`` to ``LRScheduler.__init__``, which PyTorch 2.7
removed (``TypeError ... 4 were given``), and they pickle the wrapped scheduler object into their
state, which ``torch.load(weights_only=True)`` refuses. :func:`build_lr_scheduler` reproduces
Dassl's per-epoch learning rates exactly with a ``LambdaLR`` whose state is plain numbers:

* warm-up epochs ``e < W``: ``constant``: ``warmup_lr``; ``linear``: ``warmup_lr`` at ``e = 0``,
  then ``base_lr * e / W``;
* after it, cosine from ``base_lr`` with period ``max_epoch`` counted from the end of warm-up
  (Dassl's ``WARMUP_RECOUNT=True``, used by every CoOp/MaPLe/DPL config), or without warm-up, the
  plain ``CosineAnnealingLR(T_max=max_epoch)``.

The scheduler is stepped once per epoch.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

RECIPE_LR = 3.5e-3  # DPL's learning rate: prompts (SGD) in both stages and alpha (Adam) in the search


class WarmupCosine:
    """The learning-rate multiplier of one parameter group (picklable, plain-number state)."""

    def __init__(self, base_lr: float, max_epoch: int, warmup_epoch: int = 0, warmup_type: str = "constant",
                 warmup_lr: float = 1e-5):
        if warmup_type not in ("constant", "linear"):
            raise ValueError(f"warmup_type must be 'constant' or 'linear', got '{warmup_type}'")
        self.base_lr, self.max_epoch = float(base_lr), int(max_epoch)
        self.warmup_epoch, self.warmup_type, self.warmup_lr = int(warmup_epoch), warmup_type, float(warmup_lr)

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup_epoch:
            if self.warmup_type == "constant" or epoch == 0:
                return self.warmup_lr / self.base_lr
            return epoch / self.warmup_epoch
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - self.warmup_epoch) / self.max_epoch))


def build_lr_scheduler(optimizer: torch.optim.Optimizer, max_epoch: int, warmup_epoch: int = 1,
                       warmup_type: str = "constant", warmup_lr: float = 1e-5) -> torch.optim.lr_scheduler.LambdaLR:
    lambdas = [WarmupCosine(group["lr"], max_epoch, max(warmup_epoch, 0), warmup_type, warmup_lr)
               for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def build_sgd(params: Iterable[torch.nn.Parameter], lr: float = RECIPE_LR, momentum: float = 0.9,
              weight_decay: float = 5e-4) -> torch.optim.SGD:
    """The prompt optimizer of CoOp, VPT, IVLP, MaPLe and DPL (Dassl's SGD defaults)."""
    return torch.optim.SGD(list(params), lr=lr, momentum=momentum, weight_decay=weight_decay)
