"""The errors a user can run into and fix, under one base class.

Every expected error (a bad option, missing or corrupt weights, data or checkpoints, a resume that
does not match, a NaN loss) derives from :class:`DPLError`, and its message names the problem and
the fix. Command-line programs end on one with that message alone (:mod:`dpl_plugin.runtime.cli`);
anything else is a bug and keeps its traceback. Each error class also keeps a built-in base
(``ValueError``, ``FileNotFoundError``, ...), so that ``except`` clauses written for those still work.
"""


class DPLError(Exception):
    """An expected error: its message says what is wrong and what to do about it."""


class OptionError(DPLError, ValueError):
    """A configuration option (a config file, a ``KEY VALUE`` option, a command-line flag) that cannot be used."""


class NonFiniteLossError(DPLError, FloatingPointError):
    """A loss became NaN or infinite; the message says where, and what on disk is still good."""


class NonFiniteLogitsError(NonFiniteLossError):
    """An evaluation met NaN or infinite logits (NaN inputs or diverged prompts)."""


class ArgumentTypeError(DPLError, TypeError):
    """An API argument of the wrong kind (a dict where an object is expected, one string where a list is)."""


def require_instance(value, expected, what: str, fix: str = ""):
    """``value`` if it is an instance of ``expected`` (a class or tuple of classes), else raise
    :class:`ArgumentTypeError` naming ``what``, the type given and ``fix``."""
    if isinstance(value, expected):
        return value
    names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
    raise ArgumentTypeError(f"{what} must be a {names}, got {type(value).__name__} {value!r:.80}"
                            + (f": {fix}" if fix else ""))
