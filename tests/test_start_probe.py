"""The start probe (``TRAIN.PROBE_EPOCHS``): the train stage's first epochs from each start, the
start that validates better kept."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import CLASSNAMES
from dpl_plugin import PromptConfig, build_prompted_clip
from dpl_plugin.engine.start_probe import probe_starts
from dpl_plugin.engine.training import TrainSettings, evaluate, train_prompts
from dpl_plugin.runtime.reproducibility import seed_everything
from dpl_plugin.search import SearchSettings
from dpl_plugin.search.cost import cost_line, probe_cost_in_train_epochs
from test_training import data

CONFIG = PromptConfig.ivlp(2, 2, 2, 2, 3, 3)


def test_stop_after_runs_the_first_epochs_of_the_same_schedule(tiny_clip):
    """A probe's epochs are the train stage's own: the same losses as the first epochs of the full run."""
    settings = TrainSettings(epochs=4, lr=0.5, warmup_epochs=1)
    histories = []
    for stop in (None, 2):
        seed_everything(0)
        model = build_prompted_clip(tiny_clip, CLASSNAMES, CONFIG)
        loader = DataLoader(data(), batch_size=5, shuffle=True)
        histories.append(train_prompts(model, loader, settings, progress=False, stop_after=stop))
    assert len(histories[0]) == 4 and histories[1] == histories[0][:2]


def test_the_probe_keeps_the_start_that_validates_better(tiny_clip):
    """A constructed answer: the validation labels are start ``right``'s own predictions, and a probe
    inside the warm-up (learning rate 1e-12) leaves both starts where they began, so the probe must
    score ``right`` 100% and keep it, though ``other`` is listed first (the first wins ties)."""
    def build(start):
        seed_everything(3)
        init = "normal:0.02" if start == "right" else "uniform"
        return build_prompted_clip(tiny_clip, CLASSNAMES, CONFIG, text_init=init, vision_init=init)

    images = data(10, seed=1).tensors[0]
    with torch.no_grad():
        labels = build("right")(images).argmax(1)
    val = DataLoader(TensorDataset(images, labels), batch_size=10)
    expected = {start: evaluate(build(start), val, progress=False) for start in ("other", "right")}
    assert expected == {"other": pytest.approx(expected["other"]), "right": 100.0} and expected["other"] < 100
    settings = TrainSettings(epochs=10, lr=0.5, warmup_epochs=1, warmup_lr=1e-12)
    result = probe_starts(build, ["other", "right"], DataLoader(data(), batch_size=5, shuffle=True), val, settings,
                          epochs=1, seed=0)
    assert result.chosen == "right"
    assert result.val_acc == pytest.approx(expected, abs=1e-9)
    assert result.samples == 2 * len(data())  # one epoch from each start, counted forward and backward
    assert "first 1 epochs" in result.describe() and "The train stage starts from right" in result.describe()


def test_each_start_is_scored_as_its_own_training_would_score_it(tiny_clip):
    """Reference computation: the probe's validation accuracy of a start is that of the same start
    trained the same first epochs on its own; equal scores keep the first start listed."""
    val = DataLoader(data(10, seed=1), batch_size=10)
    settings = TrainSettings(epochs=6, lr=0.5, warmup_epochs=1)

    def build(start):
        model = build_prompted_clip(tiny_clip, CLASSNAMES, CONFIG, text_init=start, vision_init=start)
        return model

    def reference(start):
        seed_everything(7)
        model = build(start)
        seed_everything(7)  # the train stage's batches whatever building the start drew
        train_prompts(model, DataLoader(data(), batch_size=5, shuffle=True), settings, progress=False, stop_after=2)
        return evaluate(model, val, progress=False)

    starts = ["normal:0.02", "uniform"]
    result = probe_starts(build, starts, DataLoader(data(), batch_size=5, shuffle=True), val, settings, 2, seed=7)
    assert result.val_acc == {s: reference(s) for s in starts}
    assert result.chosen == max(starts, key=lambda s: (result.val_acc[s], -starts.index(s)))
    same = probe_starts(lambda start: build("normal:0.02"), ["b", "a"], DataLoader(data(), batch_size=5, shuffle=True),
                        val, settings, 1, seed=7)
    assert same.chosen == "b" and same.val_acc["a"] == same.val_acc["b"]


def test_a_probe_longer_than_the_train_stage_probes_all_of_it(tiny_clip):
    settings = TrainSettings(epochs=1, lr=0.5)
    result = probe_starts(lambda start: build_prompted_clip(tiny_clip, CLASSNAMES, CONFIG), ["a", "b"],
                          DataLoader(data(), batch_size=5), DataLoader(data(10, seed=1), batch_size=10), settings, 5)
    assert result.epochs == 1 and result.samples == 2 * len(data())
    # the cost a run's log announces before it starts: the same count, in passes over the training split
    assert probe_cost_in_train_epochs(2, 5, settings.epochs) * len(data()) == result.samples
    line = cost_line(SearchSettings(epochs=2, warmup_epochs=2), train_epochs=4, probe_passes=2)
    assert line == ("search cost: 2 epochs = 2 passes over the training split (forward and backward)"
                    " + the start probe's 2, 1.00x the train stage's 4")


@pytest.mark.parametrize("starts, epochs", [(["a"], 1), (["a", "b"], 0)])
def test_a_probe_needs_two_starts_and_an_epoch(tiny_clip, starts, epochs):
    with pytest.raises(ValueError, match="at least two starts"):
        probe_starts(lambda s: None, starts, [], [], TrainSettings(epochs=3), epochs)
