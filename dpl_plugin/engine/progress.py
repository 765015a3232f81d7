"""Progress of a loop over batches: a live bar on a terminal, one line per epoch in every case.

A bar redrawn a few times a second is useful on a terminal and floods a log file (a redirected
stderr keeps every redraw). So the bar is drawn only where its stream is a terminal, and every
epoch ends with one plain line on stdout -- its losses, how long it took and the estimated time
left -- which Dassl's logger also copies into ``log.txt``.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, Optional

from tqdm.auto import tqdm


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)  # Dassl's stdout tee has no isatty: it writes a file
    return bool(isatty and isatty())


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class EpochProgress:
    """Iterate ``iterable`` (one epoch) showing ``desc`` and the values given to :meth:`set_postfix`.

    ``epoch`` (1-based) and ``epochs`` make the closing line's estimate of the time left (this
    epoch's duration times the epochs still to run). ``enabled=False`` shows and prints nothing;
    ``closing_line=False`` leaves the epoch's line to the caller (which may add :meth:`timing`).
    """

    def __init__(self, iterable: Iterable, desc: str, epoch: Optional[int] = None, epochs: Optional[int] = None,
                 total: Optional[int] = None, enabled: bool = True, closing_line: bool = True):
        self.iterable, self.desc, self.epoch, self.epochs, self.enabled = iterable, desc, epoch, epochs, enabled
        self.closing_line = closing_line
        self.seconds = 0.0
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.postfix = {}
        self._bar = None
        if enabled and is_terminal(sys.stderr):
            self._bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)

    def set_postfix(self, **values) -> None:
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def __iter__(self) -> Iterator:
        start = time.perf_counter()
        try:
            for item in self.iterable:
                yield item
                if self._bar is not None:
                    self._bar.update()
        finally:
            if self._bar is not None:
                self._bar.close()
        self.seconds = time.perf_counter() - start
        if self.enabled and self.closing_line:
            print(self.line(self.seconds), file=sys.stdout, flush=True)

    def line(self, seconds: float) -> str:
        """``search 3/20 | train 0.512 val 0.634 | 0:00:41, ETA 0:11:37``"""
        parts = [self.desc]
        if self.postfix:
            parts.append(" ".join(f"{k} {v}" for k, v in self.postfix.items()))
        parts.append(self.timing(seconds))
        return " | ".join(parts)

    def timing(self, seconds: Optional[float] = None) -> str:
        """``0:00:41, ETA 0:11:37``: the epoch's duration and the estimated time left."""
        seconds = self.seconds if seconds is None else seconds
        timing = format_duration(seconds)
        if self.epoch is not None and self.epochs is not None:
            timing += f", ETA {format_duration(seconds * max(self.epochs - self.epoch, 0))}"
        return timing

