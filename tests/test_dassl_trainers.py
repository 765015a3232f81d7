"""The four DPL trainers end to end, run as a user runs them: ``python train.py ...`` on CPU, with a small
CLIP saved to a file and a small Caltech101 written in CoOp's folder layout.

The runs are independent processes; the module fixture starts them in three waves (two at a time)
and the tests read what they printed and wrote:

1. per trainer: search + train 1 epoch (``A``); for DPL_IVLP also an uninterrupted 2-epoch run; a
   search-only run; a baseline run; ``scripts/base2new.sh`` (the drop-in into a fork: test_dassl_dropin.py);
2. per trainer: the same command with 2 epochs, which resumes (``B``); a searched configuration
   trained with ``MODE train`` and native insertion; a longer search resumed from its checkpoint;
   ``scripts/base2new.sh`` again (skips finished runs);
3. per trainer: ``--eval-only`` of ``B``'s model (``C``).
"""

import contextlib
import io
import os
import re
import shutil
import sys

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

import torch  # noqa: E402

from train_runs import TINY_OPTS, ScriptRun, Workspace, run_all  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINERS = ["DPL_CoOp", "DPL_VPT", "DPL_IVLP", "DPL_MaPLe"]
TEXT = {"DPL_CoOp": "custom", "DPL_VPT": "ensemble", "DPL_IVLP": "ensemble", "DPL_MaPLe": "default"}

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("dassl_trainers"))
    ws.cache_fewshot_split()
    return ws


@pytest.fixture(scope="module")
def runs(workspace):
    ws = workspace
    r = {"ws": ws}

    def run(trainer, name, *opts, **kwargs):  # the trainer's recipe with the tiny overrides, fixed text
        config = os.path.join(REPO, "configs", "trainers", trainer, "vit_b16.yaml")
        return ws.run(name, "TRAINER.DPL.TEXT", "default", *opts, trainer=trainer, config=config, **kwargs)

    text = {t: ["TRAINER.DPL.TEXT", TEXT[t]] for t in TRAINERS}
    first = {f"A/{t}": run(t, t, *text[t]) for t in TRAINERS}
    first["uninterrupted"] = run("DPL_IVLP", "ivlp_uninterrupted", *text["DPL_IVLP"], "OPTIM.MAX_EPOCH", "2")
    first["search_only"] = run("DPL_MaPLe", "search_only", "TRAINER.DPL.MODE", "search",
                               "TRAINER.DPL.SEARCH.PLOT", "True")
    first["baseline"] = run("DPL_MaPLe", "baseline", "TRAINER.DPL.MODE", "baseline",
                            "TRAINER.MAPLE.PROMPT_DEPTH", "2", "TRAINER.DPL.PREC", "fp16")
    first["base2new"] = ScriptRun(ws, "base2new.sh", "caltech101")
    run_all(first.values())
    r.update(first)

    searched = first["search_only"].path("search", "searched_config.yaml")
    second = {f"B/{t}": run(t, t, *text[t], "OPTIM.MAX_EPOCH", "2") for t in TRAINERS}
    second["train_native"] = run("DPL_MaPLe", "train_native", "TRAINER.DPL.MODE", "train",
                                 "TRAINER.DPL.CONFIG_FILE", searched, "TRAINER.DPL.INSERTION", "native",
                                 "TEST.FINAL_MODEL", "best_val")
    second["search_resumed"] = run("DPL_MaPLe", "search_resumed", "TRAINER.DPL.SEARCH.EPOCHS", "2")
    second["init_searched"] = run("DPL_MaPLe", "init_searched", "TRAINER.DPL.MODE", "train",
                                  "TRAINER.DPL.CONFIG_FILE", searched, "TRAINER.DPL.TRAIN.INIT", "searched",
                                  "OPTIM.WARMUP_CONS_LR", "1e-9", "TEST.NO_TEST", "True")
    probed = ["TRAINER.DPL.MODE", "train", "TRAINER.DPL.CONFIG_FILE", searched, "TRAINER.DPL.TRAIN.INIT", "searched",
              "TRAINER.DPL.TRAIN.PROBE_EPOCHS", "1", "OPTIM.WARMUP_CONS_LR", "1e-9", "TEST.NO_TEST", "True"]
    second["init_probed"] = run("DPL_MaPLe", "init_probed", *probed)
    second["probed_straight"] = run("DPL_MaPLe", "probed_straight", *probed, "OPTIM.MAX_EPOCH", "2")
    shutil.copytree(first["search_only"].path("search"), second["search_resumed"].path("search"))
    second["base2new_again"] = ScriptRun(ws, "base2new.sh", "caltech101")
    run_all(second.values())
    r.update(second)

    third = {"probed_resumed": run("DPL_MaPLe", "init_probed", *probed, "OPTIM.MAX_EPOCH", "2")}
    for t in TRAINERS:
        load_epoch = ["--load-epoch", "2"] if t in ("DPL_IVLP", "DPL_MaPLe") else []  # else: the latest
        third[f"C/{t}"] = run(t, t + "_eval", *text[t],
                              flags=["--eval-only", "--model-dir", r[f"B/{t}"].output_dir, *load_epoch])
    run_all(third.values())
    r.update(third)
    return r


@pytest.mark.parametrize("trainer", TRAINERS)
def test_search_then_train_then_evaluate(runs, trainer):
    run = runs[f"A/{trainer}"]
    log = run.ok()
    assert "Searching prompt lengths" in log and "Searched configuration (per-layer confidence)" in log
    assert re.search(r"^epoch \[1/1\] train loss", log, re.MULTILINE)  # the search's epoch line reached log.txt
    for name in ("searched_config.yaml", "alpha_history.json", "search_checkpoint.pth"):
        assert os.path.isfile(run.path("search", name)), name
    trained = open(run.path("prompt_config.yaml")).read()
    searched = open(run.path("search", "searched_config.yaml")).read()
    assert "insertion: prefix" in trained  # trained in the form it was searched in
    assert trained.split("provenance")[0] == searched.split("provenance")[0]
    assert "Finish training" in log and 0.0 <= run.accuracy <= 100.0
    assert os.path.isfile(run.path("prompt_learner", "model.pth.tar-1"))
    with open(run.path("log.txt")) as f:  # Dassl's log file, which CoOp-style parsers read
        assert "* accuracy:" in f.read()


@pytest.mark.parametrize("trainer", TRAINERS)
def test_rerun_with_more_epochs_resumes_from_the_checkpoint_and_reuses_the_search(runs, trainer):
    log = runs[f"B/{trainer}"].ok()
    assert "Using the finished search" in log and "Searching prompt lengths" not in log
    assert "Resumed from" in log and "model.pth.tar-1 (epoch 1)" in log
    assert "epoch [2/2]" in log and "epoch [1/2]" not in log
    assert os.path.isfile(runs[f"B/{trainer}"].path("prompt_learner", "model.pth.tar-2"))


def test_resumed_run_equals_the_uninterrupted_one(runs):
    resumed, uninterrupted = runs["B/DPL_IVLP"], runs["uninterrupted"]
    assert "Resumed from" not in uninterrupted.ok()
    a = torch.load(resumed.path("prompt_learner", "model.pth.tar-2"), weights_only=True)["state_dict"]
    b = torch.load(uninterrupted.path("prompt_learner", "model.pth.tar-2"), weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.accuracy == uninterrupted.accuracy


@pytest.mark.parametrize("trainer", TRAINERS)
def test_eval_only_reloads_the_model_and_gives_the_same_accuracy(runs, trainer):
    run = runs[f"C/{trainer}"]
    log = run.ok()
    assert "model.pth.tar-2" in log and "Searching" not in log  # eval-only never searches
    assert run.accuracy == runs[f"B/{trainer}"].accuracy


@pytest.mark.parametrize("trainer", TRAINERS)
def test_checkpoints_hold_only_what_was_learned(runs, trainer):
    run = runs[f"B/{trainer}"]
    path = run.path("prompt_learner", "model.pth.tar-2")
    state = torch.load(path, weights_only=True)  # loads without unpickling any object
    assert set(state["state_dict"]) and all(re.match(r"^(text|vision|maps)\.\d+", k) for k in state["state_dict"])
    assert os.path.getsize(path) < os.path.getsize(runs["ws"].clip) / 20
    assert state["epoch"] == 2 and state["prompt_config"]["insertion"] == "prefix"
    pointer = open(run.path("prompt_learner", "checkpoint")).read().strip()
    assert pointer == "model.pth.tar-2"


def test_search_only_mode_writes_the_configuration_and_trains_nothing(runs):
    run = runs["search_only"]
    log = run.ok()
    assert "Search finished" in log and "TRAINER.DPL.CONFIG_FILE" in log
    assert not os.path.exists(run.path("prompt_learner")) and "* accuracy" not in log
    assert os.path.isfile(run.path("search", "alpha_coupled.png"))  # MaPLe's search shares one table


def test_a_longer_search_resumes_the_finished_shorter_one(runs):
    log = runs["search_resumed"].ok()
    assert "Resumed the search from" in log and "after epoch 1" in log
    assert re.search(r"^epoch \[2/2\] train loss", log, re.MULTILINE) and "Finish training" in log


def test_train_mode_trains_a_given_configuration_with_native_insertion(runs):
    run = runs["train_native"]
    log = run.ok()
    assert "Searching" not in log and not os.path.exists(run.path("search"))
    assert "native insertion, coupled" in log and 0.0 <= run.accuracy <= 100.0
    assert "insertion: native" in open(run.path("prompt_config.yaml")).read()
    # TEST.FINAL_MODEL best_val: validated every epoch, the best model deployed for the final test
    assert os.path.isfile(run.path("prompt_learner", "model-best.pth.tar"))
    assert "Deploy the model with the best val performance" in log and 'model-best.pth.tar" (epoch = 1)' in log


def test_train_init_searched_starts_from_the_supernet_prompts(runs):
    """One epoch at the warm-up's 1e-9 learning rate: the trained prompts are still the supernet's
    candidates of the searched lengths, and the coupling maps the supernet's maps."""
    from dpl_plugin.dassl import checkpoint_folder

    run = runs["init_searched"]
    run.ok()
    trained = checkpoint_folder.read(run.path("prompt_learner", "model.pth.tar-1"))
    search_dir = runs["search_only"].path("search")
    supernet = torch.load(os.path.join(search_dir, "search_checkpoint.pth"), weights_only=True)["learner"]
    candidates = list(range(7))
    lengths = trained["prompt_config"]["text"]
    assert any(lengths), "the searched configuration has no text prompts to compare"
    for layer, n in enumerate(lengths):
        if n:
            start = sum(candidates[:n])
            torch.testing.assert_close(trained["state_dict"][f"text.{layer}"],
                                       supernet[f"text.{layer}"][start:start + n], atol=1e-5, rtol=0)
            torch.testing.assert_close(trained["state_dict"][f"maps.{layer}.weight"],
                                       supernet[f"maps.{layer}.weight"], atol=1e-5, rtol=0)


def test_train_probe_starts_from_the_start_that_validates_better(runs):
    """TRAIN.PROBE_EPOCHS 1: each start is probed for the train stage's first epoch (its warm-up at
    1e-9), the better one is kept, and the trained prompts are that start's: the supernet's
    candidates if inherited, anything else if fresh."""
    from dpl_plugin.dassl import checkpoint_folder

    run = runs["init_probed"]
    log = run.ok()
    probe = re.search(r"Start probe \(the train stage's first 1 epochs from each start; validation accuracy\): "
                      r"searched ([\d.]+)%, template ([\d.]+)%\. The train stage starts from (\w+)", log)
    assert probe, log[-2000:]
    searched_acc, template_acc, chosen = float(probe.group(1)), float(probe.group(2)), probe.group(3)
    assert chosen == ("searched" if searched_acc >= template_acc else "template")
    trained = checkpoint_folder.read(run.path("prompt_learner", "model.pth.tar-1"))
    supernet = torch.load(runs["search_only"].path("search", "search_checkpoint.pth"), weights_only=True)["learner"]
    assert any(trained["prompt_config"]["text"]), "the searched configuration has no text prompts to compare"
    layer = next(i for i, n in enumerate(trained["prompt_config"]["text"]) if n)
    start = sum(range(trained["prompt_config"]["text"][layer]))
    inherited = torch.allclose(trained["state_dict"][f"text.{layer}"], supernet[f"text.{layer}"][start:start + len(
        trained["state_dict"][f"text.{layer}"])], atol=1e-5, rtol=0)
    assert inherited == (chosen == "searched")
    assert trained["definition"]["TRAINER.DPL.TRAIN.PROBE_EPOCHS"] == 1


def test_a_probed_run_resumes_without_probing_again_and_equals_the_uninterrupted_one(runs):
    resumed, straight = runs["probed_resumed"], runs["probed_straight"]
    log = resumed.ok()
    assert "Resumed from" in log and "Start probe" not in log
    assert "Start probe" in straight.ok()
    a = torch.load(resumed.path("prompt_learner", "model.pth.tar-2"), weights_only=True)["state_dict"]
    b = torch.load(straight.path("prompt_learner", "model.pth.tar-2"), weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_baseline_mode_trains_the_hand_design_natively_without_search(runs):
    run = runs["baseline"]
    log = run.ok()
    assert "Searching" not in log and not os.path.exists(run.path("search"))
    assert "Prompt configuration (native insertion, coupled): text [2, 2, 0] vision [2, 2, 0]" in log
    assert "TRAINER.DPL.PREC fp16 needs a GPU; running fp32 on cpu" in log
    assert "Finish training" in log and 0.0 <= run.accuracy <= 100.0


def test_base2new_script_follows_the_folder_conventions_and_skips_finished_runs(runs):
    log = runs["base2new"].ok()
    common = os.path.join("caltech101", "shots_16", "DPL_CoOp", "vit_b16", "seed1")
    train_dir = os.path.join(runs["base2new"].output_dir, "base2new", "train_base", common)
    test_dir = os.path.join(runs["base2new"].output_dir, "base2new", "test_new", common)
    assert os.path.isfile(os.path.join(train_dir, "search", "searched_config.yaml"))
    assert os.path.isfile(os.path.join(test_dir, "log.txt")) and log.count("SUBSAMPLE") >= 2
    again = runs["base2new_again"].ok()
    assert again.count("skipped") == 2 and "Loading trainer" not in again

    sys.path.insert(0, REPO)
    import parse_results

    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        parse_results.main(["--base2new", os.path.join(runs["base2new"].output_dir, "base2new")])
    assert re.search(r"caltech101/shots_16/DPL_CoOp/vit_b16: base [\d.]+  new [\d.]+  HM [\d.]+", summary.getvalue())


# -- errors a user can run into, in-process (no new interpreter needed) ---------------------------------

def _trainer_in_process(ws, tmp_path, *opts):
    import importlib.util

    from dassl.engine import build_trainer

    if REPO not in sys.path:
        sys.path.insert(0, REPO)  # train.py imports the repository's trainers/ package

    spec = importlib.util.spec_from_file_location("dpl_train_script", os.path.join(REPO, "train.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # registers the trainers (once per process) like `python train.py`
    from dpl_plugin.dassl.datasets import register_datasets
    register_datasets()
    args = script.build_parser().parse_args(
        ["--root", ws.data, "--trainer", "DPL_MaPLe", "--output-dir", str(tmp_path),
         "--config-file", os.path.join(REPO, "configs", "trainers", "DPL_MaPLe", "vit_b16.yaml"),
         "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "caltech101.yaml"),
         "DATASET.NUM_SHOTS", "4", "MODEL.BACKBONE.NAME", ws.clip, *TINY_OPTS, "TRAINER.DPL.TEXT", "default",
         "USE_CUDA", "False", *opts])
    return build_trainer(script.setup_cfg(args))


def test_input_size_must_match_the_backbone(workspace, tmp_path):
    with pytest.raises(ValueError, match=r"INPUT.SIZE is \(224, 224\).*set INPUT.SIZE \(32, 32\)"):
        _trainer_in_process(workspace, tmp_path, "INPUT.SIZE", "(224, 224)")


def test_configuration_of_another_design_is_rejected(workspace, tmp_path):
    from dpl_plugin import PromptConfig, PromptConfigError

    path = PromptConfig(text=[2, 0, 0], vision=[0, 3, 0]).save(str(tmp_path / "independent.yaml"))
    with pytest.raises(PromptConfigError, match="train it with DPL_IVLP"):
        _trainer_in_process(workspace, tmp_path, "TRAINER.DPL.MODE", "train", "TRAINER.DPL.CONFIG_FILE", path)


def test_corrupt_or_foreign_checkpoints_give_clear_errors(workspace, tmp_path):
    from dpl_plugin import PromptConfigError
    from dpl_plugin.engine.checkpoint import CorruptCheckpointError

    with pytest.raises(PromptConfigError, match="TRAINER.COOP, VPT, IVLP or MAPLE"):  # depth 9 > 3 layers
        _trainer_in_process(workspace, tmp_path, "TRAINER.DPL.MODE", "baseline")
    trainer = _trainer_in_process(workspace, tmp_path, "TRAINER.DPL.MODE", "baseline",
                                  "TRAINER.MAPLE.PROMPT_DEPTH", "2")
    folder = tmp_path / "model" / "prompt_learner"
    folder.mkdir(parents=True)
    (folder / "model.pth.tar-1").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptCheckpointError, match="model.pth.tar-1"):
        trainer.load_model(str(tmp_path / "model"), epoch=1)
    torch.save({"state_dict": {}, "epoch": 1}, folder / "model.pth.tar-2")  # e.g. a MaPLe checkpoint
    with pytest.raises(CorruptCheckpointError, match="not a dpl-plugin trainer checkpoint"):
        trainer.load_model(str(tmp_path / "model"), epoch=2)
    with pytest.raises(FileNotFoundError, match="Available: \\['model.pth.tar-1', 'model.pth.tar-2'\\]"):
        trainer.load_model(str(tmp_path / "model"), epoch=5)


def test_text_checkpoint_option_reaches_the_text_encoder(workspace, tmp_path):
    baseline = ("TRAINER.DPL.MODE", "baseline", "TRAINER.MAPLE.PROMPT_DEPTH", "2")
    assert not _trainer_in_process(workspace, tmp_path / "a", *baseline).model.text_encoder.checkpoint
    trainer = _trainer_in_process(workspace, tmp_path / "b", *baseline, "TRAINER.DPL.TEXT_CHECKPOINT", "True")
    assert trainer.model.text_encoder.checkpoint
