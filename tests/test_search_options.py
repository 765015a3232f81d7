"""The search's robustness options: presets, warm-up, temperature and Gumbel sampling, token cost
and budget, confidence reports, and the train stage's initialisations (template, inherited)."""

import itertools

import pytest
import torch

from conftest import CLASSNAMES
from dpl_plugin import BackboneSpec, PromptConfig, PromptConfigError, build_prompted_clip
from dpl_plugin.prompting.initialization import context_embeddings, inherit_prompts
from dpl_plugin.search import (CHECKPOINT_FILE, PRESETS, AlphaHistory, SearchSettings, build_supernet,
                               confidence_summary, derive_config)
from dpl_plugin.search.discretize import choose
from dpl_plugin.search.inherit import supernet_from_checkpoint
from dpl_plugin.search.settings import temperature_at, yacs_defaults
from test_search_loop import make_search


# -- presets and settings ----------------------------------------------------------------------------
def test_presets_resolve_to_the_documented_values():
    paper = SearchSettings(epochs=20).resolved()
    assert (paper.warmup_epochs, paper.temperature, paper.gumbel, paper.token_cost, paper.token_budget) == \
        (0, (1.0, 1.0), False, 0.0, 0)
    robust = SearchSettings(epochs=20, preset="robust").resolved()
    assert (robust.warmup_epochs, robust.temperature, robust.gumbel, robust.token_cost, robust.token_budget) == \
        (5, (1.0, 0.1), False, 1e-3, 0)
    assert set(PRESETS) == {"paper", "robust"}


def test_explicit_values_win_over_the_preset():
    s = SearchSettings(epochs=20, preset="robust", warmup_epochs=0, token_cost=0).resolved()
    assert s.warmup_epochs == 0 and s.token_cost == 0.0 and s.temperature == (1.0, 0.1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(preset="fast"), "unknown search preset 'fast'"),
    (dict(epochs=0), "at least one epoch"),
    (dict(epochs=4, warmup_epochs=4), r"WARMUP_EPOCHS must be in \[0, EPOCHS\)"),
    (dict(temperature=(1.0, 0.0)), "TEMPERATURE must be two positive numbers"),
    (dict(token_cost=-1.0), "TOKEN_COST and TOKEN_BUDGET must be >= 0"),
    (dict(warmup_epochs=1.5), r"\(WARMUP_EPOCHS\) must be a whole number or None, got float 1.5"),
    (dict(gumbel="yes"), r"\(GUMBEL\) must be True or False or None, got str 'yes'"),
])
def test_bad_settings_are_refused_with_the_key(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):  # a value out of range, or of the wrong type
        SearchSettings(**kwargs).resolved()


def test_yacs_keys_come_from_the_settings_fields():
    from yacs.config import CfgNode as CN

    node = CN(yacs_defaults())
    assert {"PRESET", "WARMUP_EPOCHS", "TEMPERATURE", "GUMBEL", "TOKEN_COST", "TOKEN_BUDGET", "EPOCHS"} <= set(node)
    node.merge_from_list(["WARMUP_EPOCHS", "3", "TEMPERATURE", "(2.0, 0.5)", "PRESET", "robust", "EPOCHS", "10"])
    s = SearchSettings.from_cfg(node).resolved()
    assert (s.epochs, s.warmup_epochs, s.temperature, s.token_cost) == (10, 3, (2.0, 0.5), 1e-3)


def test_temperature_anneals_geometrically_after_the_warm_up():
    s = SearchSettings(epochs=6, warmup_epochs=2, temperature=(1.0, 0.01)).resolved()
    temps = [temperature_at(s, e) for e in range(6)]
    assert temps[:3] == [1.0, 1.0, 1.0] and temps[-1] == pytest.approx(0.01)
    assert temps[3] == pytest.approx(0.1 ** (2 / 3)) and temps[4] == pytest.approx(0.01 ** (2 / 3))


# -- the relaxation ------------------------------------------------------------------------------------
def test_mixture_weights_follow_temperature_and_gumbel(tiny_clip):
    learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3)).prompt_learner
    alpha = learner.alpha
    with torch.no_grad():
        alpha.tables["text"].normal_()
    alpha.temperature = 0.5
    expected = torch.softmax(alpha.tables["text"] / 0.5, dim=-1)
    torch.testing.assert_close(alpha.mixture_weights()["text"], expected)
    alpha.gumbel = True
    learner.train()
    sampled = alpha.mixture_weights()["text"]
    assert not torch.allclose(sampled, expected) and torch.allclose(sampled.sum(-1), torch.ones(3))
    learner.eval()  # evaluation and the recorded probabilities stay deterministic
    torch.testing.assert_close(alpha.mixture_weights()["text"], expected)


def test_gumbel_samples_follow_the_seed_the_supernet_was_built_under(tiny_clip):
    """Reseeding torch afterwards (each process its own seed) changes no sample, and sampling draws
    nothing from torch's generator: processes that built the supernet alike sample alike."""
    samples, states = [], []
    for later_seed in (1, 2):
        torch.manual_seed(0)
        learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3)).prompt_learner.train()
        learner.alpha.gumbel = True
        torch.manual_seed(later_seed)
        before = torch.get_rng_state()
        samples.append([learner.alpha.mixture_weights()["text"] for _ in range(3)])
        states.append(torch.equal(before, torch.get_rng_state()))
    assert states == [True, True]
    for a, b in zip(*samples):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(samples[0][0], samples[0][1])


def test_a_coupled_table_draws_one_gumbel_sample_for_both_branches(tiny_clip):
    learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3), coupled=True).prompt_learner.train()
    learner.alpha.gumbel = True
    prompts = learner()
    for text, vision in zip(prompts.text, prompts.vision):
        assert torch.equal(text.weights, vision.weights)


def test_expected_tokens_counts_each_branch_a_coupled_table_prompts(tiny_clip):
    for coupled in (False, True):
        learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3), coupled=coupled).prompt_learner
        probs = {k: torch.softmax(t.detach(), -1) for k, t in learner.alpha.tables.items()}
        per_layer = {k: (p * torch.tensor([0.0, 1.0, 3.0])).sum() for k, p in probs.items()}
        want = 2 * per_layer["coupled"] if coupled else per_layer["text"] + per_layer["vision"]
        torch.testing.assert_close(learner.expected_tokens().detach(), want)


# -- the options change the search as described -----------------------------------------------------
def test_warm_up_leaves_alpha_untouched_during_its_epochs(tiny_clip):
    search = make_search(tiny_clip, epochs=3, warmup_epochs=2)
    initial = {k: t.detach().clone() for k, t in search.learner.alpha.tables.items()}
    prompts = [p.detach().clone() for p in search.prompt_params]
    steps = []
    original = search.architect.optimizer.step
    search.architect.optimizer.step = lambda *a, **k: (steps.append(search.epoch), original(*a, **k))[1]
    result = search.run()
    assert steps and min(steps) == 2  # alpha moved in the third epoch only
    for key, table in initial.items():
        warm = torch.tensor(result.history.tables[key][:2])
        torch.testing.assert_close(warm, torch.softmax(table, -1).expand_as(warm), rtol=0, atol=0)
        assert not torch.equal(search.learner.alpha.tables[key].detach(), table)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(prompts, search.prompt_params))


def test_token_cost_pulls_the_expected_tokens_down(tiny_clip, tiny_clip_path):
    from dpl_plugin import load_clip

    plain = make_search(tiny_clip, epochs=2, alpha_lr=0.05)
    costly = make_search(load_clip(tiny_clip_path), epochs=2, alpha_lr=0.05, token_cost=1.0)
    start = plain.learner.expected_tokens().item()
    plain.run(), costly.run()
    assert costly.learner.expected_tokens().item() < min(start, plain.learner.expected_tokens().item()) - 1.0


def test_token_budget_is_respected_by_the_searched_configuration(tiny_clip):
    search = make_search(tiny_clip, epochs=2, alpha_lr=0.05, token_budget=2)
    with torch.no_grad():  # start the search far over budget: every layer prefers 3 tokens
        for table in search.learner.alpha.tables.values():
            table[:, 2] += 3.0
    start = search.learner.expected_tokens().item()
    config = search.run().config
    assert sum(config.text) + sum(config.vision) <= 2
    assert search.learner.expected_tokens().item() < start  # the hinge pulled the mixture towards the budget
    assert config.provenance["token_budget"]["budget"] == 2


def test_budgeted_choice_is_the_most_probable_configuration_within_the_budget(tiny_clip):
    learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3)).prompt_learner
    torch.manual_seed(3)
    with torch.no_grad():
        for table in learner.alpha.tables.values():
            table.copy_(torch.randn_like(table) * 2)
    logp = torch.cat([torch.log_softmax(t.detach(), -1) for t in learner.alpha.tables.values()])  # (6, 3)
    for budget in (1, 4, 7):
        best = max((c for c in itertools.product(range(3), repeat=6) if sum((0, 1, 3)[i] for i in c) <= budget),
                   key=lambda c: sum(logp[layer, i].item() for layer, i in enumerate(c)))
        chosen = choose(learner, budget)
        assert chosen["text"] + chosen["vision"] == list(best), budget


# -- confidence ----------------------------------------------------------------------------------------
def test_confidence_summary_says_when_the_search_did_not_settle():
    decided, undecided = [0.7, 0.2, 0.1], [0.4, 0.35, 0.25]
    history = AlphaHistory([0, 1, 3], {"text": [[decided, undecided]], "vision": [[decided, decided]]})
    summary = confidence_summary(history)
    assert summary.decided == {"text": 1, "vision": 2} and summary.fraction == pytest.approx(0.75)
    assert "did not settle: 1 of 2 text layers undecided" in summary.message
    assert "WARMUP_EPOCHS" in summary.message
    settled = AlphaHistory([0, 1, 3], {"text": [[decided, decided]]})
    assert confidence_summary(settled).settled and "settled" in confidence_summary(settled).message


# -- initialisations -------------------------------------------------------------------------------
@pytest.mark.parametrize("coupled", [False, True], ids=["independent", "coupled"])
def test_inherited_prompts_reproduce_the_supernet_at_its_choice(tiny_clip, images, coupled):
    supernet = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3), coupled=coupled)
    learner = supernet.prompt_learner
    torch.manual_seed(0)
    with torch.no_grad():
        for table in learner.alpha.tables.values():  # a decided supernet: one-hot mixture weights
            choice = torch.randint(0, 3, (table.shape[0],))
            table.fill_(-1e4).scatter_(1, choice[:, None], 0.0)
    config = derive_config(learner)
    model = build_prompted_clip(tiny_clip, CLASSNAMES, config)
    inherit_prompts(model, learner)
    supernet.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), supernet(images), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("nested", [False, True], ids=["separate", "nested"])
def test_supernet_is_read_back_from_its_search_checkpoint_in_its_layout(tiny_clip, tmp_path, nested):
    search = make_search(tiny_clip, str(tmp_path), epochs=1, nested=nested)
    search.run()
    spec = BackboneSpec.of(tiny_clip)
    learner = supernet_from_checkpoint(str(tmp_path / CHECKPOINT_FILE), spec, (0, 1, 3), ("text", "vision"), False)
    assert learner.nested is nested and learner.text["0"].shape[0] == (3 if nested else 4)
    for (name, a), (_, b) in zip(search.learner.state_dict().items(), learner.state_dict().items()):
        assert torch.equal(a, b), name


def test_searched_initialisation_inherits_from_the_supernet_or_is_refused(tiny_clip, images):
    learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3), coupled=True).prompt_learner
    config = derive_config(learner)
    with pytest.raises(PromptConfigError, match="needs|pass supernet="):
        build_prompted_clip(tiny_clip, CLASSNAMES, config, text_init="searched", vision_init="searched")
    with pytest.raises(PromptConfigError, match="set both text_init and vision_init"):
        build_prompted_clip(tiny_clip, CLASSNAMES, config, text_init="searched", supernet=learner)
    model = build_prompted_clip(tiny_clip, CLASSNAMES, config, text_init="searched", vision_init="searched",
                                supernet=learner)
    for layer, n in enumerate(config.text):
        if n:
            inherited = model.prompt_learner.text[str(layer)]
            torch.testing.assert_close(inherited, learner.candidate_prompt("text", layer, n))
            torch.testing.assert_close(model.prompt_learner.maps[str(layer)].weight, learner.maps[str(layer)].weight)


def test_template_initialisation_starts_layer_zero_from_the_context_words(tiny_clip):
    spec = BackboneSpec.of(tiny_clip)
    words = context_embeddings(tiny_clip, "a photo of a", 3)
    for insertion in ("prefix", "native"):
        config = PromptConfig(text=[3, 2, 0], vision=[0, 0, 0], insertion=insertion, max_length=3)
        model = build_prompted_clip(tiny_clip, CLASSNAMES, config, text_init="template")
        torch.testing.assert_close(model.prompt_learner.text["0"].detach(), words)
        assert model.prompt_learner.text["1"].std().item() == pytest.approx(0.02, rel=0.5)
    too_long = PromptConfig(text=[6, 0, 0], vision=[0, 0, 0], insertion="prefix", max_length=6)
    assert context_embeddings(tiny_clip, "a photo of a", 6) is None  # longer than the context: random
    model = build_prompted_clip(tiny_clip, CLASSNAMES, too_long, text_init="template")
    assert model.prompt_learner.text["0"].std().item() == pytest.approx(0.02, rel=0.5)
    assert spec.text_layers == 3


# -- supernet regularisers ---------------------------------------------------------------------------
def test_beta_decay_adds_the_rising_mean_logsumexp_of_alpha(tiny_clip):
    from dpl_plugin.search.regularizers import alpha_penalty

    learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3)).prompt_learner
    torch.manual_seed(0)
    with torch.no_grad():
        for table in learner.alpha.tables.values():
            table.normal_()
    s = SearchSettings(epochs=5, beta_decay=4.0).resolved()
    rows = torch.cat([torch.logsumexp(t.detach(), -1) for t in learner.alpha.tables.values()])  # 6 layers
    assert alpha_penalty(learner, s, epoch=0).item() == 0.0  # lambda rises from 0
    torch.testing.assert_close(alpha_penalty(learner, s, epoch=2).detach(), 4.0 * 2 / 4 * rows.mean())
    grads = torch.autograd.grad(alpha_penalty(learner, s, epoch=4), learner.arch_parameters())
    for grad, table in zip(grads, learner.alpha.tables.values()):  # d/d alpha = lambda * softmax / layers
        torch.testing.assert_close(grad, 4.0 * torch.softmax(table.detach(), -1) / 6)


def test_alpha_noise_perturbs_the_prompt_step_within_eps_and_restores_alpha(tiny_clip):
    from dpl_plugin.search.regularizers import alpha_noise

    learner = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 3)).prompt_learner
    s = SearchSettings(epochs=3, alpha_noise=0.3).resolved()
    torch.manual_seed(0)
    before = {k: t.detach().clone() for k, t in learner.alpha.tables.items()}
    for epoch, eps in ((0, 0.03), (2, 0.3)):  # a tenth of the value, rising to it
        with alpha_noise(learner, s, epoch):
            shift = torch.cat([(t.detach() - before[k]).flatten() for k, t in learner.alpha.tables.items()])
            assert 0 < shift.abs().max() <= eps and shift.abs().max() > eps / 2
        for k, t in learner.alpha.tables.items():
            assert torch.equal(t.detach(), before[k])
    with alpha_noise(learner, SearchSettings(epochs=3).resolved(), 1):  # off by default
        assert all(torch.equal(t.detach(), before[k]) for k, t in learner.alpha.tables.items())


@pytest.mark.parametrize("kwargs, message", [
    (dict(select="best"), r"SELECT must be one of \['argmax', 'perturbation', 'sampled'\], got 'best'"),
    (dict(select_samples=0), "SELECT_SAMPLES must be a positive integer"),
    (dict(select_from="prior"), r"SELECT_FROM must be one of \['alpha', 'space'\], got 'prior'"),
    (dict(alpha_noise=-0.1), "ALPHA_NOISE must be a number >= 0"),
    (dict(early_stop_confidence=1.5), "EARLY_STOP_CONFIDENCE is a probability"),
])
def test_bad_selection_and_regulariser_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchSettings(**kwargs).resolved()
