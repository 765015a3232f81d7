"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

Used for everything a long run writes (searched configurations, checkpoints, histories), so that
an interruption or a crash loses nothing that was already on disk. Files get the permissions that
``open()`` would give them (0666 less the umask), not the owner-only 0600 of a temporary file: on a
shared cluster, results are as readable as the logs beside them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from .safe_files import writing


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only set it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step (a link at
    ``path`` is replaced, never followed). A write that fails for want of permission or space is an
    :class:`~dpl_plugin.runtime.safe_files.UnwritableOutputError` naming ``path``; ``path`` is left as it was."""
    with writing(path):
        with _atomic_write(path, mode) as f:
            yield f


@contextlib.contextmanager
def _atomic_write(path: str, mode: str):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
