"""A trained model or a search on disk is reused only when it is what the run asks for; otherwise the
run is refused with the settings that differ (``key: old -> new``) and how to start over."""

import os

import pytest
import torch

from conftest import CLASSNAMES
from dpl_plugin.search import SearchSettings
from dpl_plugin.search.definition import SearchDefinitionMismatchError
from dpl_plugin.search.stage import search_prompt_lengths
from test_search_loop import loaders

TINY = dict(design="ivlp", candidates=(0, 1))


def _search(clip, folder, classnames=CLASSNAMES, data=None, lr=3.5e-3):
    train, val = data or loaders()
    return search_prompt_lengths(clip, classnames, train, val, settings=SearchSettings(epochs=1, plot=False, lr=lr),
                                 output_dir=str(folder), **TINY)


def test_plain_api_refuses_a_finished_search_for_other_classes_data_or_lr(tiny_clip, tmp_path):
    first = _search(tiny_clip, tmp_path)
    again = _search(tiny_clip, tmp_path)  # the same search: reused
    assert again.config.to_dict() == first.config.to_dict()
    before = {f: os.path.getmtime(tmp_path / f) for f in os.listdir(tmp_path) if not f.startswith(".")}
    cases = {
        "classnames": dict(classnames=list(reversed(CLASSNAMES))),
        "train_data": dict(data=loaders(seed=1)),
        "lr": dict(lr=0.01),
    }
    for key, change in cases.items():
        with pytest.raises(SearchDefinitionMismatchError, match=rf"{key}: .* -> .*To search again, delete {tmp_path}"):
            _search(tiny_clip, tmp_path, **change)
    after = {f: os.path.getmtime(tmp_path / f) for f in before}
    assert after == before  # nothing already written is touched


def test_plain_api_refuses_an_interrupted_search_for_other_data(tiny_clip, tmp_path):
    _search(tiny_clip, tmp_path)
    os.remove(tmp_path / "searched_config.yaml")  # as if stopped before the end: only the checkpoint is left
    with pytest.raises(SearchDefinitionMismatchError, match=r"interrupted search .*val_data: "):
        train, _ = loaders()
        _search(tiny_clip, tmp_path, data=(train, loaders(seed=2)[1]))


# -- the Dassl train stage ------------------------------------------------------------------------
BASELINE = ("TRAINER.DPL.MODE", "baseline", "TRAINER.MAPLE.PROMPT_DEPTH", "2")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")
    from test_dassl_trainers import Workspace
    return Workspace(tmp_path_factory.mktemp("stale_train"))


def test_a_trained_model_is_resumed_only_with_the_same_train_definition(workspace, tmp_path):
    from test_dassl_trainers import _trainer_in_process
    from dpl_plugin.dassl.run_definitions import TrainDefinitionMismatchError

    trained = _trainer_in_process(workspace, tmp_path, *BASELINE, "OPTIM.MAX_EPOCH", "3")
    trained.save_model(2, str(tmp_path))  # as a finished 3-epoch run leaves it
    checkpoint = tmp_path / "prompt_learner" / "model.pth.tar-3"
    saved = checkpoint.read_bytes()
    for opts, expected in (
            (("OPTIM.LR", "0.01"), r"OPTIM.LR: 0.0035 -> 0.01"),
            (("TRAINER.DPL.TRAIN.INIT", "template"), r"TRAINER.DPL.TRAIN.INIT: '[^']+' -> 'template'"),
            (("SEED", "2"), r"SEED: -?\d+ -> 2"),
            (("OPTIM.MAX_EPOCH", "2"), r"trained for 3 epochs, but this run asks for 2 \(OPTIM.MAX_EPOCH: 3 -> 2\)")):
        rerun = _trainer_in_process(workspace, tmp_path, *BASELINE, "OPTIM.MAX_EPOCH", "3", *opts)
        with pytest.raises(TrainDefinitionMismatchError, match=expected + r".*To train again, delete .*prompt_learner"):
            rerun.resume_model_if_exist(str(tmp_path))
    assert checkpoint.read_bytes() == saved
    same = _trainer_in_process(workspace, tmp_path, *BASELINE, "OPTIM.MAX_EPOCH", "4")  # more epochs: extended
    assert same.resume_model_if_exist(str(tmp_path)) == 3
    learned, resumed = trained.model.prompt_learner.state_dict(), same.model.prompt_learner.state_dict()
    assert learned.keys() == resumed.keys() and all(torch.equal(learned[k], resumed[k]) for k in learned)
