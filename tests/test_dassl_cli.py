"""``train.py`` on bad input, run as a user runs it: each expected error ends the process with one
message naming the problem and the fix, exit code 1 and no traceback (``DPL_DEBUG=1`` shows it);
Ctrl-C ends it with exit code 130 and the same command resumes; nothing already written is lost.
"""

import os
import re
import shutil

import pytest

pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")

from train_runs import Run, Workspace, run_all  # noqa: E402

BASELINE = ("TRAINER.DPL.MODE", "baseline", "TRAINER.MAPLE.PROMPT_DEPTH", "2")  # no search: quicker
NAN_INPUTS = ("INPUT.PIXEL_STD", "[1e-45, 1e-45, 1e-45]")  # normalised images overflow to inf: the loss is NaN


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("dassl_cli"))


def _as_if_trained_with_nan_inputs(output_dir):
    """Record NAN_INPUTS in the checkpoint's train definition, so that the run resumes it (a run with
    other settings than its checkpoint's is refused) and meets the NaN in its next epoch."""
    import torch

    from dpl_plugin.engine.checkpoint import save_checkpoint

    path = os.path.join(output_dir, "prompt_learner", "model.pth.tar-1")
    state = torch.load(path, weights_only=True)
    state["definition"][NAN_INPUTS[0]] = [1e-45, 1e-45, 1e-45]
    save_checkpoint(state, path)


@pytest.fixture(scope="module")
def runs(workspace):
    ws = workspace
    first = {
        "unknown_key": ws.run("unknown_key", "TRAINER.DPL.SEARCH.EPOCH", "2"),
        "debug": ws.run("debug", "TRAINER.DPL.SEARCH.EPOCH", "2", DPL_DEBUG="1"),
        "bad_type": ws.run("bad_type", "TRAINER.DPL.SEARCH.EPOCHS", "many"),
        "unknown_trainer": ws.run("unknown_trainer", trainer="DPL_Maple"),
        "missing_config": ws.run("missing_config", config=os.path.join(ws.root, "no_such.yaml")),
        "missing_weights": ws.run("missing_weights", "MODEL.BACKBONE.NAME", os.path.join(ws.root, "ViT-B-16.pt")),
        "missing_data": ws.run("missing_data", root=os.path.join(ws.root, "empty")),
        "trained": ws.run("trained", *BASELINE, "DATALOADER.NUM_WORKERS", "64"),
        "nan_first_epoch": ws.run("nan_first_epoch", *BASELINE, *NAN_INPUTS),
    }
    run_all(first.values())
    trained = first["trained"]
    trained.ok()
    second = {}
    for name in ("other_config", "nan_after_resume"):  # each on its own copy of the trained run's folder
        shutil.copytree(trained.output_dir, os.path.join(ws.root, "output", name))
    _as_if_trained_with_nan_inputs(os.path.join(ws.root, "output", "nan_after_resume"))
    second["other_config"] = ws.run("other_config", *BASELINE[:2], "TRAINER.MAPLE.PROMPT_DEPTH", "1")
    second["nan_after_resume"] = ws.run("nan_after_resume", *BASELINE, *NAN_INPUTS, "OPTIM.MAX_EPOCH", "2")
    run_all(second.values())
    return {**first, **second}


def test_unknown_option_key_names_the_closest_valid_one(runs):
    message = runs["unknown_key"].failed_with_one_line()
    assert message == ("error: option TRAINER.DPL.SEARCH.EPOCH 2: TRAINER.DPL.SEARCH.EPOCH is not a config key: "
                       "did you mean TRAINER.DPL.SEARCH.EPOCHS?")


def test_debug_environment_variable_shows_the_traceback(runs):
    run = runs["debug"]
    assert run.returncode == 1 and "Traceback (most recent call last)" in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: option TRAINER.DPL.SEARCH.EPOCH 2")


def test_option_value_of_the_wrong_type_names_the_expected_type(runs):
    message = runs["bad_type"].failed_with_one_line()
    assert "TRAINER.DPL.SEARCH.EPOCHS takes a value of type int" in message and "got many" in message


def test_unknown_trainer_names_the_closest_registered_one(runs):
    assert runs["unknown_trainer"].failed_with_one_line() == (
        "error: --trainer: 'DPL_Maple' is not a known trainer: did you mean DPL_MaPLe?")


def test_missing_config_file_is_named(runs):
    message = runs["missing_config"].failed_with_one_line()
    assert message.startswith("error: --config-file ") and message.endswith("no_such.yaml: no such file")


def test_missing_weights_say_what_to_pass(runs):
    message = runs["missing_weights"].failed_with_one_line()
    assert "ViT-B-16.pt' not found" in message and "Pass a model name or the path to a .pt file" in message


def test_missing_dataset_folder_shows_the_expected_layout(runs):
    message = runs["missing_data"].failed()
    assert message.splitlines()[0].startswith("error: Caltech101: dataset folder not found: ")
    assert "split_zhou_Caltech101.json" in message  # the following lines show the tree and how to get it


def test_workers_beyond_the_cpu_count_are_lowered_with_one_line(runs):
    log = runs["trained"].ok()
    cpus = len(os.sched_getaffinity(0))
    line = f"DATALOADER.NUM_WORKERS 64 is more than the {cpus} CPUs available: using {cpus}"
    assert log.count(line) == 1
    assert line in open(runs["trained"].path("log.txt")).read()


def test_nan_before_any_checkpoint_says_none_exists(runs):
    run = runs["nan_first_epoch"]
    message = run.failed_with_one_line()
    assert message.startswith("error: the training loss is nan at epoch 1, batch 1.")
    assert "no training checkpoint has been written yet" in message and "prompt_learner" not in message
    assert not os.path.exists(run.path("prompt_learner"))


def test_nan_after_resuming_names_the_checkpoint_that_exists_and_keeps_it(runs):
    run, trained = runs["nan_after_resume"], runs["trained"]
    message = run.failed_with_one_line()
    checkpoint = run.path("prompt_learner", "model.pth.tar-1")
    assert f"at epoch 2, batch 1. Nothing was written for this epoch; the latest training checkpoint, {checkpoint}, " \
           f"is intact." in message
    import torch

    resumed, original = (torch.load(path, weights_only=True) for path in
                         (checkpoint, trained.path("prompt_learner", "model.pth.tar-1")))
    assert all(torch.equal(resumed["state_dict"][k], v) for k, v in original["state_dict"].items())  # intact
    assert not os.path.exists(run.path("prompt_learner", "model.pth.tar-2"))


def test_resuming_with_another_prompt_configuration_is_refused_and_loses_nothing(runs):
    run, trained = runs["other_config"], runs["trained"]
    message = run.failed_with_one_line()
    assert re.search(r"model\.pth\.tar-1 was trained with another prompt configuration .* Use another output "
                     r"directory, or delete .*prompt_learner to train from scratch", message)
    with open(run.path("prompt_learner", "model.pth.tar-1"), "rb") as a, \
            open(trained.path("prompt_learner", "model.pth.tar-1"), "rb") as b:
        assert a.read() == b.read()


def test_ctrl_c_exits_130_and_the_same_command_resumes(workspace):
    command = workspace.run("interrupted", "TRAINER.DPL.MODE", "search", "TRAINER.DPL.SEARCH.EPOCHS", "3",
                            PYTHONUNBUFFERED="1")
    interrupted = command.interrupt_after("epoch [2/3] train loss")  # epoch 1's checkpoint was written before epoch 2
    message = interrupted.failed_with_one_line(code=130)
    assert "Interrupted" in message and "run the same command again to resume" in message
    assert os.path.isfile(interrupted.path("search", "search_checkpoint.pth"))

    resumed = Run(command.args, command.output_dir, **command.env)()
    log = resumed.ok()
    assert re.search(r"Resumed the search from .*search_checkpoint\.pth after epoch [12]\b", log)
    assert "Search finished" in log


def test_train_py_starts_without_warnings(runs):
    """No deprecation notice from clip's pkg_resources import (nor any other) at start."""
    trained = runs["trained"]
    assert "Warning" not in trained.stderr and "pkg_resources" not in trained.log, trained.stderr[-2000:]
