"""Settings dataclasses checked against their own annotations when they are made.

``SearchSettings(epochs="5")`` would otherwise fail deep in a loop (``range("5")``) and
``epochs=2.5`` would run a fractional schedule; a dict given where a settings object is expected
fails with an ``AttributeError``. Here each is an :class:`~dpl_plugin.errors.ArgumentTypeError`
naming the field, the value and the expected type. Integers are accepted where floats are.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any, Optional

from .errors import ArgumentTypeError


def check_field_types(obj) -> None:
    """Raise :class:`ArgumentTypeError` for the first field of dataclass ``obj`` whose value does
    not have its annotated type (``int``, ``float``, ``bool``, ``str``, ``Optional[...]``, ``Tuple[...]``)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value, hint = getattr(obj, f.name), hints.get(f.name)
        problem = _mismatch(value, hint)
        if problem:
            key = f" ({f.metadata['key']})" if "key" in f.metadata else ""
            raise ArgumentTypeError(f"{type(obj).__name__}.{f.name}{key} must be {problem}, got "
                                    f"{type(value).__name__} {value!r:.60}")


def _mismatch(value: Any, hint) -> Optional[str]:
    """What ``value`` should be, if it is not an instance of ``hint``; None if it is (or unknown)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        problems = [_mismatch(value, a) for a in inner]
        return None if any(p is None for p in problems) else " or ".join(problems) + (
            " or None" if type(None) in args else "")
    if origin is tuple:
        if not isinstance(value, (tuple, list)) or (args and args[-1] is not Ellipsis and len(value) != len(args)):
            return f"a tuple of {len(args)} values"
        for item, item_hint in zip(value, args):
            problem = _mismatch(item, item_hint)
            if problem:
                return f"a tuple of {len(args)} values, each {problem}"
        return None
    if hint is bool:
        return None if isinstance(value, bool) else "True or False"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    return None


__all__ = ["check_field_types"]
