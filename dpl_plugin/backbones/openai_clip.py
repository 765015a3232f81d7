"""Loading openai ``clip`` models.

Weights come from the installed ``clip`` package's model definitions: by name through clip's own
cache (``~/.cache/clip``) and download, or from a local file holding either a TorchScript archive
or a plain state dict (optionally gzip-compressed). Nothing about widths, depths or head counts is
assumed: :class:`~.spec.BackboneSpec` reads them off the loaded model.
"""

from __future__ import annotations

import gzip
import io
import os
import socket
import urllib.error
import warnings
import zlib
from typing import Optional, Union

import torch

from ..errors import DPLError, require_instance
from ..runtime.safe_files import is_torchscript, zip_problem
from .clip_package import clip_api, clip_model_module
from .interface import CorruptWeightsError, WeightsNotFoundError
from .weights_check import checksum_problem, file_sha256, state_dict_problem, url_sha256
from .weights_check import published_sha256

DEFAULT_CACHE = os.path.expanduser("~/.cache/clip")
# Weights shipped inside this package, usable offline by name (see dpl_plugin/demo).
BUILTIN_WEIGHTS = {"dpl-demo": os.path.join(os.path.dirname(os.path.dirname(__file__)), "demo", "weights",
                                            "demo_clip.pt.gz")}
PRECISIONS = ("fp32", "fp16", "amp")
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download gives up


class UntrustedWeightsError(DPLError, ValueError):
    """A TorchScript archive that is not one of clip's published models: loading it would run its code."""


def _cache_path(name: str, download_root: Optional[str]) -> tuple[str, str, str]:
    url = clip_api._MODELS[name]
    root = download_root or DEFAULT_CACHE
    return url, os.path.join(root, os.path.basename(url)), url_sha256(url)


def resolve_weights(name_or_path: str, download_root: Optional[str] = None) -> str:
    """Return a local file holding the weights, downloading a named model into clip's cache if needed.

    Set ``DPL_OFFLINE=1`` to never attempt a download (clusters without internet).
    """
    if os.path.isfile(name_or_path):
        return name_or_path
    if name_or_path in BUILTIN_WEIGHTS:
        path = BUILTIN_WEIGHTS[name_or_path]
        if not os.path.isfile(path):
            raise WeightsNotFoundError(f"the built-in weights '{name_or_path}' should be at {path}, which is "
                                       f"missing: reinstall dpl-plugin")
        return path
    if name_or_path not in clip_api._MODELS:
        raise WeightsNotFoundError(
            f"CLIP weights '{name_or_path}' not found: it is neither an existing file nor one of "
            f"clip's model names {clip_api.available_models()} or {sorted(BUILTIN_WEIGHTS)}. Pass a "
            f"model name or the path to a .pt file (TorchScript archive or state dict)."
        )
    url, target, expected_sha = _cache_path(name_or_path, download_root)
    if os.path.isfile(target):
        if file_sha256(target) == expected_sha:
            return target
        raise CorruptWeightsError(
            f"{target} exists but its SHA256 does not match clip's published checksum for "
            f"'{name_or_path}' (a partial or corrupt download). Delete it and retry, or download "
            f"{url} again on a machine with internet and copy it to {target}."
        )
    if os.environ.get("DPL_OFFLINE", "0") not in ("", "0"):
        raise WeightsNotFoundError(
            f"CLIP weights '{name_or_path}' are not in the cache and DPL_OFFLINE is set. Expected "
            f"file: {target}. Download {url} on a machine with internet and copy it there, or pass "
            f"the path of a local weights file."
        )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # clip's downloader has none: never hang offline
    try:
        return clip_api._download(url, os.path.dirname(target))
    except (urllib.error.URLError, OSError) as err:
        if os.path.isfile(target) and file_sha256(target) != expected_sha:
            os.remove(target)  # never leave a partial file that looks like a cached model
        raise WeightsNotFoundError(
            f"CLIP weights '{name_or_path}' are not in the cache and could not be downloaded "
            f"({err}). Expected file: {target}. Download {url} on a machine with internet and "
            f"copy it there (or set the download root), or pass the path of a local weights file."
        ) from err
    finally:
        socket.setdefaulttimeout(previous)


def _read_state_dict(path: str, verify_checksum: bool = True, trust_torchscript: bool = False) -> dict:
    """The state dict in ``path``. TorchScript (which runs code as it loads) only for a file whose
    SHA-256 is clip's published one (``trust_torchscript``: any); everything else ``weights_only``."""
    with open(path, "rb") as f:
        raw = f.read()
    problem = checksum_problem(path, raw) if verify_checksum else None
    if problem:
        raise CorruptWeightsError(problem)
    if raw[:2] == b"\x1f\x8b":  # gzip: small shipped checkpoints are stored compressed
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise CorruptWeightsError(f"{path} looks gzip-compressed but cannot be decompressed ({err}): "
                                      f"the file is truncated or corrupt; re-download or re-export it") from err
    damaged = zip_problem(raw)
    if damaged:
        raise CorruptWeightsError(f"{path} is corrupt: {damaged} (damaged on disk or in transfer). Re-download or "
                                  f"re-export it")
    if is_torchscript(raw):
        published = not verify_checksum or published_sha256(path) is not None  # then checked: clip's own file
        if not (published or trust_torchscript):
            raise UntrustedWeightsError(
                f"{path} is a TorchScript archive, and loading one runs the code it holds; only clip's published "
                f"models (verified by their SHA-256) are loaded as TorchScript. If you trust this file, pass "
                f"load_clip(..., trust_torchscript=True), or convert it once to a state dict: "
                f"torch.save(torch.jit.load(path).state_dict(), 'weights.pt')")
        with warnings.catch_warnings():  # OpenAI ships TorchScript archives; torch now frowns on them
            warnings.simplefilter("ignore", FutureWarning)
            try:
                return torch.jit.load(io.BytesIO(raw), map_location="cpu").state_dict()
            except Exception as err:
                raise CorruptWeightsError(f"cannot read the TorchScript archive {path}: {err}. Re-download it") from err
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CorruptWeightsError(
            f"cannot read CLIP weights from {path}: the file is truncated, corrupt, or not a CLIP "
            f"checkpoint. Re-download or re-export it. Details: {err}"
        ) from err
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "token_embedding.weight" not in obj:
        raise CorruptWeightsError(
            f"{path} is readable but holds no CLIP state dict (no 'token_embedding.weight' key)."
        )
    return obj


def load_clip(
    name_or_path: str,
    device: Union[str, torch.device] = "cpu",
    precision: str = "fp32",
    download_root: Optional[str] = None,
    trust_torchscript: bool = False,
) -> "clip_model_module.CLIP":
    """Build a frozen, eval-mode CLIP from a model name or a local weights file.

    ``precision``: ``fp32`` (always on CPU), ``fp16`` (CLIP's half weights, GPU only) or ``amp``
    (fp32 weights, autocast at run time). fp16 on CPU falls back to fp32 with a warning.
    TorchScript archives are loaded only for clip's published models (checksum verified) or with
    ``trust_torchscript=True``: loading one runs the code it holds.
    """
    require_instance(name_or_path, (str, os.PathLike), "load_clip's name_or_path",
                     f"one of clip's model names {clip_api.available_models()} or the path of a weights file")
    name_or_path = os.fspath(name_or_path)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    device = torch.device(device)
    path = resolve_weights(name_or_path, download_root)
    state_dict = _read_state_dict(path, verify_checksum=name_or_path not in clip_api._MODELS,  # else done
                                  trust_torchscript=trust_torchscript)
    problem = state_dict_problem(state_dict, path)  # shapes and values, before build_model trusts them
    if problem:
        raise CorruptWeightsError(problem)
    try:
        model = clip_model_module.build_model(state_dict)
    except (KeyError, RuntimeError, AssertionError) as err:
        raise CorruptWeightsError(f"{path} holds an incomplete or mismatched CLIP state dict: {err}") from err
    if precision == "fp16" and device.type == "cpu":
        warnings.warn("fp16 is not supported on CPU; using fp32", stacklevel=2)
        precision = "fp32"
    if precision != "fp16":
        model.float()
    model = model.to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model
