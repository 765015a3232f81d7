"""Choose where the train stage starts by a short probe: weight inheritance, guarded.

A searched supernet's prompts (``TRAIN.INIT searched``) usually start the train stage ahead of fresh
ones, but some supernets leave them in a basin the train stage does not leave: on the demo's IVLP,
2 seeds of 8 ended at about 30% from inherited prompts against about 50% from fresh ones, a gap
visible by the fifth epoch. The probe runs the train stage's first epochs (its own schedule,
warm-up included) from each candidate start, scores each on the validation split and keeps the
best; the train stage then starts from the winner's *initial* prompts, so it is the same training
as one configured with that start from the outset. It costs twice its epochs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Sequence

from ..errors import NonFiniteLossError
from ..runtime.reproducibility import seed_everything
from .batches import default_batch
from .objectives import Objective
from .training import TrainSettings, evaluate, train_prompts


logger = logging.getLogger("dpl_plugin.engine.start_probe")


@dataclass(frozen=True)
class ProbeResult:
    chosen: str
    val_acc: Dict[str, float]  # per start, validation accuracy (%) after its probe
    samples: int  # images the probes processed forward and backward, all starts together
    epochs: int  # the train stage's epochs each start was probed for

    def describe(self) -> str:
        scores = ", ".join(f"{start} {acc:.1f}%" for start, acc in self.val_acc.items())
        return (f"Start probe (the train stage's first {self.epochs} epochs from each start; validation accuracy): "
                f"{scores}. The train stage starts from {self.chosen}")


class _CountingBatches:
    """``batch_fn`` that also counts the images it hands to training."""

    def __init__(self, batch_fn: Callable):
        self.batch_fn, self.samples = batch_fn, 0

    def __call__(self, batch):
        images, labels = self.batch_fn(batch)
        self.samples += int(labels.shape[0])
        return images, labels


def probe_starts(build: Callable[[str], object], starts: Sequence[str], train_loader: Iterable, val_loader: Iterable,
                 settings: TrainSettings, epochs: int, seed: Optional[int] = None,
                 before_training: Optional[Callable[[], None]] = None, batch_fn: Callable = default_batch,
                 objective: Optional[Objective] = None, optimizer_factory: Optional[Callable] = None) -> ProbeResult:
    """Run the first ``epochs`` epochs of the train stage (``settings``; all of it if shorter) from every start
    (``build(start)``: a fresh model with that start, its objective prepared) and return the start
    with the highest validation accuracy; the first of ``starts`` wins ties (put the preferred one
    first). A start whose loss turns non-finite scores minus infinity. ``seed``: reseeded before
    each start is built and again before it trains, so that every start sees the train stage's
    batches; ``before_training``: called after that (e.g. each process's own augmentation seed);
    ``optimizer_factory``: the train stage's optimizer and schedule, if not ``settings``' recipe
    (:func:`~dpl_plugin.engine.training.train_prompts`)."""
    if len(starts) < 2 or epochs < 1:
        raise ValueError(f"a start probe compares at least two starts over at least one epoch, got {list(starts)} "
                         f"and {epochs} epochs")
    epochs = min(epochs, settings.epochs)
    counter = _CountingBatches(batch_fn)
    scores: Dict[str, float] = {}
    for start in starts:
        if seed is not None:
            seed_everything(seed)
        model = build(start)
        if seed is not None:
            seed_everything(seed)
        if before_training is not None:
            before_training()
        try:
            train_prompts(model, train_loader, settings, batch_fn=counter, progress=False, objective=objective,
                          stop_after=epochs, optimizer_factory=optimizer_factory)
            scores[start] = evaluate(model, val_loader, batch_fn=batch_fn, progress=False)
        except NonFiniteLossError as err:  # raised on every process alike: all score it the same
            logger.warning("start probe: %s diverged (%s)", start, err)
            scores[start] = float("-inf")
        del model
    chosen = max(starts, key=lambda s: (scores[s], -list(starts).index(s)))
    return ProbeResult(chosen, scores, counter.samples, epochs)


__all__ = ["ProbeResult", "probe_starts"]
