"""The architect: ``alpha``'s optimizer and its steps (the role of DARTS's ``cnn/architect.py``).

* first order (the official DPL code): the gradient of the validation loss (plus the alpha-only
  penalty) for ``alpha`` alone, one Adam step;
* second order (DARTS, Liu et al. 2019, eq. 7): the validation loss at the unrolled prompts
  ``w' = w - xi * step(w)``, where ``step`` is the prompt optimizer's next update (the training
  gradient, weight decay and, for SGD, the momentum buffer, as DARTS's
  ``_compute_unrolled_model``), and the Hessian-vector product of the implicit term by finite
  differences around ``w``. The prompts are restored exactly afterwards.

The bi-level loop (:class:`~dpl_plugin.search.bilevel.BilevelSearch`) owns epochs, the prompt step,
reports and checkpoints; it hands the architect a ``loss(batch, phase)`` callable.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..runtime import distributed
from .regularizers import alpha_penalty
from .settings import SearchSettings
from .supernet import SupernetPromptLearner

Loss = Callable[[object, str], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class Architect:
    """``alpha``'s Adam optimizer and the first- or second-order alpha step (``settings``)."""

    def __init__(self, learner: SupernetPromptLearner, settings: SearchSettings,
                 prompt_optimizer: torch.optim.Optimizer, loss: Loss, scaler: torch.amp.GradScaler):
        if settings.second_order and settings.precision == "amp":
            raise ValueError("the second-order alpha step is implemented for fp32 only")
        self.learner, self.settings, self.loss, self.scaler = learner, settings, loss, scaler
        self.prompt_optimizer = prompt_optimizer
        self.arch_params = learner.arch_parameters()
        self.prompt_params = learner.prompt_parameters()
        arch_ids = {id(p) for p in self.arch_params}
        if any(id(p) in arch_ids for g in prompt_optimizer.param_groups for p in g["params"]):
            raise ValueError("the prompt optimizer holds alpha: give it learner.prompt_parameters() only")
        self.optimizer = torch.optim.Adam(self.arch_params, lr=settings.alpha_lr, betas=tuple(settings.alpha_betas),
                                          weight_decay=settings.alpha_weight_decay)

    def step(self, val_batch, train_batch, epoch: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One alpha step in (0-based) ``epoch``; returns the validation ``(loss, logits, labels)``."""
        if self.settings.second_order:
            return self._unrolled_step(val_batch, train_batch, epoch)
        loss, logits, labels = self.loss(val_batch, "validation (alpha step)")
        apply_gradients(loss + alpha_penalty(self.learner, self.settings, epoch), self.arch_params, self.optimizer,
                        self.scaler)
        return loss, logits, labels

    def _unrolled_step(self, val_batch, train_batch, epoch: int):
        """``grad_a L_val(w', a) - xi * (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps)``."""
        params, xi = self.prompt_params, self.prompt_optimizer.param_groups[0]["lr"]
        saved = [p.detach().clone() for p in params]
        train_loss, _, _ = self.loss(train_batch, "training (unrolled alpha step)")
        steps = self._prompt_update(zeros_for_none(gradients(train_loss, params), params))
        with torch.no_grad():
            for p, step in zip(params, steps):
                p.sub_(xi * step)
        val_loss, logits, labels = self.loss(val_batch, "validation (alpha step)")
        objective = val_loss + alpha_penalty(self.learner, self.settings, epoch)  # the penalty does not depend on w
        grads = gradients(objective, self.arch_params + params)
        alpha_grads = zeros_for_none(grads[: len(self.arch_params)], self.arch_params)
        w_grads = zeros_for_none(grads[len(self.arch_params):], params)
        eps = 0.01 / (torch.cat([g.flatten() for g in w_grads]).norm() + 1e-12)

        def alpha_grad_at(sign: float):
            with torch.no_grad():
                for p, w, g in zip(params, saved, w_grads):
                    p.copy_(w + sign * eps * g)
            loss, _, _ = self.loss(train_batch, "training (unrolled alpha step)")
            return zeros_for_none(gradients(loss, self.arch_params), self.arch_params)

        plus, minus = alpha_grad_at(1.0), alpha_grad_at(-1.0)
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)
        for a, g, gp, gm in zip(self.arch_params, alpha_grads, plus, minus):
            a.grad = g - xi * (gp - gm) / (2 * eps)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return val_loss, logits, labels

    def _prompt_update(self, grads: List[torch.Tensor]) -> List[torch.Tensor]:
        """The direction of the prompt optimizer's next step (the step is ``lr`` times it), as SGD
        takes it: gradient plus weight decay, plus momentum times the momentum buffer."""
        group = self.prompt_optimizer.param_groups[0]
        decay, momentum = group.get("weight_decay", 0.0), group.get("momentum", 0.0)
        steps = []
        for p, g in zip(self.prompt_params, grads):
            step = g + decay * p.detach()
            buffer = self.prompt_optimizer.state.get(p, {}).get("momentum_buffer")
            if momentum and buffer is not None:
                step = step + momentum * buffer
            steps.append(step)
        return steps

    def state_dict(self):
        return self.optimizer.state_dict()

    def load_state_dict(self, state) -> None:
        self.optimizer.load_state_dict(state)


def apply_gradients(loss: torch.Tensor, params: List[torch.nn.Parameter], optimizer, scaler) -> None:
    """Gradients of ``loss`` for ``params`` only, then one (scaled) optimizer step."""
    for param, grad in zip(params, gradients(scaler.scale(loss), params)):
        param.grad = grad
    scaler.step(optimizer)
    optimizer.zero_grad(set_to_none=True)


def gradients(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """Gradients of ``loss`` for ``params`` (None where unused), averaged over processes: each
    process's loss is the mean over its share of the batch, so the average is the gradient of the
    mean over the whole batch (autograd.grad bypasses DistributedDataParallel: reduce here)."""
    return distributed.average_gradients(torch.autograd.grad(loss, params, allow_unused=True))


def zeros_for_none(grads: Sequence[Optional[torch.Tensor]], params) -> List[torch.Tensor]:
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


__all__ = ["Architect", "apply_gradients", "gradients", "zeros_for_none"]
