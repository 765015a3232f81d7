"""DPL's two stages in plain PyTorch, one call each, for any iterables of ``(images, labels)``.

    result = search_prompt_lengths(clip_model, classnames, train_loader, val_loader, design="maple")
    model = build_prompted_clip(clip_model, classnames, result.config)
    train_prompts(model, train_loader, TrainSettings(epochs=40))
    accuracy = evaluate(model, test_loader)
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

from ..designs import get_design
from ..engine.objectives import Objective
from ..engine.optim import build_lr_scheduler, build_sgd
from ..errors import require_instance
from ..prompt_config import PromptConfig
from ..runtime import distributed
from ..runtime.lock import OutputLock
from . import CHECKPOINT_FILE, CONFIG_FILE, BilevelSearch, SearchResult, SearchSettings, build_supernet, definition
from .api_definition import api_definition
from .definition import flatten
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
    cross-entropy), prepared here for the supernet.

    With ``output_dir``, a search there (finished or interrupted) is reused or resumed only when it
    is this search (same class names, data, backbone, design, candidates and settings); otherwise it
    is refused with the settings that differ."""
    settings = require_instance(settings or SearchSettings(), SearchSettings, "search_prompt_lengths' settings",
                                "pass SearchSettings(...) (a dict d: SearchSettings(**d))")
    candidates = list(candidates)
    supernet = build_supernet(clip_model, classnames, candidates=candidates, **get_design(design).search_space(),
                              text_init=settings.text_init, vision_init=settings.vision_init, nested=settings.nested,
                              **supernet_kwargs)
    optimizer = build_sgd(supernet.prompt_learner.prompt_parameters(), lr=settings.lr)
    scheduler = build_lr_scheduler(optimizer, settings.epochs)
    info = {"design": design, **(provenance or {})}
    objective = (objective or Objective()).prepare(supernet, classnames)
    if output_dir is not None:
        current = distributed.broadcast_object(  # several processes: rank 0's (each has its own data shard)
            api_definition(clip_model, classnames, train_loader, val_loader, design, candidates,
                           {**settings.definition(), **_objective_key(objective)}, settings.epochs, settings.lr,
                           supernet_kwargs))
        info[definition.PROVENANCE_KEY] = current
    search = BilevelSearch(supernet, train_loader, val_loader, optimizer, scheduler, settings, output_dir,
                           provenance=info, objective=objective)
    if output_dir is None:
        return search.run()
    with OutputLock(output_dir):  # one search per folder: a second would overwrite the checkpoint
        _check_folder(output_dir, current, settings.resume)
        return search.run()


def _objective_key(objective: Objective) -> Dict[str, Any]:
    """The objective in the definition; plain cross-entropy adds nothing (as recorded before objectives)."""
    return {} if objective.name == "cross_entropy" else flatten(objective.describe(), "objective.")


def _check_folder(folder: str, current: Mapping[str, Any], resume: bool) -> None:
    """Raise if ``folder`` holds a finished or interrupted search other than ``current``."""
    finished = os.path.join(folder, CONFIG_FILE)
    if os.path.isfile(finished) and resume:
        recorded = PromptConfig.load(finished).provenance.get(definition.PROVENANCE_KEY)
        definition.check_finished(recorded, current, finished)
        return
    definition.check_unfinished(folder, current, resuming=resume and os.path.isfile(
        os.path.join(folder, CHECKPOINT_FILE)))
