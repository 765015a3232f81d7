"""How a command-line program ends: an expected error as one message, Ctrl-C as a resumable stop.

``sys.exit(run(main))`` calls ``main()``. A :class:`~dpl_plugin.errors.DPLError` (a bad option,
missing weights or data, a checkpoint that does not match, a NaN loss) ends the program with
``error: <message>`` on stderr and exit code 1, without a traceback: the message names the problem
and the fix. Ctrl-C ends it with a line saying that the same command resumes the run, and exit code
130 (the shell's code for SIGINT). ``--debug`` or ``DPL_DEBUG=1`` adds the traceback. Any other
exception is a bug, and keeps its traceback, except an operating-system error of writing (no
permission, a read-only or full disk), which is reported as one message naming the file.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

from ..errors import DPLError
from .safe_files import environment_error

DEBUG_ENV = "DPL_DEBUG"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
RESUME_HINT = ("Interrupted. What was saved so far (search and training checkpoints) is kept: "
               "run the same command again to resume.")


def debug_requested(flag: bool = False) -> bool:
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run(main: Callable[[], object], debug: bool = False) -> int:
    """Run ``main()``; return the exit code (0, :data:`EXIT_ERROR` or :data:`EXIT_INTERRUPTED`)."""
    debug = debug_requested(debug)
    try:
        main()
    except KeyboardInterrupt:
        _report(RESUME_HINT, debug)
        return EXIT_INTERRUPTED
    except DPLError as err:
        _report(f"error: {err}", debug)
        return EXIT_ERROR
    except (OSError, RuntimeError) as err:
        expected = environment_error(err)  # a write that no module wrapped: still the disk, not a bug
        if expected is None:
            raise
        _report(f"error: {expected}", debug)
        return EXIT_ERROR
    return 0


def _report(message: str, debug: bool) -> None:
    sys.stdout.flush()  # what the run printed comes before its end
    if debug:
        traceback.print_exc()
    print(message, file=sys.stderr, flush=True)
