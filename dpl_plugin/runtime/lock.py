"""One run per output folder: an exclusive lock on ``<folder>/.dpl.lock``.

Two runs writing the same folder would interleave checkpoints, searched configurations and logs.
The lock is an ``fcntl.flock`` on the file, which the kernel drops when its holder exits, however
it exits: a killed run leaves the file behind but never a stale lock. The file records who holds
it (PID, host, command, start time) so that the refusal can name the other run.

Within one process the lock is re-entrant (a trainer and the search it starts share it).
``flock`` works on local file systems and NFSv4; on file systems without locks the run goes on
without one rather than failing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Dict, Optional

from ..errors import DPLError
from . import distributed
from .safe_files import writing

LOCK_FILE = ".dpl.lock"

_HELD: Dict[str, "OutputLock"] = {}  # real path of the lock file -> the lock this process holds


class OutputLockedError(DPLError, RuntimeError):
    """Another run is writing the same output folder."""


class OutputLock:
    """``with OutputLock(folder): ...``, or :meth:`acquire` and keep it for the life of the process."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd: Optional[int] = None
        self._depth = 0

    def acquire(self) -> "OutputLock":
        if not distributed.is_main():  # several processes of one run: rank 0 writes, rank 0 locks
            return self
        with writing(self.directory):
            os.makedirs(self.directory, exist_ok=True)
        key = os.path.realpath(self.path)
        held = _HELD.get(key)
        if held is not None:  # this process holds it already: share it
            held._depth += 1
            return held
        with writing(self.path):  # O_NOFOLLOW: a link planted as the lock file is refused, never written through
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputLockedError(_refusal(self.directory, _read_holder(self.path))) from None
            return self  # no locking on this file system (e.g. ENOLCK): go on unlocked
        with writing(self.path):
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(_holder()).encode())
            os.fsync(fd)
        self._fd, self._depth = fd, 1
        _HELD[key] = self
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth == 0:
            _HELD.pop(os.path.realpath(self.path), None)
            os.close(self._fd)  # closing drops the flock; the file stays (removing it would race)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        (_HELD.get(os.path.realpath(self.path)) or self).release()


def lock_output_dir(directory: str) -> OutputLock:
    """Take the folder's lock (re-entrant within this process) or raise :class:`OutputLockedError`."""
    return OutputLock(directory).acquire()


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _read_holder(path: str) -> dict:
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW)) as f:
            return json.load(f)
    except (OSError, ValueError):  # the holder has not written it yet
        return {}


def _refusal(directory: str, holder: dict) -> str:
    who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (started {holder.get('started', '?')}: "
           f"{holder.get('command', '?')})") if holder else "another process"
    return (f"{directory} is in use by {who}. Two runs writing one output folder would overwrite each other's "
            f"checkpoints and results: wait for that run to finish (or stop it), or use another output folder")
