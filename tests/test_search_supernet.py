"""The supernet: the whole model against the per-candidate reference, and its limits (the attention
itself: tests/test_attention.py)."""

import pytest
import torch

import dpl_plugin.prompting.insertion as insertion
from conftest import CLASSNAMES
from dpl_plugin import PromptConfig, build_prompted_clip
from dpl_plugin.prompting.attention import reference_mixture_attention
from dpl_plugin.designs import get_design
from dpl_plugin.search import SupernetPromptLearner, build_supernet

CANDIDATES = [0, 1, 2, 4, 6]


@pytest.mark.parametrize("design", ["ivlp", "maple", "coop", "vpt"])
def test_supernet_model_equals_per_candidate_model(tiny_clip, images, design, monkeypatch):
    torch.manual_seed(0)
    model = build_supernet(tiny_clip, CLASSNAMES, candidates=CANDIDATES, **get_design(design).search_space())
    with torch.no_grad():
        for p in model.prompt_learner.alpha.parameters():
            p.normal_()
    labels = torch.tensor([0, 1, 2, 3])
    params = [p for p in model.prompt_learner.parameters()]

    def logits_and_grads():
        logits = model(images)
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, labels), params, allow_unused=True)
        return logits.detach(), grads

    fast, fast_grads = logits_and_grads()
    monkeypatch.setattr(insertion, "mixture_attention", reference_mixture_attention)
    slow, slow_grads = logits_and_grads()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast_grads, slow_grads):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("nested", [False, True], ids=["separate", "nested"])
@pytest.mark.parametrize("design", ["ivlp", "maple"])
def test_one_hot_alpha_is_the_fixed_length_model(tiny_clip, images, design, nested):
    torch.manual_seed(0)
    supernet = build_supernet(tiny_clip, CLASSNAMES, candidates=CANDIDATES, nested=nested,
                              **get_design(design).search_space())
    learner = supernet.prompt_learner
    chosen = {"text": [4, 0, 6], "vision": [4, 0, 6] if design == "maple" else [1, 2, 0]}
    with torch.no_grad():
        for key, table in learner.alpha.tables.items():
            branch = "text" if key == "coupled" else key
            table.fill_(float("-inf"))
            for layer, n in enumerate(chosen[branch]):
                table[layer, CANDIDATES.index(n)] = 0.0
    config = PromptConfig(text=chosen["text"], vision=chosen["vision"], insertion="prefix",
                          coupled=design == "maple")
    fixed = build_prompted_clip(tiny_clip, CLASSNAMES, config)
    with torch.no_grad():
        for layer, n in enumerate(chosen["text"]):
            if n:
                fixed.prompt_learner.text[str(layer)].copy_(learner.candidate_prompt("text", layer, n))
        if design == "maple":
            for layer in fixed.prompt_learner.maps:
                fixed.prompt_learner.maps[layer].load_state_dict(learner.maps[layer].state_dict())
        else:
            for layer, n in enumerate(chosen["vision"]):
                if n:
                    fixed.prompt_learner.vision[str(layer)].copy_(learner.candidate_prompt("vision", layer, n))
        torch.testing.assert_close(supernet(images), fixed(images), rtol=1e-5, atol=1e-5)


def test_nested_candidates_are_prefixes_of_one_prompt_and_learn_where_they_are_used(tiny_clip, images, monkeypatch):
    torch.manual_seed(0)
    model = build_supernet(tiny_clip, CLASSNAMES, candidates=CANDIDATES, nested=True)
    learner = model.prompt_learner
    assert learner.text["0"].shape[0] == max(CANDIDATES) and learner.vision["0"].shape[0] == max(CANDIDATES)
    for n in CANDIDATES:
        torch.testing.assert_close(learner.candidate_prompt("text", 1, n), learner.text["1"][:n])
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():  # layer 0 of the text branch decided for 2 tokens, every other layer mixed
        learner.alpha.tables["text"][0].fill_(-1e4)[CANDIDATES.index(2)] = 0.0
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    grad_0, grad_1 = torch.autograd.grad(loss, [learner.text["0"], learner.text["1"]])
    assert grad_0[:2].abs().min() > 0 and torch.equal(grad_0[2:], torch.zeros_like(grad_0[2:]))
    assert (grad_1.abs().sum(dim=1) > 0).all()  # mixed: every shared token is in some candidate
    fast = model(images).detach()
    monkeypatch.setattr(insertion, "mixture_attention", reference_mixture_attention)
    torch.testing.assert_close(fast, model(images).detach(), rtol=1e-5, atol=1e-5)


def test_alpha_is_a_module_parameter_apart_from_prompts(tiny_clip, tmp_path):
    model = build_supernet(tiny_clip, CLASSNAMES, candidates=range(7))
    learner = model.prompt_learner
    arch, prompts = learner.arch_parameters(), learner.prompt_parameters()
    assert {id(p) for p in arch}.isdisjoint({id(p) for p in prompts})
    assert len(arch) + len(prompts) == len(list(learner.parameters()))
    assert [tuple(p.shape) for p in arch] == [(3, 7), (3, 7)]
    state = model.prompt_learner.state_dict()
    assert "alpha.tables.text" in state and "alpha.tables.vision" in state
    torch.save(state, tmp_path / "s.pt")
    other = build_supernet(tiny_clip, CLASSNAMES, candidates=range(7)).prompt_learner
    other.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert torch.equal(other.alpha.tables["text"], learner.alpha.tables["text"])
    model.to(torch.float64)
    assert learner.alpha.tables["text"].dtype == torch.float64  # moves with the model
    # official initialisation: text uniform [0, 1), vision standard normal, alpha ~ 1e-3 N(0, 1)
    assert 0 <= learner.text["0"].min() and learner.text["0"].max() < 1
    assert 0.5 < learner.vision["0"].float().std() < 1.5
    assert learner.alpha.tables["text"].abs().max() < 1e-2


def test_coupled_search_shares_one_table(tiny_clip):
    learner = build_supernet(tiny_clip, CLASSNAMES, candidates=range(7), coupled=True).prompt_learner
    assert list(learner.alpha.tables) == ["coupled"]
    assert learner.alpha.logits("text") is learner.alpha.logits("vision")
    assert not len(learner.vision) and len(learner.maps) == 3


def test_bad_candidate_sets_and_backbones(tiny_clip, tmp_path):
    with pytest.raises(ValueError, match="include 0"):
        build_supernet(tiny_clip, CLASSNAMES, candidates=[1, 2])
    with pytest.raises(ValueError, match="at least one positive"):
        build_supernet(tiny_clip, CLASSNAMES, candidates=[0])
    from conftest import make_clip, save_and_load

    rn = save_and_load(make_clip(vision_resnet=True, vision_width=64, embed_dim=64), tmp_path / "rn.pt")
    with pytest.raises(ValueError, match="search the text branch only"):
        build_supernet(rn, CLASSNAMES)
    assert isinstance(build_supernet(rn, CLASSNAMES, branches=("text",)).prompt_learner, SupernetPromptLearner)


@pytest.mark.parametrize("mode", ["single_path", "gumbel"])
def test_sampled_mixture_weights_follow_alpha_to_an_accelerator_and_half_precision(mode):
    """The draws come from a CPU generator; the weights must land where alpha is (``meta`` stands in
    for ``cuda``: no CPU data there) and in its dtype, as an fp16 supernet mixes in fp16."""
    from dpl_plugin.search.supernet import ArchitectureLogits

    torch.manual_seed(0)
    alpha = ArchitectureLogits({"text": 3, "vision": 2}, num_candidates=4)
    setattr(alpha, mode, True)
    alpha.train()
    on_cpu = alpha.mixture_weights()
    if mode == "single_path":  # one candidate per layer, one-hot
        assert all(torch.equal(w.sum(dim=1), torch.ones(len(w))) and int((w == 1).sum()) == len(w)
                   for w in on_cpu.values())
    for device, dtype in (("meta", torch.float32), ("cpu", torch.float16)):
        moved = ArchitectureLogits({"text": 3, "vision": 2}, num_candidates=4).to(device, dtype)
        setattr(moved, mode, True)
        moved.train()
        weights = moved.mixture_weights()
        assert {k: (w.shape, w.device.type, w.dtype) for k, w in weights.items()} == {
            "text": (torch.Size([3, 4]), device, dtype), "vision": (torch.Size([2, 4]), device, dtype)}
