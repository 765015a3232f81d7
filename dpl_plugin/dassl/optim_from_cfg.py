"""Optimizer and learning-rate schedule from a Dassl ``OPTIM`` node, on any PyTorch version.

Dassl 0.6.3's warm-up schedulers fail on PyTorch >= 2.7 (a ``TypeError`` from
``LRScheduler.__init__``) and pickle objects that ``torch.load(weights_only=True)`` refuses, so the
warm-up + cosine schedule comes from :mod:`dpl_plugin.engine.optim`, which reproduces Dassl's
per-epoch learning rates. Schedules without warm-up are Dassl's, which still work.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from dassl.optim import build_lr_scheduler as dassl_lr_scheduler
from dassl.optim import build_optimizer

from ..engine.optim import build_lr_scheduler as warmup_cosine_scheduler
from ..errors import OptionError


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg):
    warmup = optim_cfg.WARMUP_EPOCH
    if optim_cfg.LR_SCHEDULER == "cosine":
        if warmup > 0 and not optim_cfg.WARMUP_RECOUNT:
            raise OptionError("OPTIM.WARMUP_RECOUNT False is not supported: every CoOp-family recipe counts the "
                              "cosine period from the end of the warm-up (WARMUP_RECOUNT True)")
        warmup_lr = optim_cfg.WARMUP_CONS_LR if optim_cfg.WARMUP_TYPE == "constant" else optim_cfg.WARMUP_MIN_LR
        return warmup_cosine_scheduler(optimizer, optim_cfg.MAX_EPOCH, max(warmup, 0), optim_cfg.WARMUP_TYPE,
                                       warmup_lr)
    if warmup > 0:
        raise OptionError(f"a warm-up with OPTIM.LR_SCHEDULER '{optim_cfg.LR_SCHEDULER}' is not supported (Dassl's "
                          f"warm-up schedulers fail on current PyTorch): use LR_SCHEDULER cosine, or WARMUP_EPOCH 0")
    return dassl_lr_scheduler(optimizer, optim_cfg)


def build_optimizer_and_scheduler(params: Sequence[torch.nn.Parameter], optim_cfg, lr: Optional[float] = None,
                                  max_epoch: Optional[int] = None) -> Tuple[torch.optim.Optimizer, object]:
    """Dassl's optimizer over ``params`` only (never the frozen CLIP), and its schedule.

    ``lr``/``max_epoch`` override ``OPTIM.LR``/``OPTIM.MAX_EPOCH`` (the search stage's own values).
    """
    optim_cfg = optim_cfg.clone()
    optim_cfg.defrost()
    if lr is not None:
        optim_cfg.LR = lr
    if max_epoch is not None:
        optim_cfg.MAX_EPOCH = max_epoch
    optim_cfg.STAGED_LR = False  # staged learning rates address backbone layers; prompts are one group
    optimizer = build_optimizer(list(params), optim_cfg)
    return optimizer, build_scheduler(optimizer, optim_cfg)
