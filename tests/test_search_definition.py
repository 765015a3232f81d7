"""A search on disk is reused or resumed only when it is the search the run asks for.

The Dassl tests run a real one-epoch search in-process, then build trainers for the same output
folder with one setting changed at a time, as a user re-running a command with an edited option.
"""

import json
import os

import pytest

from dpl_plugin.search.definition import (DEFINITION_FILE, SearchDefinitionMismatchError, check_finished,
                                          check_unfinished, differences, flatten)

OLD = {"TRAINER.DPL.CANDIDATES": [0, 1, 2], "TRAINER.DPL.SEARCH.EPOCHS": 4, "TRAINER.DPL.SEARCH.LR": 0.0035,
       "SEED": 1}


def test_differences_name_every_changed_key_but_the_epoch_count():
    new = {**OLD, "TRAINER.DPL.CANDIDATES": [0, 2, 4], "TRAINER.DPL.SEARCH.EPOCHS": 8, "DATASET.NUM_SHOTS": 4}
    assert differences(OLD, new) == ["DATASET.NUM_SHOTS: '(unset)' -> 4",
                                     "TRAINER.DPL.CANDIDATES: [0, 1, 2] -> [0, 2, 4]"]
    assert differences(OLD, {**OLD, "TRAINER.DPL.CANDIDATES": (0, 1, 2)}) == []  # tuples as YAML reads them


def test_a_definition_without_later_options_compares_as_their_legacy_values():
    later = {"NESTED": False, "PATHS": "mixture", "SELECT": "argmax", "ALPHA_NOISE": 0.0, "BETA_DECAY": 0.0}
    for scope in ("TRAINER.DPL.SEARCH.", "settings."):  # a Dassl run's keys; the API's and a checkpoint's
        keys = {f"{scope}{k if scope.isupper() else k.lower()}": v for k, v in later.items()}
        assert differences(OLD, {**OLD, **keys}) == [] and differences({**OLD, **keys}, OLD) == []
        nested = f"{scope}{'NESTED' if scope.isupper() else 'nested'}"
        assert differences(OLD, {**OLD, **keys, nested: True}) == [f"{nested}: False -> True"]
    assert differences(OLD, {**OLD, "DATASET.NESTED": False}) == ["DATASET.NESTED: '(unset)' -> False"]


def test_flatten_takes_whole_nodes_so_new_keys_are_covered():
    node = {"EPOCHS": 2, "ALPHA_BETAS": (0.5, 0.999), "PLOT": True, "NEW": {"KEY": "x"}}
    assert flatten(node, "S.", skip=("PLOT",)) == {"S.EPOCHS": 2, "S.ALPHA_BETAS": [0.5, 0.999], "S.NEW.KEY": "x"}


def test_finished_search_is_reused_extended_or_refused_by_its_epoch_count(tmp_path):
    path = str(tmp_path / "search" / "searched_config.yaml")
    assert check_finished(OLD, dict(OLD), path) is True  # the same search: reuse
    assert check_finished(OLD, {**OLD, "TRAINER.DPL.SEARCH.EPOCHS": 6}, path) is False  # longer: resume it
    with pytest.raises(SearchDefinitionMismatchError, match=r"ran 4 epochs, but this run asks for 2 .*set EPOCHS 4"):
        check_finished(OLD, {**OLD, "TRAINER.DPL.SEARCH.EPOCHS": 2}, path)
    with pytest.raises(SearchDefinitionMismatchError, match="records no search definition.*MODE train"):
        check_finished(None, OLD, path)
    with pytest.raises(SearchDefinitionMismatchError) as err:
        check_finished(OLD, {**OLD, "SEED": 2}, path)
    assert "SEED: 1 -> 2" in str(err.value) and f"delete {tmp_path / 'search'}" in str(err.value)


def test_unfinished_search_records_its_definition_and_refuses_another(tmp_path):
    check_unfinished(str(tmp_path), OLD, resuming=False)
    assert json.loads((tmp_path / DEFINITION_FILE).read_text()) == OLD
    check_unfinished(str(tmp_path), {**OLD, "TRAINER.DPL.SEARCH.EPOCHS": 9}, resuming=True)  # longer: fine
    with pytest.raises(SearchDefinitionMismatchError, match=r"interrupted search .*TRAINER.DPL.SEARCH.LR: 0.0035 -> 0.1"):
        check_unfinished(str(tmp_path), {**OLD, "TRAINER.DPL.SEARCH.LR": 0.1}, resuming=True)
    check_unfinished(str(tmp_path), {**OLD, "SEED": 3}, resuming=False)  # no checkpoint: a new search
    assert json.loads((tmp_path / DEFINITION_FILE).read_text())["SEED"] == 3


# -- the Dassl trainers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A workspace and the output folder of a finished one-epoch DPL_MaPLe search."""
    pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")
    from test_dassl_trainers import Workspace, _trainer_in_process

    ws = Workspace(tmp_path_factory.mktemp("definition"))
    output = tmp_path_factory.mktemp("definition_run")
    _trainer_in_process(ws, output, "TRAINER.DPL.MODE", "search").train()
    assert os.path.isfile(output / "search" / "searched_config.yaml")
    return ws, output


def _trainer(searched, *opts):
    from test_dassl_trainers import _trainer_in_process

    ws, output = searched
    return _trainer_in_process(ws, output, *opts)


@pytest.mark.parametrize("opts, change", [
    (["TRAINER.DPL.CANDIDATES", "(0, 1, 2)"], "TRAINER.DPL.CANDIDATES: [0, 1, 2, 3, 4, 5, 6] -> [0, 1, 2]"),
    (["SEED", "2"], "SEED: -1 -> 2"),
    (["DATASET.NUM_SHOTS", "2"], "DATASET.NUM_SHOTS: 4 -> 2"),
    (["DATASET.SUBSAMPLE_CLASSES", "base"], "DATASET.SUBSAMPLE_CLASSES: 'all' -> 'base'"),
    (["TRAINER.DPL.SEARCH.ALPHA_LR", "0.01"], "TRAINER.DPL.SEARCH.ALPHA_LR: 0.0175 -> 0.01"),
    (["OPTIM.MOMENTUM", "0.5"], "OPTIM.MOMENTUM: 0.9 -> 0.5"),
])
def test_a_changed_search_setting_refuses_the_finished_search(searched, opts, change):
    with pytest.raises(ValueError) as err:
        _trainer(searched, *opts)
    message = str(err.value)
    assert change in message and "searched_config.yaml" in message
    assert "delete" in message and "another output directory" in message
    assert os.path.isfile(searched[1] / "search" / "searched_config.yaml")  # nothing lost


def test_the_same_search_is_reused_whatever_the_cosmetic_or_train_stage_settings(searched, capsys):
    trainer = _trainer(searched, "TRAINER.DPL.SEARCH.PLOT", "True", "OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "0.1")
    assert trainer.model is not None and "Using the finished search" in capsys.readouterr().out


def test_a_longer_search_is_resumed_and_an_interrupted_one_compared(searched):
    trainer = _trainer(searched, "TRAINER.DPL.SEARCH.EPOCHS", "2")
    assert trainer.model is None  # no configuration yet: train() resumes the search from its checkpoint
    ws, output = searched
    interrupted = output.parent / "interrupted"  # a search stopped after its checkpoint, before its result
    os.makedirs(interrupted / "search")
    for name in ("search_checkpoint.pth", DEFINITION_FILE):
        (interrupted / "search" / name).write_bytes((output / "search" / name).read_bytes())
    from test_dassl_trainers import _trainer_in_process

    changed = _trainer_in_process(ws, interrupted, "TRAINER.DPL.MODE", "search", "TRAINER.DPL.CANDIDATES", "(0, 2)")
    with pytest.raises(ValueError, match=r"interrupted search .*TRAINER.DPL.CANDIDATES: \[0, 1, 2, 3, 4, 5, 6\] -> \[0, 2\]"):
        changed.train()
