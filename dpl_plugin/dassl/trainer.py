"""``DPLTrainer``: everything the DPL Dassl trainers share.

A trainer subclass names its prompt design (:mod:`dpl_plugin.designs`) and reads its baseline's
config node; a method with its own loss or prompt schedule (KgCoOp, PromptSRC) also names its
objective (:mod:`dpl_plugin.engine.objectives`, cross-entropy by default, used by the search too
unless ``TRAINER.DPL.SEARCH.OBJECTIVE cross_entropy``) and averaging. This class does the rest:

* ``build_model`` (called by Dassl's ``__init__``) loads CLIP once and builds the model when its
  prompt configuration is already known: the hand design (``MODE baseline``), a configuration file,
  or a finished search in ``OUTPUT_DIR/search``. It never searches, so ``--eval-only`` never does.
* ``train`` runs the search first when needed (``OUTPUT_DIR/search``, resumable), writes the
  configuration it trains to ``OUTPUT_DIR/prompt_config.yaml``, then runs Dassl's training loop
  (resuming from ``OUTPUT_DIR/prompt_learner``) and the final evaluation.
* ``load_model`` rebuilds the model from the configuration stored in the checkpoint.

Only the prompt learner is registered with Dassl, so checkpoints hold only what was learned.
"""

from __future__ import annotations

import logging
import os.path as osp
import sys
from typing import Optional, Tuple

import torch
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy

from .. import PromptConfig, PromptConfigError, build_prompted_clip, load_clip
from ..backbones.spec import BackboneSpec
from ..designs import get_design
from ..engine.averaging import GaussianPromptAveraging
from ..engine.checkpoint import CorruptCheckpointError
from ..engine.finite import check_finite, check_finite_logits
from ..engine.objectives import Objective
from ..engine.start_probe import probe_starts
from ..engine.training import TrainSettings
from ..errors import OptionError
from ..prompting.initialization import SEARCHED, TEMPLATE, random_part
from ..prompting.templates import DEFAULT_TEMPLATE, text_input
from ..runtime import distributed
from ..runtime.lock import lock_output_dir
from ..runtime.reproducibility import capture_rng_state, restore_rng_state, seed_everything
from ..runtime.sharded_data import set_epoch
from ..search import CHECKPOINT_FILE, CONFIG_FILE, BilevelSearch, SearchSettings, build_supernet, definition
from ..search.cost import cost_line, probe_cost_in_train_epochs
from ..search.inherit import supernet_from_checkpoint
from . import checkpoint_folder
from .batch_job_output import one_line_per_epoch
from .datasets.coop_format import shots_per_class
from .config import check_dpl_cfg, fit_workers_to_cpus, require_dpl_keys
from .distributed_data import split_loaders
from .gathered_evaluator import GatheredEvaluator
from .optim_from_cfg import build_optimizer_and_scheduler
from .run_definitions import check_trained, probes, search_definition, train_definition
from .search_data import search_loaders

MODEL_NAME = "prompt_learner"  # Dassl's registered name: checkpoints go to OUTPUT_DIR/prompt_learner/
SEARCH_DIR = "search"
TRAINED_CONFIG = "prompt_config.yaml"
PROBED_STARTS = (SEARCHED, TEMPLATE)  # TRAIN.PROBE_EPOCHS: the supernet's prompts against fresh ones


class DPLTrainer(TrainerX):
    """Search prompt lengths, train them with the baseline's recipe, evaluate (see module docstring)."""

    design_name = ""  # a key of dpl_plugin.designs.DESIGNS, set by each trainer

    # -- the one per-trainer hook ------------------------------------------------------------------
    def baseline_settings(self, cfg) -> Tuple[dict, str]:
        """``(keyword arguments of the design's hand configuration, text context init)`` read from the
        baseline's config node (e.g. ``TRAINER.MAPLE``)."""
        raise NotImplementedError

    def build_objective(self, cfg) -> Objective:
        """The train stage's loss (:mod:`dpl_plugin.engine.objectives`); cross-entropy unless a method adds terms."""
        return Objective()

    def build_averaging(self, cfg) -> Optional[GaussianPromptAveraging]:
        """A schedule over epochs for the trained prompts (PromptSRC's aggregation), or None."""
        return None

    def __init__(self, cfg):
        # Started by torchrun: join the process group before Dassl builds loaders and the model
        # (train.py has joined already; a fork's train.py need not). Ranks other than 0 stay quiet.
        distributed.init_from_env(cfg.USE_CUDA)
        distributed.quiet_other_ranks()
        super().__init__(cfg)

    # -- Dassl hooks -------------------------------------------------------------------------------
    def check_cfg(self, cfg):
        require_dpl_keys(cfg, type(self))
        check_dpl_cfg(cfg)
        fit_workers_to_cpus(cfg)

    def build_data_loader(self):
        super().build_data_loader()
        if distributed.active():  # never Dassl's DataParallel: each process takes its share of the data
            self.train_loader_x, self.val_loader, self.test_loader = split_loaders(self.cfg, self.dm.dataset)

    def build_model(self):
        cfg = self.cfg
        self._output_lock = lock_output_dir(cfg.OUTPUT_DIR)  # held until the process ends
        _route_library_logs_to_stdout()
        self.design = get_design(self.design_name)
        self.precision = self._precision()
        if self.device.type == "cuda" and distributed.active():
            self.device = torch.device("cuda", torch.cuda.current_device())  # this process's GPU (LOCAL_RANK)
        elif self.device.type == "cuda" and torch.cuda.device_count() > 1:
            print(f"{torch.cuda.device_count()} GPUs are visible; one process runs on one ({self.device}) and leaves "
                  f"the others idle. Use them all with torchrun --nproc_per_node {torch.cuda.device_count()} "
                  f"(DPL_GPUS in scripts/env.sh), or choose one with CUDA_VISIBLE_DEVICES.")
        print(f"Loading CLIP ({cfg.MODEL.BACKBONE.NAME}, {self.precision}) on {self.device}")
        self.clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, self.device, self.precision)
        self.backbone = BackboneSpec.of(self.clip_model, name=cfg.MODEL.BACKBONE.NAME)
        size, resolution = tuple(cfg.INPUT.SIZE), self.backbone.image_resolution
        if size != (resolution, resolution):
            raise OptionError(f"INPUT.SIZE is {size}, but the CLIP backbone {cfg.MODEL.BACKBONE.NAME} takes "
                              f"{resolution}x{resolution} images: set INPUT.SIZE ({resolution}, {resolution})")
        self.classnames = list(self.dm.dataset.classnames)
        self.baseline_kwargs, self.ctx_init = self.baseline_settings(cfg)
        self.objective = self.build_objective(cfg)
        self.model = self.optim = self.sched = self.scaler = self.averaging = None
        self._probe_supernet = None  # TRAIN.PROBE_EPOCHS: the supernet whose prompts train() may yet replace
        self.prompt_config: Optional[PromptConfig] = None
        config = self._known_config()
        if config is not None:
            self._install(config)

    def train(self):
        if self.model is None:  # no configuration yet (MODE search, or dpl without a finished search)
            config = self.search()
            if self.cfg.TRAINER.DPL.MODE == "search":
                path = osp.join(self.output_dir, SEARCH_DIR, CONFIG_FILE)
                print(f"Search finished: {path}\nTrain it with the same command and TRAINER.DPL.MODE train "
                      f"TRAINER.DPL.CONFIG_FILE {path} (or MODE dpl with this output directory)")
                return
            self._install(self._for_training(config))
        if distributed.is_main():
            self.prompt_config.save(osp.join(self.output_dir, TRAINED_CONFIG))
        if self.optim is None:
            print("The prompt configuration has no prompt tokens: nothing to train; evaluating CLIP as it is")
            if not self.cfg.TEST.NO_TEST:
                self.test()
            return
        if self._probe_supernet is not None and checkpoint_folder.latest(osp.join(self.output_dir, MODEL_NAME)) is None:
            start = self._probe_start(self.prompt_config, self._probe_supernet)
            if start != SEARCHED:
                self._install(self.prompt_config, start=start)
            else:
                self.objective.prepare(self.model, self.classnames)  # last prepared for a probe's model
        self._probe_supernet = None
        self._reseed()  # the same data order whether or not a search ran before
        self._seed_rank()
        super().train()

    def before_epoch(self):
        set_epoch(self.train_loader_x, self.epoch)  # several processes: a new shared permutation per epoch
        one_line_per_epoch(self.cfg, len(self.train_loader_x))

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.scaler is not None):
            loss, logits, _ = self.objective(self.model, images, labels)
        check_finite(loss, "training", f"epoch {self.epoch + 1}, batch {self.batch_idx + 1}",
                     self._saved_checkpoints())
        params = self.model.learnable_parameters()
        if self.scaler is not None:
            self.optim.zero_grad()
            self.scaler.scale(loss).backward()
            distributed.average_parameter_gradients(params)  # several processes: the mean over ranks
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.model_zero_grad()
            self.model_backward(loss)
            distributed.average_parameter_gradients(params)
            self.model_update()
        summary = {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()  # once per epoch, as the CoOp family does
        return summary

    def after_epoch(self):
        if self.averaging is not None:  # before Dassl saves the epoch's checkpoint
            self.averaging.add(self.model.prompt_learner, self.epoch + 1)
            if self.epoch + 1 == self.max_epoch:
                self.averaging.apply(self.model.prompt_learner)
                print(f"Prompts averaged over {self.max_epoch} epoch(s) (Gaussian weights, mean "
                      f"{self.averaging.mean:g}, std {self.averaging.std:g})")
        super().after_epoch()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def test(self, split=None):
        if self.model is None:
            raise OptionError("there is no model to evaluate: this run has no prompt configuration yet. Pass "
                              "--model-dir (a trained run's output folder), or train first")
        if distributed.active() and not isinstance(self.evaluator, GatheredEvaluator):
            self.evaluator = GatheredEvaluator(self.evaluator)  # each process evaluates its share of the images
        with self.model.cached_text_features():  # class text features once, not once per batch
            return super().test(split)

    def model_inference(self, input):
        logits = self.model(input)
        if not distributed.active():  # several processes: GatheredEvaluator checks, on all of them at once
            check_finite_logits(logits, "evaluation")  # else Dassl reports an accuracy of NaN logits' argmax
        return logits

    def init_writer(self, log_dir):
        if distributed.is_main():  # rank 0 alone writes tensorboard events
            super().init_writer(log_dir)
        else:
            self._writer = None

    # -- checkpoints -------------------------------------------------------------------------------
    def _saved_checkpoints(self) -> str:
        """What a run stopped now leaves to resume from, for error messages: only files that exist."""
        try:
            path = checkpoint_folder.latest(osp.join(self.output_dir, MODEL_NAME))
        except CorruptCheckpointError:
            path = None
        if path is None:
            return "no training checkpoint has been written yet."
        return f"the latest training checkpoint, {path}, is intact."

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        if self.model is None:
            return
        state = {
            "design": self.design.name,
            "prompt_config": self.prompt_config.to_dict(),
            "state_dict": self.model.prompt_learner.state_dict(),
            "epoch": epoch + 1,
            "optimizer": self.optim.state_dict() if self.optim is not None else None,
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "val_result": val_result,
            "averaging": self.averaging.state_dict() if self.averaging is not None else None,
            "rng": distributed.per_rank(capture_rng_state()),  # several processes: every rank's
            "definition": self._train_definition(),
        }
        folder = osp.join(directory, MODEL_NAME)
        if distributed.is_main():
            path = checkpoint_folder.write(state, folder, model_name or checkpoint_folder.epoch_file(epoch + 1))
            print(f"Checkpoint saved to {path}")
            if is_best and not model_name:
                checkpoint_folder.write(state, folder, checkpoint_folder.BEST)
        distributed.barrier()  # the others may read it next (the best model, at the end)

    def resume_model_if_exist(self, directory):
        path = checkpoint_folder.latest(osp.join(directory, MODEL_NAME))
        if path is None:
            print("No checkpoint found, train from scratch")
            return 0
        state = checkpoint_folder.read(path)  # on CPU: RNG states must stay there; load_state_dict moves the rest
        if _structure(state["prompt_config"]) != _structure(self.prompt_config.to_dict()):
            raise PromptConfigError(
                f"{path} was trained with another prompt configuration ({_describe(state['prompt_config'])}) than "
                f"this run ({_describe(self.prompt_config.to_dict())}). Use another output directory, or delete "
                f"{osp.dirname(path)} to train from scratch")
        check_trained(state.get("definition"), self._train_definition(), path, state["epoch"])
        self.model.prompt_learner.load_state_dict(state["state_dict"])
        for part, target in (("optimizer", self.optim), ("scheduler", self.sched), ("scaler", self.scaler)):
            if target is not None and state.get(part) is not None:
                target.load_state_dict(state[part])
        if self.averaging is not None and state.get("averaging") is not None:
            self.averaging.load_state_dict(state["averaging"], self.model.prompt_learner)  # the trained prompts
        restore_rng_state(distributed.own(state["rng"]))  # continue exactly as the uninterrupted run would have
        print(f"Resumed from {path} (epoch {state['epoch']})")
        return state["epoch"]

    def load_model(self, directory, epoch=None):
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given (ignore this if it's done "
                  "on purpose)")
            return
        path = checkpoint_folder.find(osp.join(directory, MODEL_NAME), epoch)
        state = checkpoint_folder.read(path)  # on CPU: RNG states must stay there; load_state_dict moves the rest
        if state["design"] != self.design.name:
            raise OptionError(f"{path} was trained with the {state['design']} design; evaluate it with that "
                              f"design's trainer, not {self.cfg.TRAINER.NAME}")
        config = PromptConfig.from_dict(state["prompt_config"], source=path)
        if self.prompt_config is None or _structure(config.to_dict()) != _structure(self.prompt_config.to_dict()):
            self._install(config, restoring=True)
        self.model.prompt_learner.load_state_dict(state["state_dict"])
        print(f"Loading weights to {MODEL_NAME} from \"{path}\" (epoch = {state['epoch']})")

    # -- the search stage --------------------------------------------------------------------------
    def search(self) -> PromptConfig:
        """The searched configuration: a finished search's, else search (resuming an interrupted one)."""
        cfg = self.cfg
        folder = osp.join(self.output_dir, SEARCH_DIR)
        finished = self._finished_search()
        if finished is not None:
            return finished
        definition.check_unfinished(folder, self._search_definition(),
                                    resuming=osp.isfile(osp.join(folder, CHECKPOINT_FILE)))
        precision = "amp" if self.precision == "amp" else "fp32"
        settings = SearchSettings.from_cfg(cfg.TRAINER.DPL.SEARCH, precision=precision, resume=True)
        self._reseed()
        templates, merge = text_input(settings.text, cfg.DATASET.NAME)
        model = build_supernet(self.clip_model, self.classnames, candidates=cfg.TRAINER.DPL.CANDIDATES,
                               templates=templates or (DEFAULT_TEMPLATE,), merge=merge, text_init=settings.text_init,
                               vision_init=settings.vision_init, text_checkpoint=cfg.TRAINER.DPL.TEXT_CHECKPOINT,
                               nested=settings.nested, **self.design.search_space()).to(self.device)
        learner = model.prompt_learner
        optimizer, scheduler = build_optimizer_and_scheduler(learner.prompt_parameters(), cfg.OPTIM, lr=settings.lr,
                                                             max_epoch=settings.epochs)
        train_loader, val_loader = search_loaders(cfg, self.dm.dataset, settings.batch_size, settings.val_batch_size)
        self._seed_rank()
        provenance = {"trainer": cfg.TRAINER.NAME, "design": self.design.name, "dataset": cfg.DATASET.NAME,
                      "shots": self._shots(), "subsample_classes": cfg.DATASET.SUBSAMPLE_CLASSES,
                      "seed": cfg.SEED, "backbone": cfg.MODEL.BACKBONE.NAME, "search_epochs": settings.epochs,
                      definition.PROVENANCE_KEY: self._search_definition()}
        print(f"Searching prompt lengths ({self.design.name} design, branches {list(self.design.branches)}, "
              f"candidates {list(learner.candidates)}, {settings.epochs} epochs) into {folder}")
        probe = probe_cost_in_train_epochs(len(PROBED_STARTS), cfg.TRAINER.DPL.TRAIN.PROBE_EPOCHS,
                                           cfg.OPTIM.MAX_EPOCH) if probes(cfg) else 0
        print(cost_line(settings.resolved(), cfg.OPTIM.MAX_EPOCH, probe))
        result = BilevelSearch(model, train_loader, val_loader, optimizer, scheduler, settings, folder, self.device,
                               provenance=provenance,
                               objective=self._search_objective().prepare(model, self.classnames)).run()
        print(f"Searched configuration: text {result.config.text} vision {result.config.vision}")
        return result.config

    def _finished_search(self) -> Optional[PromptConfig]:
        path = osp.join(self.output_dir, SEARCH_DIR, CONFIG_FILE)
        if not osp.isfile(path):
            return None
        config = PromptConfig.load(path, self.backbone)
        recorded = config.provenance.get(definition.PROVENANCE_KEY)
        if not definition.check_finished(recorded, self._search_definition(), path):
            return None  # more epochs asked for: search() resumes it from its checkpoint
        print(f"Using the finished search {path} (delete its folder to search again)")
        return config

    def _shots(self) -> int:
        """The shots per class the data really have (CoOp takes fewer where fewer exist)."""
        asked = self.cfg.DATASET.NUM_SHOTS
        return min(asked, shots_per_class(self.dm.dataset.train_x)) if asked > 0 else asked

    def _search_definition(self) -> dict:
        return search_definition(self.cfg, self.precision, self._search_objective())

    def _search_objective(self) -> Objective:
        """The method's objective, or cross-entropy with ``TRAINER.DPL.SEARCH.OBJECTIVE cross_entropy``."""
        return Objective() if self.cfg.TRAINER.DPL.SEARCH.OBJECTIVE == "cross_entropy" else self.objective

    def _train_definition(self) -> dict:
        return train_definition(self.cfg, self.precision, self.ctx_init)

    # -- model construction ------------------------------------------------------------------------
    def _known_config(self) -> Optional[PromptConfig]:
        """The configuration to train when no search has to run first (else None)."""
        dpl = self.cfg.TRAINER.DPL
        if dpl.MODE == "search":
            return None
        if dpl.MODE == "baseline":
            try:
                hand = self.design.baseline_config(self.backbone, **self.baseline_kwargs)
            except PromptConfigError as err:
                raise PromptConfigError(
                    f"the {self.design.name} baseline's settings {self.baseline_kwargs} do not fit "
                    f"{self.backbone.name}: {err}. Adjust them in the baseline's config node "
                    f"(TRAINER.COOP, VPT, IVLP or MAPLE)") from None
            return self._insertion(hand, "native")
        if dpl.CONFIG_FILE:
            return self._for_training(PromptConfig.load(dpl.CONFIG_FILE, self.backbone))
        finished = self._finished_search()
        return self._for_training(finished) if finished is not None else None

    def _for_training(self, config: PromptConfig) -> PromptConfig:
        self._check_design(config)
        return self._insertion(config, config.insertion)

    def _insertion(self, config: PromptConfig, default: str) -> PromptConfig:
        return config.with_insertion(self.cfg.TRAINER.DPL.INSERTION or default)

    def _check_design(self, config: PromptConfig) -> None:
        name = self.cfg.TRAINER.NAME or type(self).__name__
        for branch in ("text", "vision"):
            if config.uses(branch) and branch not in self.design.branches:
                raise PromptConfigError(f"{name} prompts the {'/'.join(self.design.branches)} branch only, but the "
                                        f"configuration has {branch} prompts {config.lengths(branch)}")
        if config.coupled != self.design.coupled and config.uses("vision") and config.uses("text"):
            kind = "coupled (vision prompts mapped from text prompts)" if config.coupled else "independent"
            raise PromptConfigError(f"the configuration is {kind}, which the {self.design.name} design is not: "
                                    f"train it with {'DPL_MaPLe' if config.coupled else 'DPL_IVLP'}")

    def _install(self, config: PromptConfig, restoring: bool = False, start: Optional[str] = None) -> None:
        """Build the model for ``config`` and register its learner (replacing any previous one).
        ``restoring``: a checkpoint's prompts replace the initial ones at once; ``start``: the
        initialisation the start probe chose (else ``TRAIN.INIT``)."""
        cfg = self.cfg
        self._reseed()  # the same initial prompts whether or not a search ran before
        init = cfg.TRAINER.DPL.TRAIN.INIT
        if init == SEARCHED and (restoring or cfg.TRAINER.DPL.MODE == "baseline"):
            init = random_part(init)  # nothing to inherit (a hand design) or nothing worth it (loaded next)
        init = start or init
        supernet = self._searched_supernet(config) if init == SEARCHED else None  # one-shot NAS: inherit
        # TRAIN.PROBE_EPOCHS: train() may start from fresh prompts instead, when it trains from scratch
        probing = start is None and probes(cfg) and (config.uses("text") or config.uses("vision"))
        self._probe_supernet = supernet if probing else None
        model = self._build(config, init, supernet)
        learner = model.prompt_learner
        params = [p for p in learner.parameters() if p.requires_grad]
        optim = sched = None
        if params:
            optim, sched = build_optimizer_and_scheduler(params, cfg.OPTIM)
        self.objective.prepare(model, self.classnames)
        self.averaging = self.build_averaging(cfg)
        self.model, self.optim, self.sched, self.prompt_config = model, optim, sched, config
        self._models[MODEL_NAME], self._optims[MODEL_NAME], self._scheds[MODEL_NAME] = learner, optim, sched
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" and params else None
        print(f"Prompt configuration ({config.insertion} insertion{', coupled' if config.coupled else ''}): "
              f"text {config.text} vision {config.vision}; {sum(p.numel() for p in params):,} learnable parameters")

    def _build(self, config: PromptConfig, init: str, supernet=None):
        templates, merge = text_input(self.cfg.TRAINER.DPL.TEXT, self.cfg.DATASET.NAME)
        return build_prompted_clip(self.clip_model, self.classnames, config, ctx_init=self.ctx_init,
                                   templates=templates, merge=merge, text_init=init, vision_init=init,
                                   text_checkpoint=self.cfg.TRAINER.DPL.TEXT_CHECKPOINT,
                                   supernet=supernet).to(self.device)

    def _probe_start(self, config: PromptConfig, supernet) -> str:
        """``searched`` or ``template``: the start that validates better after TRAIN.PROBE_EPOCHS epochs."""
        cfg = self.cfg
        if self.val_loader is None:
            raise OptionError(f"TRAINER.DPL.TRAIN.PROBE_EPOCHS chooses the train stage's start on the validation "
                              f"split, but {cfg.DATASET.NAME} has none: set TRAINER.DPL.TRAIN.PROBE_EPOCHS 0")

        def build(start):
            model = self._build(config, start, supernet if start == SEARCHED else None)
            self.objective.prepare(model, self.classnames)
            return model

        precision = "amp" if self.precision == "amp" else "fp32"  # fp16: the half CLIP, trained as in fp32
        epochs = cfg.TRAINER.DPL.TRAIN.PROBE_EPOCHS
        print(f"Start probe (TRAINER.DPL.TRAIN.PROBE_EPOCHS {epochs}): the train stage's first epochs from the "
              f"supernet's prompts, then from fresh prompts; their epoch lines follow")
        result = probe_starts(build, PROBED_STARTS, self.train_loader_x, self.val_loader,
                              TrainSettings(epochs=cfg.OPTIM.MAX_EPOCH, precision=precision), epochs,
                              seed=cfg.SEED if cfg.SEED >= 0 else None, before_training=self._seed_rank,
                              objective=self.objective,
                              optimizer_factory=lambda params: build_optimizer_and_scheduler(params, cfg.OPTIM))
        print(result.describe())
        return result.chosen

    def _searched_supernet(self, config: PromptConfig):
        """The supernet that found ``config``, from the search checkpoint beside its file."""
        source = self.cfg.TRAINER.DPL.CONFIG_FILE or osp.join(self.output_dir, SEARCH_DIR, CONFIG_FILE)
        candidates = config.provenance.get("candidates", self.cfg.TRAINER.DPL.CANDIDATES)
        return supernet_from_checkpoint(osp.join(osp.dirname(source), CHECKPOINT_FILE), self.backbone, candidates,
                                        **self.design.search_space())

    # -- small helpers -----------------------------------------------------------------------------
    def _precision(self) -> str:
        prec = self.cfg.TRAINER.DPL.PREC
        if self.device.type != "cuda" and prec != "fp32":
            print(f"TRAINER.DPL.PREC {prec} needs a GPU; running fp32 on {self.device}")
            return "fp32"
        return prec

    def _reseed(self) -> None:
        if self.cfg.SEED >= 0:
            seed_everything(self.cfg.SEED)

    def _seed_rank(self) -> None:
        """Several processes: after the model is built (the same on all), ranks other than 0 draw their
        own augmentations; rank 0 goes on as one process would."""
        if self.cfg.SEED >= 0 and distributed.rank() > 0:
            seed_everything(distributed.rank_seed(self.cfg.SEED))


def _structure(config: dict) -> dict:
    """What determines a model's parameters: everything but the provenance."""
    return {k: v for k, v in config.items() if k != "provenance"}


def _describe(config: dict) -> str:
    return f"{config['insertion']}, text {config['text']}, vision {config['vision']}"


class _StdoutHandler(logging.Handler):
    """Library log records (the search's epoch lines) as plain lines on the current ``sys.stdout``,
    which Dassl's ``setup_logger`` tees into ``log.txt``."""

    def emit(self, record):
        print(self.format(record), file=sys.stdout)


def _route_library_logs_to_stdout() -> None:
    # Importing Dassl runs logging.disable(logging.WARNING) (dassl/data/datasets/dg/wilds/wilds_base.py),
    # which would drop the search's INFO lines. Undo it: loggers without handlers still print
    # nothing below WARNING (logging's last-resort handler), so no other library gets louder.
    if logging.root.manager.disable >= logging.INFO:
        logging.disable(logging.NOTSET)
    logger = logging.getLogger("dpl_plugin")
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        logger.addHandler(_StdoutHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
