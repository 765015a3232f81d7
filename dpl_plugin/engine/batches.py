"""Batches as the prompt loops read them, and the accuracy they report."""

from __future__ import annotations

from typing import Tuple

import torch


def default_batch(batch) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` from a tuple/list batch or a Dassl-style dict."""
    if isinstance(batch, dict):
        return batch["img"], batch["label"]
    return batch[0], batch[1]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()
