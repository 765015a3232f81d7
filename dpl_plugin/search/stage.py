"""DPL's two stages in plain PyTorch, one call each, for any iterables of ``(images, labels)``.

    result = search_prompt_lengths(clip_model, classnames, train_loader, val_loader, design="maple")
    model = build_prompted_clip(clip_model, classnames, result.config)
    train_prompts(model, train_loader, TrainSettings(epochs=40))
    accuracy = evaluate(model, test_loader)
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence

from ..designs import get_design
from ..engine.objectives import Objective
from ..engine.optim import build_lr_scheduler, build_sgd
from ..runtime.lock import OutputLock
from . import BilevelSearch, SearchResult, SearchSettings, build_supernet
from .supernet import DEFAULT_CANDIDATES


def search_prompt_lengths(clip_model, classnames: Sequence[str], train_loader: Iterable, val_loader: Iterable,
                          design: str = "maple", candidates: Iterable[int] = DEFAULT_CANDIDATES,
                          settings: Optional[SearchSettings] = None, output_dir: Optional[str] = None,
                          provenance: Optional[Dict[str, Any]] = None, objective: Optional[Objective] = None,
                          **supernet_kwargs) -> SearchResult:
    """Stage 1 with the official recipe's optimizers: SGD (momentum 0.9, weight decay 5e-4, one
    warm-up epoch, cosine) at ``settings.lr`` on the candidate prompts (initialised as
    ``settings.text_init`` / ``vision_init``), Adam on ``alpha``. The loaders' batch sizes are
    the caller's (``settings.batch_size`` and ``val_batch_size`` are what the Dassl trainer uses).
    ``objective``: both steps' loss (e.g. :class:`~dpl_plugin.engine.objectives.KgCoOp`; default
    cross-entropy), prepared here for the supernet."""
    settings = settings or SearchSettings()
    supernet = build_supernet(clip_model, classnames, candidates=candidates, **get_design(design).search_space(),
                              text_init=settings.text_init, vision_init=settings.vision_init, **supernet_kwargs)
    optimizer = build_sgd(supernet.prompt_learner.prompt_parameters(), lr=settings.lr)
    scheduler = build_lr_scheduler(optimizer, settings.epochs)
    info = {"design": design, **(provenance or {})}
    objective = (objective or Objective()).prepare(supernet, classnames)
    search = BilevelSearch(supernet, train_loader, val_loader, optimizer, scheduler, settings, output_dir,
                           provenance=info, objective=objective)
    if output_dir is None:
        return search.run()
    with OutputLock(output_dir):  # one search per folder: a second would overwrite the checkpoint
        return search.run()
