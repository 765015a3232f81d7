"""Dassl's training log as a batch job wants it: one line per epoch off a terminal.

Dassl prints a line every ``TRAIN.PRINT_FREQ`` batches, and after *every* batch when an epoch has
fewer batches than that (few-shot runs): dozens of lines per epoch in a log file. Off a terminal
the frequency becomes the epoch's batch count, so that the epoch's last batch alone prints (with
the epoch's running means). On a terminal ``PRINT_FREQ`` is kept. (Dassl's evaluation bar is
switched off off a terminal by ``train.py``, through tqdm's ``TQDM_DISABLE``.)
"""

from __future__ import annotations

import sys

from ..engine.progress import is_terminal


def one_line_per_epoch(cfg, num_batches: int) -> None:
    """Off a terminal: set ``cfg.TRAIN.PRINT_FREQ`` to ``num_batches`` (the epoch's last batch prints)."""
    console = getattr(sys.stdout, "console", sys.stdout)  # behind Dassl's tee into log.txt
    if is_terminal(console) or num_batches < 1 or cfg.TRAIN.PRINT_FREQ == num_batches:
        return
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.TRAIN.PRINT_FREQ = num_batches
    if frozen:
        cfg.freeze()
