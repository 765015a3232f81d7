"""Pieces shared by every loop that trains prompts (the search and the train stage)."""

from __future__ import annotations

from typing import Tuple

import torch

from .errors import DPLError


class NonFiniteLossError(DPLError, FloatingPointError):
    """A loss became NaN or infinite; the message says where, and what on disk is still good."""


def default_batch(batch) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` from a tuple/list batch or a Dassl-style dict."""
    if isinstance(batch, dict):
        return batch["img"], batch["label"]
    return batch[0], batch[1]


def check_finite(loss: torch.Tensor, what: str, where: str, saved: str) -> None:
    """Stop before a NaN/inf loss poisons the prompts; ``saved`` says what on disk is intact."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(
            f"the {what} loss is {loss.item()} at {where}. Nothing was written for this epoch; "
            f"{saved} Lower the learning rate or check the data, then run again to resume."
        )


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()
