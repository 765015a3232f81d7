"""What a search costs next to a train stage, counted as the search itself counts it
(:attr:`~dpl_plugin.search.bilevel.SearchResult.samples`): images through forward and backward.

A search epoch makes one prompt step per training batch, and once ``alpha`` moves (after
``WARMUP_EPOCHS``; never with ``PATHS single``) an ``alpha`` step on a validation batch before
each: ``1 + VAL_BATCH_SIZE / BATCH_SIZE`` epochs' worth of images, where a train-stage epoch is one
pass over the training split whatever its batch size. A second-order step adds a forward and backward on the training batch and
two at the perturbed prompts.
"""

from __future__ import annotations

from .settings import SearchSettings


def search_cost_in_train_epochs(settings: SearchSettings) -> float:
    """The search's images processed, in passes over the training split (``settings`` resolved)."""
    moving = 0 if settings.single_path else max(settings.epochs - settings.warmup_epochs, 0)
    per_alpha_step = settings.val_batch_size / settings.batch_size
    if settings.second_order:
        per_alpha_step += 3  # the unrolled step: the training batch, then w+ and w-
    return settings.epochs + moving * per_alpha_step


def cost_line(settings: SearchSettings, train_epochs: int) -> str:
    """One line for a run's log: the search's cost against the train stage that follows it."""
    search = search_cost_in_train_epochs(settings)
    ratio = f"{search / train_epochs:.2f}x" if train_epochs > 0 else "no train stage"
    line = (f"search cost: {settings.epochs} epochs = {search:g} passes over the training split "
            f"(forward and backward), {ratio} the train stage's {train_epochs}")
    return line + _selection_cost(settings)


def _selection_cost(settings: SearchSettings) -> str:
    """What choosing from the supernet adds after the search: forward passes over the validation split."""
    if settings.select == "sampled":
        return f"; then {settings.select_samples} forward-only passes over the validation split (SELECT sampled)"
    if settings.select == "perturbation":
        return "; then a forward-only pass over the validation split per layer and candidate (SELECT perturbation)"
    return ""
