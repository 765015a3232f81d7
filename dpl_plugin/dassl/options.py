"""Config files, ``KEY VALUE`` options and names merged into a yacs config, with errors a user can act on.

yacs answers a misspelt key with a bare ``KeyError``/``AssertionError`` and a value of the wrong
type with a ``ValueError`` deep in a traceback. Here each becomes an :class:`OptionError` that
names the file or option, the key, and the fix: the closest existing key, or the expected type.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Iterable, List, Optional, Sequence

import yaml
from yacs.config import CfgNode

from ..errors import OptionError

YAML_EXTENSIONS = ("", ".yaml", ".yml")  # yacs reads a file without extension as YAML
_UNKNOWN_KEY = re.compile(r"Non-existent (?:config )?key: (\S+)")
_TYPE_MISMATCH = re.compile(r"Type mismatch \((.+) vs\. (.+)\) with values \((.*) vs\. (.*)\) for config key: (\S+)")


def config_keys(cfg: CfgNode, prefix: str = "") -> List[str]:
    """Every key of ``cfg`` in dotted form, nodes and leaves (``TRAINER``, ``TRAINER.DPL.MODE``, ...)."""
    keys = []
    for key, value in cfg.items():
        full = prefix + key
        keys.append(full)
        if isinstance(value, CfgNode):
            keys.extend(config_keys(value, full + "."))
    return keys


def closest_key(key: str, cfg: CfgNode) -> Optional[str]:
    """The existing key most like ``key``: same depth first (a typo in one part), then any."""
    keys = config_keys(cfg)
    same_depth = [k for k in keys if k.count(".") == key.count(".")]
    for candidates in (same_depth, keys):
        found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        if found:
            return found[0]
    return None


def unknown_key_error(key: str, cfg: CfgNode, source: str) -> OptionError:
    near = closest_key(key, cfg)
    hint = f"did you mean {near}?" if near else "check its spelling against the config files in configs/"
    return OptionError(f"{source}: {key} is not a config key: {hint}")


def _translate(err: Exception, cfg: CfgNode, source: str) -> Optional[OptionError]:
    message = str(err.args[0]) if err.args else str(err)
    unknown = _UNKNOWN_KEY.search(message)
    if unknown:
        return unknown_key_error(unknown.group(1), cfg, source)
    mismatch = _TYPE_MISMATCH.search(message)
    if mismatch:
        expected, _, default, value, key = mismatch.groups()
        kind = re.sub(r"<class '(.+)'>", r"\1", expected)
        return OptionError(f"{source}: {key} takes a value of type {kind} (like its default {default}), got {value}")
    return None


def merge_file(cfg: CfgNode, path: str, option: str = "--config-file") -> None:
    """``cfg.merge_from_file(path)``; a missing file, bad YAML or an unknown key is an :class:`OptionError`.
    YAML only: yacs would also execute a ``.py`` config file, and a config file is data, not code."""
    if not os.path.isfile(path):
        raise OptionError(f"{option} {path}: no such file")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".py":
        raise OptionError(f"{option} {path}: Python config files are not accepted (yacs would run the code in "
                          f"them): write the settings as a .yaml file")
    if extension not in YAML_EXTENSIONS:
        raise OptionError(f"{option} {path}: not a YAML config file (expected {' or '.join(YAML_EXTENSIONS[1:])}): "
                          f"rename it, or write its settings as YAML")
    try:
        cfg.merge_from_file(path)
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise OptionError(f"{option} {path} is not valid YAML: {detail}") from None
    except (KeyError, ValueError, AssertionError) as err:
        translated = _translate(err, cfg, f"{option} {path}")
        if translated is None:
            raise
        raise translated from None


def merge_options(cfg: CfgNode, opts: Sequence[str]) -> None:
    """``cfg.merge_from_list(opts)`` (trailing ``KEY VALUE`` pairs) with the same errors."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise OptionError(f"the trailing options must be KEY VALUE pairs, got an odd number ({len(opts)}): "
                          f"{' '.join(opts)} (quote a value that has spaces)")
    for key, value in zip(opts[0::2], opts[1::2]):
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, ValueError, AssertionError) as err:
            translated = _translate(err, cfg, f"option {key} {value}")
            if translated is None:
                raise
            raise translated from None


def check_registered(name: str, registered: Iterable[str], what: str, option: str) -> None:
    """``name`` is one of ``registered`` (a Dassl registry's names), else an error with the closest one."""
    registered = sorted(registered)
    if name in registered:
        return
    near = difflib.get_close_matches(name, registered, n=1, cutoff=0.5)
    hint = f"did you mean {near[0]}?" if near else f"choose one of {', '.join(registered)}"
    given = f"'{name}' is not a known {what}" if name else f"no {what} given"
    raise OptionError(f"{option}: {given}: {hint}")
