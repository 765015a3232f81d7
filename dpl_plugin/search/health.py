"""Is ``alpha`` still learning? Checked after every search epoch, before its checkpoint is written.

Adam moves each logit by about ``alpha_lr`` per step, so with the recipe's 3.5e-3 reaching a
probability within ``1e-6`` of 1 (a logit gap of about 15 among 7 candidates) takes thousands of
steps. Saturation within the first :data:`FAST_STEPS` alpha steps therefore means the learning
rate is absurd: the choice was made by a few noisy steps and is then frozen (softmax gradients
vanish), yet it would be reported "with confidence 1.0". Non-finite logits are always an error.
"""

from __future__ import annotations

import torch

from ..engine.optim import RECIPE_LR
from ..errors import DPLError

SATURATED = 1e-6  # a top probability within this of 1 is saturated
FAST_STEPS = 1000  # saturating within this many alpha steps is not learning
LR_KEY = "ALPHA_LR (TRAINER.DPL.SEARCH.ALPHA_LR, or SearchSettings.alpha_lr)"


class UnhealthyAlphaError(DPLError, RuntimeError):
    """``alpha`` is NaN/inf, or saturated after too few steps to have learned anything."""


def check_alpha(learner, alpha_optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`UnhealthyAlphaError` naming the table, the layer and ALPHA_LR if ``learner``'s
    architecture logits are non-finite or saturated after fewer than :data:`FAST_STEPS` steps."""
    steps = _steps(alpha_optimizer)
    lr = alpha_optimizer.param_groups[0]["lr"]
    for key, logits in learner.alpha.tables.items():
        logits = logits.detach().float()
        if not torch.isfinite(logits).all():
            raise UnhealthyAlphaError(
                f"alpha ({key} table) holds NaN or infinite logits after {steps} alpha steps: the search cannot "
                f"choose lengths from them. {LR_KEY} {lr:g} is likely too large: lower it and search again from "
                f"the start (delete the search's checkpoint)")
        top = torch.softmax(logits, dim=-1).max(dim=-1)
        layer = int(top.values.argmax())
        if steps < FAST_STEPS and float(1 - top.values[layer]) < SATURATED:
            chosen = learner.candidates[int(top.indices[layer])]
            raise UnhealthyAlphaError(
                f"alpha saturated after only {steps} alpha steps: {key} layer {layer} gives length {chosen} "
                f"probability {float(top.values[layer]):.7f} (logits up to {float(logits.abs().max()):.3g}). "
                f"A choice made this fast comes from a few noisy steps, not from learning, and can no longer "
                f"change. {LR_KEY} {lr:g} is far too large (the recipe's is {RECIPE_LR:g}): lower it and search "
                f"again from the start (delete the search's checkpoint)")


def _steps(optimizer: torch.optim.Optimizer) -> int:
    """Steps the alpha optimizer has taken (Adam keeps the count per parameter)."""
    counts = [int(state["step"]) for state in optimizer.state.values() if "step" in state]
    return max(counts, default=0)
