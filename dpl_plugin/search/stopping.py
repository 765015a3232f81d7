"""When a search may stop before its last epoch (``EARLY_STOP``, ``EARLY_STOP_CONFIDENCE``).

* ``EARLY_STOP n``: every layer's choice has held for ``n`` epochs (DARTS+, Liang et al. 2019,
  stops once the ranking of alpha has been stable);
* ``EARLY_STOP_CONFIDENCE p``: also every layer's top probability is at least ``p`` (0.6: every
  layer "decided", as the confidence report counts it), with its choice held for
  ``max(EARLY_STOP, 1)`` epochs.

Only epochs in which alpha moved count (choices cannot change during warm-up). Stopping is a
function of the recorded history, so a resumed search stops where the uninterrupted one did.
"""

from __future__ import annotations

import logging

from .history import AlphaHistory
from .settings import SearchSettings

logger = logging.getLogger("dpl_plugin.search")


def should_stop(history: AlphaHistory, settings: SearchSettings, epoch: int, log: bool = True) -> bool:
    """Whether the search may stop after ``epoch`` (1-based, the epochs run so far)."""
    patience, confidence = settings.early_stop_patience, settings.early_stop_confidence
    if confidence > 0:
        patience = max(patience, 1)
    if patience <= 0 or not history.epochs or epoch - settings.warmup_epochs < patience:
        return False
    if not history.stable_for(patience):
        return False
    if confidence > 0 and any(float(history.latest(key).max(dim=1).values.min()) < confidence
                              for key in history.tables):
        return False
    if log:
        decided = f" and every layer's top probability is >= {confidence:g}" if confidence > 0 else ""
        logger.info("Every layer's choice has held for %d epochs%s: stopping after epoch %d", patience, decided, epoch)
    return True


__all__ = ["should_stop"]
