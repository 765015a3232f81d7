"""Choosing from a trained supernet (SELECT): each method finds the configuration the validation
data rewards, on a supernet built so that the answer is known."""

import itertools

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import CLASSNAMES
from dpl_plugin import load_clip
from dpl_plugin.search import build_supernet
from dpl_plugin.search.selection import fixed_layers, select, validation_score

TARGET = [2, 0, 1]  # candidate indices per text layer: (3, 0, 1) tokens
CANDIDATES = (0, 1, 3)


@pytest.fixture(scope="module")
def known(tiny_clip_path):
    """A text-branch supernet with large random candidate prompts and validation labels that are the
    predictions of the configuration TARGET: TARGET alone scores 100%. (The random CLIP's class and
    position embeddings are zeroed: otherwise they dominate its image features and every image gets
    the same class.)"""
    tiny_clip = load_clip(tiny_clip_path)  # one for the module: every test sets alpha itself
    with torch.no_grad():
        tiny_clip.visual.class_embedding.zero_()
        tiny_clip.visual.positional_embedding.zero_()
    torch.manual_seed(0)
    model = build_supernet(tiny_clip, CLASSNAMES, branches=("text",), candidates=CANDIDATES, text_init="normal:1")
    images = torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model.eval()
    with fixed_layers(model.prompt_learner, {"text": TARGET}), torch.no_grad():
        labels = model(images).argmax(dim=1)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    accuracy = {}
    for choice in itertools.product(range(3), repeat=3):
        with fixed_layers(model.prompt_learner, {"text": list(choice)}):
            accuracy[choice] = validation_score(model, loader)[0].accuracy
    assert accuracy[tuple(TARGET)] == 100.0 and sorted(accuracy.values())[-2] < 100.0  # the construction holds
    return model, loader


def _set_alpha(model, rows):
    with torch.no_grad():
        model.prompt_learner.alpha.tables["text"].copy_(torch.tensor(rows, dtype=torch.float32))


def test_argmax_takes_alphas_largest_logit(known):
    model, loader = known
    _set_alpha(model, [[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    selection = select(model, loader, "argmax")
    assert selection.choice == {"text": [1, 0, 2]} and selection.scored == 0 and selection.samples == 0


def test_perturbation_finds_the_layer_alpha_got_wrong(known):
    model, loader = known
    # alpha prefers a wrong candidate in layer 0 and the right ones, clearly, in layers 1 and 2
    _set_alpha(model, [[0.0, 2.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0]])
    before = {k: t.detach().clone() for k, t in model.prompt_learner.alpha.tables.items()}
    assert select(model, loader, "argmax").choice == {"text": [1, 0, 1]}
    selection = select(model, loader, "perturbation")
    assert selection.choice == {"text": TARGET}
    assert selection.scored == 3 * 3 and selection.samples == 9 * 40  # every layer, every candidate, once
    assert selection.best.accuracy == 100.0
    for key, table in model.prompt_learner.alpha.tables.items():  # alpha restored bit for bit
        assert torch.equal(table.detach(), before[key])


@pytest.mark.parametrize("source", ["alpha", "space"])
def test_sampled_keeps_the_best_scored_configuration(known, source):
    model, loader = known
    # alpha: every layer's largest logit away from the target's candidate (argmax misses it
    # everywhere), the target still drawn with probability 0.27 ** 3 = 2%: 400 draws meet it
    _set_alpha(model, [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]])
    assert select(model, loader, "argmax").choice == {"text": [0, 1, 2]}
    selection = select(model, loader, "sampled", samples=400, source=source,
                       generator=torch.Generator().manual_seed(0))
    assert selection.choice == {"text": TARGET} and selection.best.accuracy == 100.0
    assert selection.scored <= 27 and selection.samples == selection.scored * 40  # each configuration once
    few = select(model, loader, "sampled", samples=1, source=source, generator=torch.Generator().manual_seed(0))
    assert few.scored == 1


def test_selections_respect_the_token_budget(known):
    model, loader = known  # the target has 4 tokens; within 2, the best has at most 2
    _set_alpha(model, [[0.0, 0.0, 5.0], [0.0, 0.0, 5.0], [0.0, 0.0, 5.0]])
    learner = model.prompt_learner
    for method, kwargs in (("argmax", {}), ("perturbation", {}), ("sampled", {"samples": 50, "source": "space"})):
        choice = select(model, loader, method, budget=2, **kwargs).choice["text"]
        assert sum(learner.candidates[i] for i in choice) <= 2, method


def test_unknown_selection_is_refused(known):
    model, loader = known
    with pytest.raises(ValueError, match="unknown selection 'best'"):
        select(model, loader, "best")
