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


def probe_cost_in_train_epochs(starts: int, probe_epochs: int, train_epochs: int) -> int:
    """The start probe's passes over the training split: the train stage's first ``probe_epochs``
    (at most all of them) from each of ``starts`` starts (:mod:`dpl_plugin.engine.start_probe`)."""
    return starts * min(probe_epochs, train_epochs)


def cost_line(settings: SearchSettings, train_epochs: int, probe_passes: int = 0) -> str:
    """One line for a run's log: the search's cost (and the start probe's, ``probe_passes`` passes
    over the training split, where the train stage probes its start) against the train stage."""
    search = search_cost_in_train_epochs(settings)
    total = search + probe_passes
    ratio = f"{total / train_epochs:.2f}x" if train_epochs > 0 else "no train stage"
    probe = f" + the start probe's {probe_passes:g}" if probe_passes else ""
    line = (f"search cost: {settings.epochs} epochs = {search:g} passes over the training split "
            f"(forward and backward){probe}, {ratio} the train stage's {train_epochs}")
    return line + _selection_cost(settings)


def _selection_cost(settings: SearchSettings) -> str:
    """What choosing from the supernet adds after the search: forward passes over the validation split."""
    if settings.select == "sampled":
        return f"; then {settings.select_samples} forward-only passes over the validation split (SELECT sampled)"
    if settings.select == "perturbation":
        return "; then a forward-only pass over the validation split per layer and candidate (SELECT perturbation)"
    return ""
