"""The bi-level search loop, independent of any training engine.

Every training minibatch makes two steps (first-order DARTS, as the official code):

1. ``alpha`` step (:class:`~dpl_plugin.search.architect.Architect`): the objective (cross-entropy by
   default, :mod:`dpl_plugin.engine.objectives`) of a *validation* batch, gradients for ``alpha``
   only, Adam (``second_order=True``: DARTS's unrolled approximation);
2. prompt step: the objective of the training batch, gradients for the prompts only, the prompt
   optimizer (SGD in the recipe).

Validation batches come from cycling a (shuffled) validation loader, so ``alpha`` sees all of the
validation data rather than the same first batch. After every epoch the loop records
``softmax(alpha)``, writes the history and heatmaps, and checkpoints everything needed to resume
exactly where it stopped.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch

from ..engine.batches import accuracy, default_batch
from ..engine.checkpoint import load_checkpoint, save_checkpoint
from ..engine.finite import check_finite
from ..engine.objectives import Objective
from ..engine.progress import EpochProgress
from ..engine.training import evaluate
from ..errors import DPLError, require_instance
from ..prompt_config import PromptConfig
from ..runtime import distributed
from ..runtime.reproducibility import capture_rng_state, restore_rng_state
from ..runtime.sharded_data import set_epoch, unpadded
from .architect import Architect, apply_gradients
from .definition import differences, flatten
from .discretize import check_budget, confidence_summary, derive_config
from .health import check_alpha
from .history import AlphaHistory, format_confidence
from .plots import plot_history
from .regularizers import alpha_noise
from .selection import Selection, select
from .stopping import should_stop
from .settings import SearchSettings, temperature_at
from .supernet import SupernetPromptLearner

logger = logging.getLogger("dpl_plugin.search")
logger.addFilter(distributed.main_rank_only)  # several processes: rank 0 logs

CONFIG_FILE = "searched_config.yaml"
HISTORY_FILE = "alpha_history.json"
CHECKPOINT_FILE = "search_checkpoint.pth"


class SearchStateMismatchError(DPLError, ValueError):
    """A checkpoint belongs to a different search (backbone, branches or candidate set)."""


class CyclingIterator:
    """Endless batches from a re-iterable, restarting it when exhausted (a new shuffle each time).

    Its state is the RNG state in force when the current pass began and the batches drawn since;
    restoring replays that pass's start and skips what was consumed, so the next batch is the one
    the uninterrupted run would draw.
    """

    def __init__(self, iterable: Iterable, name: str = "validation"):
        self.iterable, self.name = iterable, name
        self._iterator = None
        self._pass_rng: Optional[torch.Tensor] = None
        self.position = 0
        self.passes = 0  # passes started: a distributed sampler's epoch (a new shared shuffle each pass)

    def _start_pass(self) -> None:
        self._pass_rng = torch.get_rng_state()
        set_epoch(self.iterable, self.passes)
        self.passes += 1
        self._iterator = iter(self.iterable)
        self.position = 0

    def __next__(self):
        if self._iterator is None:
            self._start_pass()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._start_pass()
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ValueError(
                    f"the {self.name} loader yields no batches: the alpha step needs validation data "
                    f"(a few labelled images per class, held out from the training images)"
                ) from None
        self.position += 1
        return batch

    def state_dict(self) -> Dict[str, Any]:
        return {"pass_rng": self._pass_rng, "position": self.position, "passes": self.passes}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state["pass_rng"] is None:
            return
        current = torch.get_rng_state()
        torch.set_rng_state(state["pass_rng"])
        self.passes = state.get("passes", 1)
        set_epoch(self.iterable, self.passes - 1)
        self._pass_rng, self._iterator = state["pass_rng"], iter(self.iterable)
        for _ in range(state["position"]):
            next(self._iterator)
        self.position = state["position"]
        torch.set_rng_state(current)


@dataclass
class SearchResult:
    config: PromptConfig
    history: AlphaHistory
    output_dir: Optional[str]
    epochs_run: int
    files: Dict[str, str] = field(default_factory=dict)
    supernet: Any = None  # the searched PromptedCLIP (its prompts seed TRAIN.INIT searched)
    seconds: float = 0.0  # wall time of this call (a resumed search: since the resume)
    val_accuracy: Optional[float] = None  # the supernet's accuracy on the whole validation set at the end
    samples: int = 0  # images processed forward and backward by the search steps (all epochs, all processes)
    selection: Optional[Selection] = None  # how the configuration was chosen (SELECT), with its cost


class BilevelSearch:
    """Search prompt lengths for ``model`` (a :class:`PromptedCLIP` with a supernet learner).

    ``prompt_optimizer`` must hold the learner's prompt parameters and not ``alpha``; the final
    validation accuracy evaluates ``val_loader``'s images once each (a loader from
    :func:`~dpl_plugin.runtime.sharded_data.loader` without its padding; another iterable as it is);
    ``scheduler`` (optional) is stepped once per epoch. ``output_dir`` receives the searched
    configuration, the alpha history, heatmaps and the resumable checkpoint.
    """

    def __init__(self, model, train_loader: Iterable, val_loader: Iterable,
                 prompt_optimizer: torch.optim.Optimizer, scheduler=None,
                 settings: Optional[SearchSettings] = None, output_dir: Optional[str] = None,
                 device: Optional[torch.device] = None, batch_fn: Callable = default_batch,
                 provenance: Optional[Dict[str, Any]] = None, objective: Optional[Objective] = None):
        self.model = model
        self.objective = objective or Objective()  # both steps' loss (a prepared objective); cross-entropy
        self.learner: SupernetPromptLearner = model.prompt_learner
        if not isinstance(self.learner, SupernetPromptLearner):
            raise TypeError("BilevelSearch needs a model built with a SupernetPromptLearner (see build_supernet)")
        self.settings = require_instance(settings or SearchSettings(), SearchSettings, "the search's settings",
                                         "pass SearchSettings(...) (a dict d: SearchSettings(**d))").resolved()
        check_budget(self.learner, self.settings.token_budget)
        self.train_loader, self.batch_fn = train_loader, batch_fn
        self.val_loader = val_loader
        self.val_batches = CyclingIterator(val_loader)
        self.device = device or self.learner.lengths.device
        self.prompt_optimizer, self.scheduler = prompt_optimizer, scheduler
        self.prompt_params = self.learner.prompt_parameters()
        amp = self.settings.precision == "amp" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.autocast = amp
        # A lambda, so that the architect always calls this search's current _loss.
        self.architect = Architect(self.learner, self.settings, prompt_optimizer,
                                   lambda batch, phase: self._loss(batch, phase), self.scaler)
        self.output_dir = output_dir
        self.provenance = dict(provenance or {})
        self.history = AlphaHistory(self.learner.candidates)
        self.epoch = 0
        self.iteration = 0
        self.val_accuracy: Optional[float] = None
        self.samples = 0  # this process's images through forward and backward (alpha and prompt steps)
        self.selection: Optional[Selection] = None

    # -- losses and steps --------------------------------------------------------------------------
    def _loss(self, batch, phase: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels = self.batch_fn(batch)
        images, labels = images.to(self.device), labels.to(self.device)
        with torch.autocast(self.device.type, enabled=self.autocast):
            loss, logits, _ = self.objective(self.model, images, labels)
        check_finite(loss, phase, f"epoch {self.epoch + 1}, iteration {self.iteration + 1}", self._on_disk())
        self.samples += labels.numel()
        return loss, logits.detach(), labels

    def _on_disk(self) -> str:
        if self.output_dir and os.path.isfile(os.path.join(self.output_dir, CHECKPOINT_FILE)):
            return f"the checkpoint of epoch {self.epoch} in {self.output_dir} is intact."
        return "no earlier checkpoint exists."

    # -- epochs ------------------------------------------------------------------------------------
    def _alpha_moves(self) -> bool:
        """False during warm-up, and always with single paths: the candidate prompts train while alpha
        (and its Adam state) rest."""
        return not self.settings.single_path and self.epoch >= self.settings.warmup_epochs

    def _set_relaxation(self) -> None:
        """The epoch's softmax temperature and sampling (functions of the epoch: nothing to resume)."""
        self.learner.alpha.temperature = temperature_at(self.settings, self.epoch)
        self.learner.alpha.gumbel = self.settings.gumbel
        self.learner.alpha.single_path = self.settings.single_path

    def _run_epoch(self) -> Dict[str, float]:
        self.model.train()
        set_epoch(self.train_loader, self.epoch)
        self._set_relaxation()
        moves = self._alpha_moves()
        nan = float("nan")
        sums = {"train_loss": 0.0, "val_loss": 0.0 if moves else nan, "train_acc": 0.0, "val_acc": 0.0 if moves else nan}
        count = 0
        total = len(self.train_loader) if hasattr(self.train_loader, "__len__") else None
        bar = EpochProgress(self.train_loader, f"search {self.epoch + 1}/{self.settings.epochs}", self.epoch + 1,
                            self.settings.epochs, total=total, enabled=distributed.is_main(),
                            closing_line=False)  # the epoch's one line is _log_epoch's, with the timing
        self._epoch_timing = bar
        for self.iteration, train_batch in enumerate(bar):
            if moves:
                val_loss, val_logits, val_labels = self.architect.step(next(self.val_batches), train_batch, self.epoch)
                sums["val_loss"] += val_loss.item()
                sums["val_acc"] += accuracy(val_logits, val_labels)
            with alpha_noise(self.learner, self.settings, self.epoch):  # SDARTS-RS (off by default)
                loss, logits, labels = self._loss(train_batch, "training (prompt step)")
                apply_gradients(loss, self.prompt_params, self.prompt_optimizer, self.scaler)
            self.scaler.update()
            count += 1
            sums["train_loss"] += loss.item()
            sums["train_acc"] += accuracy(logits, labels)
            bar.set_postfix(train=f"{sums['train_loss'] / count:.3f}", val=f"{sums['val_loss'] / count:.3f}")
        if count == 0:
            raise ValueError("the training loader yields no batches")
        return distributed.mean_values({k: v / count for k, v in sums.items()})

    def run(self) -> SearchResult:
        writes = bool(self.output_dir) and distributed.is_main()  # several processes: rank 0 writes
        if writes:
            os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, CHECKPOINT_FILE) if self.output_dir else None
        if path and self.settings.resume and os.path.isfile(path):
            # On the CPU: random states must stay there (torch.set_rng_state takes CPU byte tensors);
            # load_state_dict moves parameters and optimizer states to their parameters' device.
            self.load_state_dict(load_checkpoint(path))
            logger.info("Resumed the search from %s after epoch %d", path, self.epoch)
        started = time.time()
        epochs = self.settings.epochs
        while self.epoch < epochs and not should_stop(self.history, self.settings, self.epoch, log=False):
            stats = self._run_epoch()
            if self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            self.history.record(self.learner)
            check_alpha(self.learner, self.architect.optimizer)
            self._log_epoch(stats)
            if path:
                state = self.state_dict()  # on every process: it gathers each one's random state
                if writes:
                    save_checkpoint(state, path)
                    self._write_reports(final=False)
            if should_stop(self.history, self.settings, self.epoch):
                break
        return self._finish(time.time() - started)

    def _log_epoch(self, stats: Dict[str, float]) -> None:
        current = derive_config(self.learner, budget=self.settings.token_budget)
        with torch.no_grad():
            tokens = self.learner.expected_tokens().item()
        logger.info(
            "epoch [%d/%d] train loss %.4f acc %.1f%% | %s | lr %.3e | T %.3g | E[tokens] %.1f | text %s | "
            "vision %s | %s",
            self.epoch, self.settings.epochs, stats["train_loss"], stats["train_acc"], self._alpha_status(stats),
            self.prompt_optimizer.param_groups[0]["lr"], self.learner.alpha.temperature, tokens,
            current.text, current.vision, self._epoch_timing.timing(),
        )

    def _alpha_status(self, stats: Dict[str, float]) -> str:
        if self.settings.single_path:
            return "single paths (alpha not trained)"
        if self.epoch > self.settings.warmup_epochs:
            return f"val loss {stats['val_loss']:.4f} acc {stats['val_acc']:.1f}%"
        return "alpha frozen (warm-up)"

    def _write_reports(self, final: bool) -> Dict[str, str]:
        files = {"history": self.history.save(os.path.join(self.output_dir, HISTORY_FILE))}
        if self.settings.plot and self.history.epochs:
            files.update({f"heatmap_{k}": v for k, v in plot_history(self.history, self.output_dir).items()})
        if final:
            files["config"] = self.config().save(os.path.join(self.output_dir, CONFIG_FILE))
        return files

    def config(self) -> PromptConfig:
        info = {**self.provenance, "search": self.settings.definition()}
        if self.objective.name != Objective.name:
            info["objective"] = self.objective.describe()
        if self.val_accuracy is not None:
            info["supernet_val_accuracy"] = round(self.val_accuracy, 2)
        if self.selection is not None and self.selection.method != "argmax":
            info["selection"] = self.selection.summary()
        choice = self.selection.choice if self.selection is not None else None
        return derive_config(self.learner, self.history, info, self.settings.token_budget, choice)

    def _select(self) -> Selection:
        """The configuration SELECT chooses from the trained supernet (its draws seeded from the
        global generator, which a resumed search restores: the same choice)."""
        s = self.settings
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,)).item()))
        return select(self.model, self.val_loader, s.select, s.token_budget, s.select_samples, s.select_from,
                      generator, self.batch_fn)

    def _finish(self, seconds: float) -> SearchResult:
        rng = capture_rng_state()  # evaluating must not change what follows the search
        single = self.settings.single_path
        # The supernet on the whole validation split: the number its searched configuration's trained
        # accuracy is compared with (the discretisation gap). A mixture supernet: its deterministic
        # mixture; a single-path one, which never ran a mixture: the chosen configuration's score.
        if not single:
            self.val_accuracy = evaluate(self.model, unpadded(self.val_loader), self.batch_fn, progress=False)
        self.selection = self._select()
        if single and self.selection.best is not None:
            self.val_accuracy = self.selection.best.accuracy
        restore_rng_state(rng)
        files = self._write_reports(final=True) if self.output_dir and distributed.is_main() else {}
        if self.history.epochs and not single:  # alpha's confidence: nothing to report where it did not learn
            logger.info("Searched configuration (per-layer confidence):\n%s", format_confidence(self.history))
            logger.info("%s", confidence_summary(self.history).message)
        if self.val_accuracy is not None:
            logger.info("Supernet validation accuracy at the end of the search: %.1f%%", self.val_accuracy)
        samples = int(distributed.sum_values({"samples": self.samples})["samples"])
        return SearchResult(self.config(), self.history, self.output_dir, self.epoch, files, self.model, seconds,
                            self.val_accuracy, samples, self.selection)

    # -- state ------------------------------------------------------------------------------------
    def _signature(self) -> Dict[str, Any]:
        signature = {"candidates": list(self.learner.candidates),
                     "tables": {k: list(t.shape) for k, t in self.learner.alpha.tables.items()},
                     "settings": self.settings.definition()}
        if self.objective.name != Objective.name:  # plain cross-entropy: as recorded before objectives existed
            signature["objective"] = self.objective.describe()
        return signature

    def state_dict(self) -> Dict[str, Any]:
        return {
            "format": "dpl-plugin/search-v1",
            "signature": self._signature(),
            "epoch": self.epoch,
            "learner": self.learner.state_dict(),
            "prompt_optimizer": self.prompt_optimizer.state_dict(),
            "alpha_optimizer": self.architect.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "history": self.history.to_dict(),
            "val_batches": distributed.per_rank(self.val_batches.state_dict()),
            "rng": distributed.per_rank(capture_rng_state()),
            "samples": distributed.per_rank(self.samples),
            "gumbel_noise": self.learner.alpha.noise.get_state(),  # the same on every process
            "settings": asdict(self.settings),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("format") != "dpl-plugin/search-v1":
            raise SearchStateMismatchError("not a dpl-plugin search checkpoint")
        changed = "; ".join(differences(flatten(state["signature"]), flatten(self._signature())))
        if changed:
            raise SearchStateMismatchError(
                f"the checkpoint belongs to another search (another backbone, design, candidate set or search "
                f"option: {changed}). Use another output directory, or delete {CHECKPOINT_FILE} to start this "
                f"search over."
            )
        self.learner.load_state_dict(state["learner"])
        self.prompt_optimizer.load_state_dict(state["prompt_optimizer"])
        self.architect.load_state_dict(state["alpha_optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.history = AlphaHistory.from_dict(state["history"])
        self.epoch = state["epoch"]
        self.val_batches.load_state_dict(distributed.own(state["val_batches"]))  # replays RNG: restore RNG after it
        restore_rng_state(distributed.own(state["rng"]))
        self.samples = distributed.own(state.get("samples", 0))
        if "gumbel_noise" in state:
            self.learner.alpha.noise.set_state(state["gumbel_noise"])


__all__ = [
    "BilevelSearch", "CHECKPOINT_FILE", "CONFIG_FILE", "CyclingIterator", "HISTORY_FILE", "SearchResult",
    "SearchSettings", "SearchStateMismatchError",
]
