"""Regularisers of the search: terms of the alpha step's loss, and noise on alpha in the prompt step.

Alpha-loss terms (never in the prompt step's loss), resource-aware search:

* token cost (ProxylessNAS's ``lambda * E[latency]``): ``lambda * E[tokens]``, where
  ``E[tokens] = sum over layers and branches of sum_c softmax(alpha_l)_c * c``. It counters the
  drift towards the longest candidates and trades accuracy for compute;
* token budget: a hinge ``BUDGET_WEIGHT * max(0, E[tokens] - budget)`` that steers the search into
  the budget while it runs; :func:`~dpl_plugin.search.discretize.discretize` then picks the most
  probable configuration that respects it exactly;
* beta-DARTS (Ye et al., CVPR 2022): ``lambda(t) * mean over layers of logsumexp(alpha_l)``, lambda
  rising linearly from 0 (their code: 50 * epoch / 100); its gradient ``softmax(alpha_l) / n``
  keeps the logits from running away, so the supernet does not settle on a sharp, early favourite.

In the prompt step, SDARTS-RS (Chen & Hsieh, ICML 2020): alpha perturbed by uniform noise in
``[-eps, eps]`` while the candidate prompts learn, which trains them for a neighbourhood of the
current mixture (a smoother validation loss in alpha) instead of for that mixture alone.
"""

from __future__ import annotations

import torch

import contextlib

from .settings import SearchSettings, alpha_noise_at, beta_decay_at
from .supernet import SupernetPromptLearner

# Per token over the budget: large next to the cross-entropy's alpha gradients (~1e-3 per logit),
# so the hinge dominates while the mixture is over budget and vanishes once it is inside.
BUDGET_WEIGHT = 0.1


def alpha_penalty(learner: SupernetPromptLearner, settings: SearchSettings, epoch: int = 0) -> torch.Tensor:
    """The regularising terms of the alpha loss in (0-based) ``epoch`` for resolved ``settings``
    (zero when all are off)."""
    penalty = torch.zeros((), device=learner.lengths.device)
    if settings.token_cost or settings.token_budget:
        tokens = learner.expected_tokens()
        penalty = penalty + settings.token_cost * tokens
        if settings.token_budget:
            penalty = penalty + BUDGET_WEIGHT * torch.relu(tokens - settings.token_budget)
    weight = beta_decay_at(settings, epoch)
    if weight:
        rows = torch.cat([torch.logsumexp(t, dim=-1) for t in learner.alpha.tables.values()])
        penalty = penalty + weight * rows.mean()
    return penalty


@contextlib.contextmanager
def alpha_noise(learner: SupernetPromptLearner, settings: SearchSettings, epoch: int):
    """Within the block, alpha plus uniform noise of the epoch's epsilon (nothing when off); alpha is
    restored bit for bit afterwards. Draws from the global generator (resumed with the checkpoint)."""
    eps = alpha_noise_at(settings, epoch)
    if not eps:
        yield
        return
    tables = list(learner.alpha.tables.values())
    saved = [t.detach().clone() for t in tables]
    with torch.no_grad():
        for t in tables:
            t.add_(torch.empty_like(t).uniform_(-eps, eps))
    try:
        yield
    finally:
        with torch.no_grad():
            for t, s in zip(tables, saved):
                t.copy_(s)


__all__ = ["BUDGET_WEIGHT", "alpha_noise", "alpha_penalty"]
