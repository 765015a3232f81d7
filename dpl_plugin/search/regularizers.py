"""Terms added to the alpha step's loss (never to the prompt step's): resource-aware search.

* token cost (ProxylessNAS's ``lambda * E[latency]``): ``lambda * E[tokens]``, where
  ``E[tokens] = sum over layers and branches of sum_c softmax(alpha_l)_c * c``. It counters the
  drift towards the longest candidates and trades accuracy for compute;
* token budget: a hinge ``BUDGET_WEIGHT * max(0, E[tokens] - budget)`` that steers the search into
  the budget while it runs; :func:`~dpl_plugin.search.discretize.discretize` then picks the most
  probable configuration that respects it exactly.
"""

from __future__ import annotations

import torch

from .settings import SearchSettings
from .supernet import SupernetPromptLearner

# Per token over the budget: large next to the cross-entropy's alpha gradients (~1e-3 per logit),
# so the hinge dominates while the mixture is over budget and vanishes once it is inside.
BUDGET_WEIGHT = 0.1


def alpha_penalty(learner: SupernetPromptLearner, settings: SearchSettings) -> torch.Tensor:
    """The resource terms of the alpha loss for resolved ``settings`` (zero when both are off)."""
    if not settings.token_cost and not settings.token_budget:
        return torch.zeros((), device=learner.lengths.device)
    tokens = learner.expected_tokens()
    penalty = settings.token_cost * tokens
    if settings.token_budget:
        penalty = penalty + BUDGET_WEIGHT * torch.relu(tokens - settings.token_budget)
    return penalty


__all__ = ["BUDGET_WEIGHT", "alpha_penalty"]
