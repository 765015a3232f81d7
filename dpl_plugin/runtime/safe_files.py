"""Files read without running them and written without leaving the output folder.

* :func:`zip_problem`: ``torch.save`` files are zip archives with a CRC-32 per record, which
  ``torch.load`` never checks: a file with bytes flipped in place loads as finite garbage. The
  zip's own check finds the damaged record first.
* :func:`is_torchscript`: a TorchScript archive holds code (``code/``, ``constants.pkl``) that
  ``torch.jit.load`` runs; tell it apart from a plain state dict before anything loads it.
* :func:`open_new_file`: create a file for writing with ``O_NOFOLLOW``, so that a symbolic link
  planted where the file goes (e.g. by someone else with write access to a shared folder) is
  refused instead of followed out of the folder.
* :class:`UnwritableOutputError` and :func:`writing`: an operating-system error while writing
  (permissions, a read-only or full disk, a file size limit) as one message naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import zipfile
from typing import Optional, Union

from ..errors import DPLError

_FIXES = {
    errno.EACCES: "make it writable, or choose another output folder",
    errno.EPERM: "make it writable, or choose another output folder",
    errno.EROFS: "the file system is read-only: choose another output folder",
    errno.ENOSPC: "the disk is full: free space",
    errno.EDQUOT: "the disk quota is used up: free space",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f): raise the limit or free space",
    errno.ENOTDIR: "a file stands where a folder of the path should be: move it away, or choose another output folder",
    errno.EEXIST: "a file stands where a folder of the path should be: move it away, or choose another output folder",
    errno.ELOOP: "it is a symbolic link: remove the link (output files are never written through links)",
}
RESUME = "What was written before is kept: run the same command again to resume"


class UnwritableOutputError(DPLError, OSError):
    """A file of a run's output cannot be written (permissions, disk full, a symbolic link)."""


class SymlinkRefusedError(UnwritableOutputError):
    """A file a run would write is a symbolic link."""


def write_error(err: OSError, path: Optional[str] = None) -> UnwritableOutputError:
    """``err`` (raised while writing ``path``) as one message naming the file and the fix."""
    path = path or err.filename or "(an output file)"
    fix = _FIXES.get(err.errno, "check the folder's permissions and free space")
    return UnwritableOutputError(f"cannot write {path} ({err.strerror or err}): {fix}. {RESUME}")


@contextlib.contextmanager
def writing(path: str):
    """Within: an ``OSError`` of writing (permissions, read-only or full disk, a file size limit, a
    link), also one that ``torch.save`` wraps in a ``RuntimeError``, is re-raised as
    :class:`UnwritableOutputError` naming ``path``."""
    try:
        yield
    except UnwritableOutputError:
        raise
    except (OSError, RuntimeError) as err:
        cause = _os_error(err)
        if cause is None:
            raise
        raise write_error(cause, path) from err


def environment_error(err: BaseException) -> Optional[UnwritableOutputError]:
    """``err`` as an :class:`UnwritableOutputError` if a write error (permissions, space) is behind it."""
    cause = _os_error(err)
    return None if cause is None else write_error(cause)


def _os_error(err: BaseException) -> Optional[OSError]:
    """The write error behind ``err`` (itself, or the one it was raised from or during), if any."""
    seen = 0
    while err is not None and seen < 5:
        if isinstance(err, OSError) and err.errno in _FIXES:
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def open_new_file(path: str, mode: str = "w", exclusive: bool = False):
    """``open(path, mode)`` for writing, refusing a symbolic link at ``path`` (dangling or not)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_EXCL if exclusive else os.O_TRUNC)
    if "a" in mode:
        flags = (flags & ~os.O_TRUNC) | os.O_APPEND
    with writing(path):
        if os.path.islink(path):
            raise SymlinkRefusedError(f"{path} is a symbolic link (to {os.readlink(path)}): output files are never "
                                      f"written through links. Remove the link, or choose another output folder")
        fd = os.open(path, flags, 0o666)
        return os.fdopen(fd, mode)


def zip_problem(source: Union[str, bytes]) -> Optional[str]:
    """What is damaged in a zip archive (a ``torch.save`` file), or None if it is intact or no zip."""
    data = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    if not zipfile.is_zipfile(data):
        return None
    try:
        with zipfile.ZipFile(data) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        return f"its zip structure is damaged ({err})"
    return f"its record '{bad}' fails the zip archive's CRC check" if bad else None


def is_torchscript(source: Union[str, bytes]) -> bool:
    """True for a TorchScript archive (``torch.jit.save``), which holds code as well as tensors."""
    data = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    if not zipfile.is_zipfile(data):
        return False
    with contextlib.suppress(zipfile.BadZipFile, OSError):
        with zipfile.ZipFile(data) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    return False


__all__ = ["SymlinkRefusedError", "UnwritableOutputError", "environment_error", "is_torchscript", "open_new_file", "write_error",
           "writing", "zip_problem"]
