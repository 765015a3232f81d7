"""The search definition of a plain-PyTorch search (:func:`~dpl_plugin.search.stage.search_prompt_lengths`).

As on the Dassl path (:mod:`dpl_plugin.search.definition`), a folder's finished or interrupted
search is reused only when it is the search asked for: same class names, data, backbone, design,
candidates, learning rate and search settings. The plain API takes any iterables of
``(images, labels)``, so the data enter as a fingerprint: the number of batches and a SHA-256 of
each loader's first batch, drawn under a fixed random seed (a shuffled loader gives the same first
batch for the same data) without touching the caller's random state.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, Iterable, Mapping, Sequence

import torch

from ..engine.batches import default_batch
from .definition import plain

FINGERPRINT_SEED = 0


def data_fingerprint(loader: Iterable, batch_fn=default_batch) -> Dict[str, Any]:
    """``{"batches": len or None, "first_batch_sha256": hex}`` of a re-iterable loader."""
    digest = hashlib.sha256()
    own = [g for g in (getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None))
           if isinstance(g, torch.Generator)]  # a loader's own generators: left as they were, too
    saved = [g.get_state() for g in own]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FINGERPRINT_SEED)
        for g in own:
            g.manual_seed(FINGERPRINT_SEED)
        for batch in loader:
            for tensor in batch_fn(batch):
                _update(digest, tensor)
            break
    for g, state in zip(own, saved):
        g.set_state(state)
    return {"batches": len(loader) if hasattr(loader, "__len__") else None,
            "first_batch_sha256": digest.hexdigest()}


def backbone_fingerprint(clip_model) -> str:
    """SHA-256 of the output projections, which differ between any two differently trained CLIPs."""
    digest = hashlib.sha256()
    for name in ("text_projection", "visual.proj"):
        tensor = dict(clip_model.named_parameters()).get(name)
        if tensor is None:
            tensor = dict(clip_model.named_buffers()).get(name)
        if tensor is not None:
            _update(digest, tensor)
    return digest.hexdigest()


def api_definition(clip_model, classnames: Sequence[str], train_loader: Iterable, val_loader: Iterable,
                   design: str, candidates: Iterable[int], settings_definition: Mapping[str, Any],
                   epochs: int, lr: float, supernet_kwargs: Mapping[str, Any], batch_fn=default_batch
                   ) -> Dict[str, Any]:
    """``{key: value}`` of everything that changes what a plain-API search finds."""
    return {
        "design": design,
        "classnames": list(classnames),
        "candidates": sorted(set(int(c) for c in candidates)),
        "lr": float(lr),
        "EPOCHS": int(epochs),  # compared as the Dassl path's: more epochs resume a finished search
        "backbone": backbone_fingerprint(clip_model),
        "train_data": data_fingerprint(train_loader, batch_fn),
        "val_data": data_fingerprint(val_loader, batch_fn),
        "supernet": {str(k): _describe(v) for k, v in supernet_kwargs.items()},
        **{f"settings.{k}": v for k, v in plain(dict(settings_definition)).items()},
    }


def _update(digest, value: Any) -> None:
    if torch.is_tensor(value):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    else:
        digest.update(repr(value).encode())


def _describe(value: Any) -> Any:
    plain_value = plain(value)
    return plain_value if isinstance(plain_value, (str, int, float, bool, list, dict, type(None))) else repr(value)


__all__ = ["api_definition", "backbone_fingerprint", "data_fingerprint"]
