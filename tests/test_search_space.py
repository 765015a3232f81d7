"""SearchSpace: the supernet's space as data, sampled uniformly for the NAS sanity check."""

import math

import pytest
import torch

from conftest import CLASSNAMES, make_clip
from dpl_plugin import BackboneSpec, PromptConfig, build_prompted_clip
from dpl_plugin.designs import get_design
from dpl_plugin.search import build_supernet, derive_config
from dpl_plugin.search.space import SearchSpace

DESIGNS = ("coop", "vpt", "ivlp", "maple")


def spec(text_layers=12, vision_layers=12, vision_width=768):
    return BackboneSpec("test", text_layers, 512, 8, 77, 512, vision_layers, vision_width, 12, 224)


@pytest.mark.parametrize("design", DESIGNS)
def test_space_has_the_supernets_tables_and_holds_its_configurations(tiny_clip, design):
    backbone = BackboneSpec.of(tiny_clip)
    space = SearchSpace.of(design, backbone, candidates=[0, 1, 3])
    supernet = build_supernet(tiny_clip, CLASSNAMES, candidates=[0, 1, 3], **_design_kwargs(design))
    tables = supernet.prompt_learner.alpha.tables
    assert space.searched_layers() == {key: t.shape[0] for key, t in tables.items()}
    with torch.no_grad():  # push alpha to the longest candidate: the searched configuration is all-max
        for t in tables.values():
            t[:, -1] = 5.0
    searched, top = derive_config(supernet.prompt_learner), space.all_max()
    assert (searched.text, searched.vision, searched.coupled, searched.insertion, searched.max_length) == \
        (top.text, top.vision, top.coupled, top.insertion, top.max_length)
    assert space.contains(searched)


def _design_kwargs(design):
    return get_design(design).search_space()


@pytest.mark.parametrize("design", DESIGNS)
def test_samples_are_valid_configurations_of_the_space(design, tiny_clip):
    backbone = BackboneSpec.of(tiny_clip)
    space = SearchSpace.of(design, backbone)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        config = space.sample(g)
        config.validate(backbone)
        assert space.contains(config)
        assert config.insertion == "prefix" and config.max_length == 6
        for branch in ("text", "vision"):
            if branch not in space.branches:
                assert not config.uses(branch)
    # a sample builds and runs as a model, in both insertion forms
    for insertion in ("prefix", "native"):
        model = build_prompted_clip(tiny_clip, CLASSNAMES, space.sample(g).with_insertion(insertion))
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, len(CLASSNAMES))


def test_coupled_samples_have_equal_branches_and_count_each_layer_once():
    space = SearchSpace.of("maple", spec(), candidates=range(7))
    assert space.searched_layers() == {"coupled": 12}
    assert space.size == 7 ** 12
    assert SearchSpace.of("ivlp", spec()).size == 7 ** 24
    assert SearchSpace.of("vpt", spec(vision_layers=6)).size == 7 ** 6
    g = torch.Generator().manual_seed(3)
    samples = [space.sample(g) for _ in range(50)]
    assert all(c.coupled and c.text == c.vision for c in samples)
    assert len({tuple(c.text) for c in samples}) > 40  # the layers are drawn, not one value repeated


def test_coupled_space_on_unequal_branches_searches_the_shared_layers_only():
    space = SearchSpace.of("maple", spec(text_layers=12, vision_layers=8), candidates=[0, 2])
    config = space.all_max()
    assert config.text == [2] * 8 + [0] * 4 and config.vision == [2] * 8
    assert space.contains(config)
    assert not space.contains(PromptConfig(text=[2] * 9 + [0] * 3, vision=[2] * 8))  # text layer 8 is not searched
    assert not space.contains(PromptConfig(text=[1] * 8 + [0] * 4, vision=[1] * 8, coupled=True))  # 1 is no candidate


def test_samples_are_uniform_and_independent_per_layer():
    """Chi-square against uniform, per layer and for the joint choice of two layers (fixed seed)."""
    candidates = [0, 1, 2, 4, 6]
    space = SearchSpace.of("ivlp", spec(text_layers=3, vision_layers=2), candidates=candidates)
    g = torch.Generator().manual_seed(0)
    draws = 20000
    samples = [space.sample(g) for _ in range(draws)]
    rows = torch.tensor([c.text + c.vision for c in samples])  # (draws, 5 layers)
    k = len(candidates)
    for layer in range(rows.shape[1]):
        counts = torch.tensor([(rows[:, layer] == c).sum().item() for c in candidates], dtype=torch.float64)
        assert _chi_square(counts, draws / k) < _CRIT_4DF  # 4 degrees of freedom
    joint = {}
    for a, b in zip(rows[:, 0].tolist(), rows[:, 3].tolist()):  # a text and a vision layer
        joint[(a, b)] = joint.get((a, b), 0) + 1
    assert len(joint) == k * k
    counts = torch.tensor(list(joint.values()), dtype=torch.float64)
    assert _chi_square(counts, draws / k ** 2) < _CRIT_24DF


# Upper 0.1% points of the chi-square distribution: a uniform sampler fails these 1 time in 1000.
_CRIT_4DF, _CRIT_24DF = 18.467, 51.179


def _chi_square(counts, expected):
    return float(((counts - expected) ** 2 / expected).sum())


def test_a_biased_sampler_would_fail_the_uniformity_check():
    """The check above has power: dropping the longest candidate is far outside the bound."""
    counts = torch.tensor([1250.0, 1250.0, 1250.0, 1250.0, 0.0])  # 5000 draws
    assert _chi_square(counts, 1000.0) > _CRIT_4DF


def test_sampling_is_deterministic_for_a_seed_and_differs_between_seeds():
    space = SearchSpace.of("ivlp", spec())
    first = [space.sample(torch.Generator().manual_seed(7)).to_dict() for _ in range(2)]
    assert first[0] == first[1]
    g, h = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert [space.sample(g).to_dict() for _ in range(5)] == [space.sample(h).to_dict() for _ in range(5)]
    assert space.sample(torch.Generator().manual_seed(8)).to_dict() != first[0]


def test_bad_spaces_are_rejected_with_the_reason():
    resnet = spec(vision_layers=0)
    with pytest.raises(ValueError, match="ResNet image encoder"):
        SearchSpace.of("vpt", resnet)
    assert SearchSpace.of("coop", resnet).size == 7 ** 12
    with pytest.raises(ValueError, match="include 0"):
        SearchSpace.of("coop", spec(), candidates=[1, 2])
    assert math.isclose(SearchSpace.of("coop", spec(), candidates=[0, 3]).size, 2 ** 12)


def test_tiny_vit_space_matches_make_clip_shapes():
    backbone = BackboneSpec.of(make_clip(vision_layers=2, text_layers=4))
    space = SearchSpace.of("ivlp", backbone)
    assert space.searched_layers() == {"text": 4, "vision": 2}
    assert len(space.all_max().text) == 4 and space.all_max().vision == [6, 6]
