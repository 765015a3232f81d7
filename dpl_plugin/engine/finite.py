"""NaN/inf guards shared by every loop that trains or evaluates prompts (search and train stage)."""

from __future__ import annotations

import torch

from ..errors import NonFiniteLogitsError, NonFiniteLossError
from ..runtime import distributed


def check_finite(loss: torch.Tensor, what: str, where: str, saved: str) -> None:
    """Stop before a NaN/inf loss poisons the prompts; ``saved`` says what on disk is intact.
    With several processes all of them decide together, so that all stop."""
    if not distributed.all_finite(loss):
        value = loss.item() if not torch.isfinite(loss) else "finite here but not in another process"
        raise NonFiniteLossError(
            f"the {what} loss is {value} at {where}. Nothing was written for this epoch; "
            f"{saved} Lower the learning rate or check the data, then run again to resume."
        )


def check_finite_logits(logits: torch.Tensor, where: str) -> None:
    """An accuracy computed from NaN/inf logits is meaningless (argmax of NaN is arbitrary): refuse it."""
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(dim=-1).sum())
        raise NonFiniteLogitsError(
            f"the model's logits are NaN or infinite for {bad} of {logits.shape[0]} images at {where}: no accuracy "
            f"can be computed. Check the images for NaN/inf values and the prompts for divergence (a NaN "
            f"training loss stops training earlier)")
