"""A search that cannot have learned anything stops with a message instead of writing a result."""

import os

import pytest
import torch

from conftest import CLASSNAMES
from dpl_plugin.search.stage import search_prompt_lengths
from dpl_plugin.search import CHECKPOINT_FILE, CONFIG_FILE, SearchSettings, build_supernet
from dpl_plugin.search.health import UnhealthyAlphaError, check_alpha
from test_search_loop import loaders, make_search


def test_an_absurd_alpha_lr_saturating_alpha_is_reported_not_searched(tiny_clip, tmp_path):
    search = make_search(tiny_clip, str(tmp_path), epochs=2, alpha_lr=1e3)
    with pytest.raises(UnhealthyAlphaError) as err:
        search.run()
    message = str(err.value)
    assert "alpha saturated after only 3 alpha steps" in message  # 12 training images, batches of 4
    assert "ALPHA_LR (TRAINER.DPL.SEARCH.ALPHA_LR, or SearchSettings.alpha_lr) 1000 is far too large" in message
    assert not os.path.exists(tmp_path / CHECKPOINT_FILE) and not os.path.exists(tmp_path / CONFIG_FILE)


def test_the_recipes_alpha_lr_passes_the_check(tiny_clip, tmp_path):
    result = make_search(tiny_clip, str(tmp_path), epochs=2).run()
    assert result.epochs_run == 2 and os.path.isfile(tmp_path / CONFIG_FILE)


def test_non_finite_alpha_is_reported_with_its_table(tiny_clip):
    learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 2)).prompt_learner
    optimizer = torch.optim.Adam(learner.arch_parameters(), lr=3.5e-3)
    check_alpha(learner, optimizer)  # freshly initialised: healthy
    with torch.no_grad():
        learner.alpha.tables["vision"][1, 2] = float("nan")
    with pytest.raises(UnhealthyAlphaError, match=r"alpha \(vision table\) holds NaN or infinite logits after 0 alpha "
                                                  r"steps.*ALPHA_LR .* 0.0035 is likely too large"):
        check_alpha(learner, optimizer)


def test_a_search_of_no_epochs_is_refused_and_writes_nothing(tiny_clip, tmp_path):
    train, val = loaders()
    with pytest.raises(ValueError, match="at least one epoch"):
        search_prompt_lengths(tiny_clip, CLASSNAMES, train, val, design="ivlp", candidates=(0, 1),
                              settings=SearchSettings(epochs=0, plot=False), output_dir=str(tmp_path / "search"))
    assert not os.path.exists(tmp_path / "search" / CONFIG_FILE)
