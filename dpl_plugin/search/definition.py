"""Whether a search on disk is the search a run asks for.

A *search definition* is a flat, plain dict ``{key: value}`` of everything that changes what a
search finds (data, seed, backbone, design, candidates, every search and optimizer setting), keyed
as the user sets it (e.g. ``TRAINER.DPL.CANDIDATES``). It is recorded in the searched
configuration's provenance (``provenance["definition"]``) and beside an unfinished search
(``definition.json``); a run reuses or resumes a search only when its own definition is the same.

The one key compared differently is the epoch count (:data:`EPOCHS`):

* more epochs than the search on disk: the search is resumed from its checkpoint and extended;
* fewer epochs than a *finished* search: refused. A shorter search is a different search (its
  schedule ends earlier), and cutting the finished one's history would not reproduce it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional

from ..errors import DPLError
from ..runtime import distributed
from ..runtime.atomic import atomic_write

DEFINITION_FILE = "definition.json"
PROVENANCE_KEY = "definition"
EPOCHS = "EPOCHS"  # compared by suffix, so both "TRAINER.DPL.SEARCH.EPOCHS" and "EPOCHS" qualify


class SearchDefinitionMismatchError(DPLError, ValueError):
    """A search on disk was made with other settings than the ones this run asks for."""


def plain(value: Any) -> Any:
    """``value`` as JSON and YAML read it back: mappings as dicts, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def flatten(node: Mapping, prefix: str = "", skip: tuple = ()) -> Dict[str, Any]:
    """``{"PREFIX.KEY.SUB": value}`` for every leaf of a nested mapping (e.g. a yacs node), but ``skip``."""
    out: Dict[str, Any] = {}
    for key, value in node.items():
        if key in skip:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = plain(value)
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """``"key: old -> new"`` for every key (except the epoch count) whose value differs. A search
    option added later and missing from one side counts as the value searches ran with before it
    existed (its ``legacy`` value), so a search recorded by an older dpl-plugin stays reusable."""
    lines = []
    for key in sorted(set(old) | set(new)):
        if _is_epochs(key):
            continue
        before, after = old.get(key, _absent(key)), new.get(key, _absent(key))
        if plain(before) != plain(after):
            lines.append(f"{key}: {before!r} -> {after!r}")
    return lines


def check_finished(recorded: Optional[Mapping[str, Any]], current: Mapping[str, Any], path: str) -> bool:
    """For a finished search at ``path``: True to reuse it, False to resume and extend it (more
    epochs asked for); raise if it is another search."""
    folder = os.path.dirname(path)
    if recorded is None:
        raise SearchDefinitionMismatchError(
            f"{path} records no search definition (it was written by an older dpl-plugin or by hand), so "
            f"whether it is the search this run asks for cannot be told. {_start_over(folder)}; or train it "
            f"as it is with TRAINER.DPL.MODE train TRAINER.DPL.CONFIG_FILE {path}")
    _raise_on_differences(recorded, current, f"the finished search {path}", folder)
    done, asked = _epochs(recorded), _epochs(current)
    if done is not None and asked is not None and asked < done:
        raise SearchDefinitionMismatchError(
            f"the finished search {path} ran {done} epochs, but this run asks for {asked} (EPOCHS: {done} -> "
            f"{asked}). A shorter search is not a cut of a longer one: set EPOCHS {done} to reuse it; "
            f"{_start_over(folder).lower()}")
    return asked == done


def check_unfinished(folder: str, current: Mapping[str, Any], resuming: bool) -> None:
    """Before a search starts (or, ``resuming``, continues from its checkpoint) in ``folder``: raise
    if the definition recorded there by the interrupted search differs from ``current``; then
    record ``current``. A checkpoint without a recorded definition (older dpl-plugin) is resumed."""
    recorded = read_recorded(folder) if resuming else None
    if recorded is not None:
        _raise_on_differences(recorded, current, f"the interrupted search in {folder}", folder)
    if distributed.is_main():  # several processes: rank 0 writes
        with atomic_write(os.path.join(folder, DEFINITION_FILE), "w") as f:
            json.dump(plain(current), f, indent=1, sort_keys=True)


def read_recorded(folder: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(folder, DEFINITION_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        recorded = err
    if not isinstance(recorded, dict):
        raise SearchDefinitionMismatchError(
            f"{path} is damaged ({recorded}), so whether the interrupted search beside it is the one this run asks "
            f"for cannot be told. If this run's settings are the ones it was started with, delete {path} and run "
            f"again: the search resumes from its checkpoint. {_start_over(folder)}")
    return recorded


def _raise_on_differences(recorded: Mapping[str, Any], current: Mapping[str, Any], what: str, folder: str):
    changed = differences(recorded, current)
    if changed:
        raise SearchDefinitionMismatchError(
            f"{what} was made with other settings than this run's ({'; '.join(changed)}). Its result would "
            f"not be the search asked for. {_start_over(folder)}; to reuse it, set the old values again")


def _start_over(folder: str) -> str:
    return f"To search again, delete {folder} or use another output directory"


_SEARCH_SCOPES = ("", "settings", "TRAINER.DPL.SEARCH")  # the API's definition, a checkpoint's, the Dassl run's


def _absent(key: str) -> Any:
    """What a definition without ``key`` ran with: a search option's legacy value, else unset."""
    from .settings import LEGACY_VALUES  # settings imports this module

    scope, _, name = key.rpartition(".")
    if scope in _SEARCH_SCOPES and name.upper() in LEGACY_VALUES:
        return LEGACY_VALUES[name.upper()]
    return "(unset)"


def _is_epochs(key: str) -> bool:
    return key == EPOCHS or key.endswith("." + EPOCHS)


def _epochs(definition: Mapping[str, Any]) -> Optional[int]:
    return next((v for k, v in definition.items() if _is_epochs(k)), None)


__all__ = ["DEFINITION_FILE", "PROVENANCE_KEY", "SearchDefinitionMismatchError", "check_finished",
           "check_unfinished", "differences", "flatten", "plain", "read_recorded"]
