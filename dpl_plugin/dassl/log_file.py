"""``log.txt``: Dassl's copy of everything a run prints, written safely.

As Dassl's ``setup_logger``: stdout is teed into ``<output>/log.txt`` (``log.txt-<time>`` when one
exists already). Unlike it, the file is created with ``O_NOFOLLOW | O_EXCL`` (a symbolic link
planted as ``log.txt`` is refused, never followed out of the folder), only after the run holds the
folder's lock (a refused second run writes nothing into the running one's folder), and a failing
write (a full disk) stops the copy with one warning instead of ending the run in ``print``: the
checkpoint writes that follow report the disk as the error.
"""

from __future__ import annotations

import os
import sys
import time

from dassl.utils.logger import Logger

from ..runtime.lock import lock_output_dir
from ..runtime.safe_files import open_new_file, writing

LOG_FILE = "log.txt"


class SafeLogger(Logger):
    """Dassl's stdout tee into an already opened file, which stops (with one warning) when writing fails."""

    def __init__(self, file, path: str):
        self.console, self.file, self.path = sys.stdout, file, path

    def write(self, msg):
        self.console.write(msg)
        if self.file is not None:
            try:
                self.file.write(msg)
            except OSError as err:
                self._stop(err)

    def flush(self):
        self.console.flush()
        if self.file is not None:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
            except OSError as err:
                self._stop(err)

    def close(self):  # the file only: Dassl's closes the console (sys.stdout) too
        if self.file is not None:
            file, self.file = self.file, None
            file.close()

    def _stop(self, err: OSError) -> None:
        file, self.file = self.file, None
        try:
            file.close()
        except OSError:
            pass
        self.console.write(f"Warning: cannot write {self.path} ({err.strerror or err}); the log goes on in the "
                           f"terminal only\n")


def setup_log_file(output_dir: str) -> str:
    """Lock ``output_dir`` for this process, then tee stdout into a new log file there; return its path."""
    lock_output_dir(output_dir)
    path = os.path.join(output_dir, LOG_FILE)
    if os.path.lexists(path):  # Dassl's convention: never overwrite an earlier run's log
        path += time.strftime("-%Y-%m-%d-%H-%M-%S")
    with writing(path):
        file = open_new_file(path, "w", exclusive=True)
    sys.stdout = SafeLogger(file, path)
    return path
