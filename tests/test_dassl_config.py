"""extend_cfg, the shipped trainer configs, and the optimizer/schedule built from a Dassl OPTIM node."""

import glob
import math
import os

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

import torch  # noqa: E402
from dassl.config import get_cfg_default  # noqa: E402
from yacs.config import CfgNode as CN  # noqa: E402

from conftest import epoch_lrs  # noqa: E402
from dpl_plugin import BackboneSpec  # noqa: E402
from dpl_plugin.dassl import extend_cfg  # noqa: E402
from dpl_plugin.dassl.config import check_dpl_cfg  # noqa: E402
from dpl_plugin.dassl.optim_from_cfg import build_optimizer_and_scheduler  # noqa: E402
from dpl_plugin.designs import get_design  # noqa: E402
from dpl_plugin.search import SearchSettings  # noqa: E402
from dpl_plugin.search.cost import search_cost_in_train_epochs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIT_B16 = BackboneSpec("ViT-B/16", 12, 512, 8, 77, 512, 12, 768, 12, 224)


def dpl_cfg(*files, opts=()):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    for path in files:
        cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    return cfg


def test_extend_cfg_adds_every_key_with_the_recipe_defaults():
    cfg = dpl_cfg()
    dpl = cfg.TRAINER.DPL
    assert (dpl.MODE, dpl.CONFIG_FILE, dpl.INSERTION, dpl.PREC, dpl.TEXT) == ("dpl", "", "", "fp32", "default")
    assert tuple(dpl.CANDIDATES) == tuple(range(7))
    s = dpl.SEARCH
    assert (s.EPOCHS, s.BATCH_SIZE, s.VAL_BATCH_SIZE, s.LR, s.ALPHA_LR) == (80, 4, 16, 0.0035, 0.0035)
    assert tuple(s.ALPHA_BETAS) == (0.5, 0.999) and s.ALPHA_WEIGHT_DECAY == 0.0 and not s.SECOND_ORDER
    assert dpl.TRAIN.INIT == "normal:0.02" and dpl.TEXT_CHECKPOINT is False
    assert cfg.TRAINER.MAPLE.PROMPT_DEPTH == 9 and cfg.TRAINER.COOP.N_CTX == 16
    # The baselines' published designs (MaPLe's configs): VPT-deep 8 tokens in all 12 layers, IVLP 2 + 2 in all 12.
    assert cfg.TRAINER.IVLP.N_CTX_TEXT == 2 and cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT == 12
    assert (cfg.TRAINER.VPT.N_CTX_VISION, cfg.TRAINER.VPT.PROMPT_DEPTH_VISION) == (8, 12)
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    # Command-line overrides reach the new keys (yacs rejects unknown ones).
    cfg.merge_from_list(["TRAINER.DPL.CANDIDATES", "(0, 2, 4, 6)", "TRAINER.DPL.SEARCH.EPOCHS", "3"])
    assert tuple(cfg.TRAINER.DPL.CANDIDATES) == (0, 2, 4, 6) and cfg.TRAINER.DPL.SEARCH.EPOCHS == 3


def test_extend_cfg_keeps_a_forks_own_nodes_and_is_idempotent():
    cfg = get_cfg_default()
    cfg.TRAINER.MAPLE = CN()  # a fork's extend_cfg ran first, with its own values and fewer keys
    cfg.TRAINER.MAPLE.N_CTX = 4
    cfg.TRAINER.MAPLE.PREC = "amp"
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"
    extend_cfg(cfg)
    assert cfg.TRAINER.MAPLE.N_CTX == 4 and cfg.TRAINER.MAPLE.PREC == "amp"
    assert cfg.TRAINER.MAPLE.PROMPT_DEPTH == 9  # the missing key was added
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "base"
    cfg.TRAINER.DPL.SEARCH.EPOCHS = 5
    extend_cfg(cfg)  # again: nothing is reset
    assert cfg.TRAINER.DPL.SEARCH.EPOCHS == 5 and cfg.TRAINER.MAPLE.N_CTX == 4
    cfg.freeze()
    with pytest.raises(RuntimeError, match="before cfg.freeze"):
        extend_cfg(cfg)


@pytest.mark.parametrize("opts, message", [
    (["TRAINER.DPL.MODE", "serch"], "TRAINER.DPL.MODE must be one of"),
    (["TRAINER.DPL.MODE", "train"], "needs TRAINER.DPL.CONFIG_FILE"),
    (["TRAINER.DPL.PREC", "bf16"], "TRAINER.DPL.PREC must be one of"),
    (["TRAINER.DPL.CANDIDATES", "(2, 4)"], "must include 0"),
    (["TRAINER.DPL.MODE", "baseline", "TRAINER.DPL.CONFIG_FILE", "x.yaml"], "ignores TRAINER.DPL.CONFIG_FILE"),
    (["TRAINER.DPL.SEARCH.EPOCHS", "0"], r"SEARCH.EPOCHS must be at least 1, got 0: .*untrained alpha"),
    (["TRAINER.DPL.MODE", "search", "TRAINER.DPL.SEARCH.EPOCHS", "-1"], "SEARCH.EPOCHS must be at least 1"),
    (["TRAINER.DPL.CANDIDATES", "(0, 1.5, 3)"], r"CANDIDATES must be whole numbers of tokens, got \[0, 1.5, 3\]"),
    (["TRAINER.DPL.SEARCH.OBJECTIVE", "kgcoop"], r"SEARCH: OBJECTIVE must be one of \['method', 'cross_entropy'\]"),
    (["TRAINER.DPL.TRAIN.PROBE_EPOCHS", "-1"], r"TRAIN.PROBE_EPOCHS must be a whole number of epochs, 0 to always"),
])
def test_invalid_settings_are_rejected_with_the_key_named(opts, message):
    with pytest.raises(ValueError, match=message):
        check_dpl_cfg(dpl_cfg(opts=opts))


SHIPPED = sorted(glob.glob(os.path.join(REPO, "configs", "trainers", "DPL_*", "*.yaml")))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, os.path.join(REPO, "configs")))
def test_every_shipped_config_merges_and_validates(path):
    cfg = dpl_cfg(os.path.join(REPO, "configs", "datasets", "caltech101.yaml"), path)
    check_dpl_cfg(cfg)
    backbone = ((28, 28), "dpl-demo") if path.endswith("demo.yaml") else ((224, 224), "ViT-B/16")
    assert (tuple(cfg.INPUT.SIZE), cfg.MODEL.BACKBONE.NAME) == backbone
    assert cfg.OPTIM.LR_SCHEDULER == "cosine" and cfg.OPTIM.WARMUP_EPOCH == 1


@pytest.mark.parametrize("trainer", ["DPL_CoOp", "DPL_VPT", "DPL_IVLP", "DPL_MaPLe"])
def test_paper_recipe_is_the_papers(trainer):
    cfg = dpl_cfg(os.path.join(REPO, "configs", "trainers", trainer, "vit_b16_paper.yaml"))
    assert cfg.TRAINER.DPL.MODE == "dpl" and cfg.TRAINER.DPL.PREC == "fp32"
    optim = cfg.OPTIM
    assert (optim.NAME, optim.LR, optim.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == ("sgd", 0.0035, 40, 4)
    search = cfg.TRAINER.DPL.SEARCH
    assert (search.EPOCHS, search.VAL_BATCH_SIZE, search.ALPHA_LR, search.PRESET, search.SELECT) == (
        80, 16, 0.0035, "paper", "argmax") and cfg.TRAINER.DPL.TRAIN.INIT == "normal:0.02"
    assert tuple(cfg.TRAINER.DPL.CANDIDATES) == tuple(range(7))
    assert cfg.TRAIN.CHECKPOINT_FREQ > 0  # intermediate checkpoints, so an interrupted run resumes


@pytest.mark.parametrize("path", [p for p in SHIPPED if os.path.basename(p) in ("vit_b16.yaml", "demo.yaml")],
                         ids=lambda p: os.path.relpath(p, os.path.join(REPO, "configs")))
def test_default_recipes_search_for_no_more_than_their_train_stage(path):
    cfg = dpl_cfg(os.path.join(REPO, "configs", "datasets", "caltech101.yaml"), path)
    settings = SearchSettings.from_cfg(cfg.TRAINER.DPL.SEARCH).resolved()
    assert search_cost_in_train_epochs(settings) <= cfg.OPTIM.MAX_EPOCH
    # what benchmarks/search_quality.py chose at equal total cost: the robust preset, the train stage
    # continuing from the supernet's prompts
    assert settings.preset == "robust" and cfg.TRAINER.DPL.TRAIN.INIT == "searched"


def _trainer_class(name):
    import importlib
    import sys

    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    # The module name train.py uses, so that the trainer is registered in Dassl only once per process.
    return getattr(importlib.import_module("trainers." + name.lower()), name)


@pytest.mark.parametrize("trainer, config, text, vision, coupled", [
    ("DPL_MaPLe", "vit_b16_c2_ep5_batch4_2ctx", [2] * 9 + [0] * 3, [2] * 9 + [0] * 3, True),
    ("DPL_MaPLe", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets", [2] * 3 + [0] * 9, [2] * 3 + [0] * 9, True),
    ("DPL_IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", [2] * 12, [2] * 12, False),
    ("DPL_IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only", [4] * 12, [0] * 12, False),
    ("DPL_VPT", "vit_b16_c2_ep5_batch4_4", [0] * 12, [8] * 12, False),
    ("DPL_CoOp", "vit_b16_ep50", [16] + [0] * 11, [0] * 12, False),
    ("DPL_CoOp", "vit_b16_ctxv1", [4] + [0] * 11, [0] * 12, False),  # CoOp: one token per CTX_INIT word
    ("DPL_KgCoOp", "vit_b16_ep100_ctxv1", [4] + [0] * 11, [0] * 12, False),
    ("DPL_PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx", [4] * 9 + [0] * 3, [4] * 9 + [0] * 3, False),
    ("DPL_PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", [4] * 3 + [0] * 9, [4] * 3 + [0] * 9, False),
])
def test_baseline_configs_give_the_published_hand_designs(trainer, config, text, vision, coupled):
    cfg = dpl_cfg(os.path.join(REPO, "configs", "trainers", trainer, config + ".yaml"))
    assert cfg.TRAINER.DPL.MODE == "baseline"
    cls = _trainer_class(trainer)
    kwargs, ctx_init = cls.baseline_settings(None, cfg)
    hand = get_design(cls.design_name).baseline_config(VIT_B16, **kwargs)
    assert (hand.text, hand.vision, hand.coupled, hand.insertion) == (text, vision, coupled, "native")


@pytest.mark.parametrize("trainer", ["DPL_CoOp", "DPL_VPT", "DPL_IVLP", "DPL_MaPLe"])
def test_baseline_mode_without_a_config_file_is_the_designs_published_baseline(trainer):
    cls = _trainer_class(trainer)
    kwargs, _ = cls.baseline_settings(None, dpl_cfg())
    design = get_design(cls.design_name)
    assert design.baseline_config(VIT_B16, **kwargs) == design.baseline_config(VIT_B16)


def test_kgcoop_fork_config_reads_as_kgcoops_hand_design():
    """A KgCoOp fork's CoOp node: CTX_INIT is a bool there (True means "a photo of a", 4 tokens)."""
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CN({"N_CTX": 16, "CSC": False, "CTX_INIT": True, "W": 8.0, "PREC": "fp16",
                           "CLASS_TOKEN_POSITION": "end"})
    extend_cfg(cfg)
    cls = _trainer_class("DPL_KgCoOp")
    assert cls.baseline_settings(None, cfg) == ({"n_ctx": 4}, "a photo of a")
    cfg.TRAINER.COOP.CTX_INIT = False
    assert cls.baseline_settings(None, cfg) == ({"n_ctx": 16}, "")
    objective = cls.build_objective(None, cfg)
    assert (objective.weight, objective.template) == (8.0, "a photo of a {}.")


@pytest.mark.parametrize("choice, searched_with", [("method", "kgcoop"), ("cross_entropy", "cross_entropy")])
def test_search_objective_option_chooses_the_search_loss_and_enters_its_definition(choice, searched_with):
    from types import SimpleNamespace

    from dpl_plugin.dassl.run_definitions import search_definition
    from dpl_plugin.dassl.trainer import DPLTrainer
    from dpl_plugin.engine.objectives import KgCoOp

    cfg = dpl_cfg(opts=["TRAINER.DPL.SEARCH.OBJECTIVE", choice])
    objective = DPLTrainer._search_objective(SimpleNamespace(cfg=cfg, objective=KgCoOp(weight=8.0)))
    assert objective.name == searched_with
    definition = search_definition(cfg, "fp32", objective)
    assert definition.get("objective.name") == ("kgcoop" if choice == "method" else None)
    assert definition.get("objective.weight") == (8.0 if choice == "method" else None)
    assert "TRAINER.DPL.SEARCH.OBJECTIVE" not in definition  # said by the objective.* entries


@pytest.mark.parametrize("init, probe, recorded", [("searched", 5, 5), ("searched", 0, None), ("template", 5, None)])
def test_the_start_probe_enters_the_train_definition_only_where_it_probes(init, probe, recorded):
    """Without a probe the definition is what it was before the option existed, so models trained
    then stay reusable; a probed start is another training."""
    from dpl_plugin.dassl.run_definitions import train_definition

    cfg = dpl_cfg(opts=["TRAINER.DPL.TRAIN.INIT", init, "TRAINER.DPL.TRAIN.PROBE_EPOCHS", str(probe)])
    assert train_definition(cfg, "fp32", "a photo of a").get("TRAINER.DPL.TRAIN.PROBE_EPOCHS") == recorded


def test_optimizer_covers_only_the_given_parameters_and_schedules_as_dassl():
    learned, frozen = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    cfg = dpl_cfg(opts=["OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "OPTIM.MAX_EPOCH", "10", "OPTIM.LR_SCHEDULER",
                        "cosine", "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant"])
    optimizer, scheduler = build_optimizer_and_scheduler([learned], cfg.OPTIM)
    assert [p for g in optimizer.param_groups for p in g["params"]] == [learned] and frozen.grad is None
    # Dassl 0.6.3's per-epoch learning rates for this recipe (constant warm-up, WARMUP_RECOUNT=True).
    expected = [1e-5] + [0.002 * (1 + math.cos(math.pi * (e - 1) / 10)) / 2 for e in range(1, 10)]
    assert epoch_lrs(optimizer, scheduler, 10) == pytest.approx(expected, rel=1e-9)
    # The search stage overrides lr and length.
    optimizer, scheduler = build_optimizer_and_scheduler([learned], cfg.OPTIM, lr=0.0035, max_epoch=4)
    assert epoch_lrs(optimizer, scheduler, 4)[1] == pytest.approx(0.0035)


def test_unsupported_warmup_schedules_fail_clearly_and_plain_ones_use_dassl():
    param = torch.nn.Parameter(torch.zeros(1))
    cfg = dpl_cfg(opts=["OPTIM.LR_SCHEDULER", "single_step", "OPTIM.WARMUP_EPOCH", "1"])
    with pytest.raises(ValueError, match="use LR_SCHEDULER cosine, or WARMUP_EPOCH 0"):
        build_optimizer_and_scheduler([param], cfg.OPTIM)
    cfg = dpl_cfg(opts=["OPTIM.LR_SCHEDULER", "single_step", "OPTIM.STEPSIZE", "(2,)", "OPTIM.WARMUP_EPOCH", "0"])
    _, scheduler = build_optimizer_and_scheduler([param], cfg.OPTIM)
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
