"""The train stage without any engine: fit a :class:`PromptedCLIP`'s prompts, evaluate it.

The recipe defaults are the CoOp family's (CoOp's and MaPLe's configs): SGD with momentum 0.9 and weight
decay 5e-4, one constant warm-up epoch at 1e-5, then cosine. Dassl users get the same through the
trainers in ``dpl_plugin.dassl``; this module is for everyone else (and for the quickstart).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional

import torch

from ..errors import NonFiniteLogitsError, NonFiniteLossError, require_instance
from ..typed_fields import check_field_types
from ..runtime import distributed
from ..runtime.sharded_data import set_epoch
from .averaging import GaussianPromptAveraging
from .batches import accuracy, default_batch
from .finite import check_finite, check_finite_logits
from .objectives import Objective
from .optim import RECIPE_LR, build_lr_scheduler, build_sgd
from .progress import EpochProgress

logger = logging.getLogger("dpl_plugin.engine.training")
logger.addFilter(distributed.main_rank_only)


@dataclass
class TrainSettings:
    epochs: int = 40
    lr: float = RECIPE_LR
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    precision: str = "fp32"  # fp32 | amp (CUDA autocast with gradient scaling)

    def __post_init__(self):
        check_field_types(self)


def _device_of(model) -> torch.device:
    return model.logit_scale.device


def train_prompts(model, loader: Iterable, settings: Optional[TrainSettings] = None,
                  batch_fn: Callable = default_batch, progress: bool = True, objective: Optional[Objective] = None,
                  averaging: Optional[GaussianPromptAveraging] = None,
                  stop_after: Optional[int] = None,
                  optimizer_factory: Optional[Callable] = None) -> List[Dict[str, float]]:
    """Train the learnable parameters of ``model`` on ``loader``; return per-epoch loss/accuracy.

    ``objective``: the loss of a batch (default cross-entropy; a prepared :class:`Objective`);
    ``averaging``: e.g. PromptSRC's Gaussian prompt aggregation, applied after the last epoch;
    ``stop_after``: run only the first epochs of the schedule (a probe of the training);
    ``optimizer_factory``: ``params -> (optimizer, per-epoch scheduler)`` instead of the recipe's
    SGD and warm-up + cosine from ``settings`` (e.g. a Dassl ``OPTIM`` node's)."""
    s = require_instance(settings or TrainSettings(), TrainSettings, "train_prompts' settings",
                         "pass TrainSettings(...) (a dict d: TrainSettings(**d))")
    objective = objective or Objective()
    device = _device_of(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no learnable prompts: is the configuration all zeros?")
    if optimizer_factory is None:
        optimizer = build_sgd(params, s.lr, s.momentum, s.weight_decay)
        scheduler = build_lr_scheduler(optimizer, s.epochs, s.warmup_epochs, warmup_lr=s.warmup_lr)
    else:
        optimizer, scheduler = optimizer_factory(params)
    amp = s.precision == "amp" and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history = []
    for epoch in range(s.epochs if stop_after is None else min(stop_after, s.epochs)):
        model.train()
        set_epoch(loader, epoch)
        total = {"loss": 0.0, "acc": 0.0}
        count = 0
        bar = EpochProgress(loader, f"train {epoch + 1}/{s.epochs}", epoch + 1, s.epochs,
                            enabled=progress and distributed.is_main())
        for step, batch in enumerate(bar):
            images, labels = (t.to(device) for t in batch_fn(batch))
            with torch.autocast(device.type, enabled=amp):
                loss, logits, _ = objective(model, images, labels)
            check_finite(loss, "training", f"epoch {epoch + 1}, iteration {step + 1}", "")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            distributed.average_parameter_gradients(params)  # several processes: the mean over ranks
            scaler.step(optimizer)
            scaler.update()
            count += 1
            total["loss"] += loss.item()
            total["acc"] += accuracy(logits.detach(), labels)
            bar.set_postfix(loss=f"{total['loss'] / count:.3f}")
        if count == 0:
            raise ValueError("the training loader yields no batches: nothing was trained (is the dataset empty, "
                             "or a loader with drop_last=True given fewer images than one batch?)")
        scheduler.step()
        if averaging is not None:
            averaging.add(model.prompt_learner, epoch + 1)
        history.append(distributed.mean_values({k: v / count for k, v in total.items()}))
        logger.info("epoch [%d/%d] loss %.4f acc %.1f%% lr %.3e", epoch + 1, s.epochs, history[-1]["loss"],
                    history[-1]["acc"], optimizer.param_groups[0]["lr"])
    if averaging is not None and len(history) == s.epochs:
        averaging.apply(model.prompt_learner)
    return history


@torch.no_grad()
def evaluate(model, loader: Iterable, batch_fn: Callable = default_batch, progress: bool = True) -> float:
    """Top-1 accuracy (%) on ``loader``, with the class text features computed once.

    With several processes, each evaluates the images its loader yields (its share, e.g. from
    :func:`dpl_plugin.runtime.sharded_data.eval_loader`) and the counts are summed: the same accuracy as one
    process on all images."""
    device = _device_of(model)
    model.eval()
    correct = seen = 0
    failure: Optional[NonFiniteLossError] = None
    with model.cached_text_features():
        try:
            for step, batch in enumerate(EpochProgress(loader, "evaluate",
                                                       enabled=progress and distributed.is_main())):
                images, labels = (t.to(device) for t in batch_fn(batch))
                logits = model(images)
                check_finite_logits(logits, f"evaluation batch {step + 1}")
                correct += (logits.argmax(dim=1) == labels).sum().item()
                seen += labels.numel()
        except NonFiniteLossError as err:  # raised below on every process, so that none waits for the others
            failure = err
    totals = distributed.sum_values({"correct": correct, "seen": seen, "failed": failure is not None})
    if failure is not None:
        raise failure
    if totals["failed"]:
        raise NonFiniteLogitsError("the evaluation stopped in another process (non-finite logits): see its error")
    if not totals["seen"]:
        raise ValueError("the evaluation loader yields no batches")
    return 100.0 * totals["correct"] / totals["seen"]
