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
