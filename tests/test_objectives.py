"""Training objectives (KgCoOp, PromptSRC) and PromptSRC's prompt aggregation against their published
formulas, and the hand configurations with their objectives against the methods' own training step
written out with the reference encoders (tests/reference.py) and the frozen CLIP's own encoders."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import reference
from conftest import CLASSNAMES
from dpl_plugin import (BackboneSpec, GaussianPromptAveraging, KgCoOp, Objective, PromptSRC, TrainSettings,
                        build_prompted_clip, build_supernet, get_design, train_prompts)
from dpl_plugin.backbones.clip_package import clip
from dpl_plugin.engine.objectives import ObjectiveError, kgcoop_template, knowledge_guidance, logit_consistency
from dpl_plugin.engine.optim import build_sgd
from dpl_plugin.prompting.templates import IMAGENET_TEMPLATES
from dpl_plugin.search import BilevelSearch, SearchSettings, SearchStateMismatchError
from dpl_plugin.search.stage import search_prompt_lengths

LABELS = torch.tensor([0, 3, 1, 4])


def tokens(template):
    return clip.tokenize([template.format(c.replace("_", " ")) for c in CLASSNAMES])


def randomise(learner, seed=3, std=0.3):
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in learner.parameters():
            param.add_(torch.randn_like(param) * std)


def layer_list(params, layers=3):
    return [params[str(i)] if str(i) in params else None for i in range(layers)]


def grads(loss, params):
    return torch.autograd.grad(loss, params)


# -- each term against its formula ----------------------------------------------------------------------

def test_knowledge_guidance_is_one_minus_the_mean_cosine():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    cosines = [(a[i] @ b[i]) / (a[i].norm() * b[i].norm()) for i in range(6)]
    assert knowledge_guidance(a, b).item() == pytest.approx(1 - sum(cosines).item() / 6, rel=1e-12)
    assert knowledge_guidance(a, a).item() == pytest.approx(0.0, abs=1e-12)


def test_logit_consistency_is_the_kl_to_the_zero_shot_distribution_over_the_number_of_logits():
    g = torch.Generator().manual_seed(1)
    logits, zero_shot = torch.randn(4, 5, generator=g, dtype=torch.float64) * 3, torch.randn(4, 5, dtype=torch.float64,
                                                                                             generator=g) * 3
    p, q = zero_shot.exp() / zero_shot.exp().sum(1, keepdim=True), logits.exp() / logits.exp().sum(1, keepdim=True)
    expected = sum((p[i, c] * math.log(p[i, c] / q[i, c])).item() for i in range(4) for c in range(5)) / 20
    assert logit_consistency(logits, zero_shot).item() == pytest.approx(expected, rel=1e-10)
    assert logit_consistency(logits, logits).item() == pytest.approx(0.0, abs=1e-12)


def test_kgcoop_hand_prompts_are_coops_but_a_sentence_for_textures():
    assert kgcoop_template("OxfordPets") == "a photo of a {}, a type of pet."
    assert kgcoop_template("DescribableTextures") == "a photo of a {}, a type of texture."
    assert kgcoop_template("MyFolder") == "a photo of a {}."


def test_an_unprepared_objective_says_what_to_call(tiny_clip, images):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, get_design("coop").baseline_config(BackboneSpec.of(tiny_clip)))
    with pytest.raises(ObjectiveError, match=r"prepare\(model, classnames\)"):
        KgCoOp()(model, images, LABELS)


# -- the hand configurations reproduce the methods' training steps -------------------------------------

def kgcoop_model(clip_model):
    """DPL_KgCoOp's hand design: CoOp with 4 context tokens initialised from "a photo of a"."""
    config = get_design("coop").baseline_config(BackboneSpec.of(clip_model), n_ctx=4)
    model = build_prompted_clip(clip_model, CLASSNAMES, config, ctx_init="a photo of a")
    randomise(model.prompt_learner)
    return model


@pytest.mark.parametrize("dataset", ["OxfordPets", "Demo"])
def test_kgcoop_hand_configuration_reproduces_kgcoops_training_step(tiny_clip, images, dataset):
    model = kgcoop_model(tiny_clip)
    template = kgcoop_template(dataset)
    objective = KgCoOp(weight=8.0, template=template).prepare(model, CLASSNAMES)
    out = objective(model, images, LABELS)
    ctx = model.prompt_learner.text["0"]
    # KgCoOp's step: CoOp's logits, then CE + W * (1 - mean cos(learned, hand-crafted)) with the hand-crafted
    # features from the frozen CLIP's encode_text.
    text = reference.text_features(tiny_clip, tokens("a photo of a {}."), 4, [ctx, None, None])
    logits = reference.logits(tiny_clip, tiny_clip.encode_image(images), text)
    with torch.no_grad():
        hand = tiny_clip.encode_text(tokens(template))
    cos = F.cosine_similarity(text / text.norm(dim=-1, keepdim=True), hand / hand.norm(dim=-1, keepdim=True), dim=1)
    expected = F.cross_entropy(logits, LABELS) + 8.0 * (1 - cos.mean())
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads(out.loss, [ctx])[0], grads(expected, [ctx])[0], rtol=1e-4, atol=1e-6)
    assert out.terms["kg"].item() > 1e-4  # the randomised context moved the features: the term is live


def promptsrc_model(clip_model):
    """DPL_PromptSRC's hand design on the 3-layer CLIP: IVLP, 4 + 4 tokens, depth 2, text from "a photo of a"."""
    config = get_design("ivlp").baseline_config(BackboneSpec.of(clip_model), n_text=4, n_vision=4, depth_text=2,
                                                depth_vision=2)
    model = build_prompted_clip(clip_model, CLASSNAMES, config, ctx_init="a photo of a")
    randomise(model.prompt_learner)
    return model


def test_promptsrc_hand_configuration_reproduces_promptsrcs_training_step(tiny_clip, images):
    model = promptsrc_model(tiny_clip)
    out = PromptSRC(text_weight=25.0, image_weight=10.0).prepare(model, CLASSNAMES)(model, images, LABELS)
    learner = model.prompt_learner
    params = list(learner.parameters())
    # PromptSRC's step: IVLP's features; frozen text = the 60 templates' unnormalised features averaged, then
    # normalised; frozen image features from the unprompted encoder; L1 (mean) on normalised features;
    # KL(zero-shot || prompted) summed over the batch and divided by the number of logits.
    text = reference.text_features(tiny_clip, tokens("a photo of a {}."), 4, layer_list(learner.text))
    image = reference.image_features(tiny_clip, images, layer_list(learner.vision))
    text, image = text / text.norm(dim=-1, keepdim=True), image / image.norm(dim=-1, keepdim=True)
    logits = tiny_clip.logit_scale.exp() * image @ text.t()
    with torch.no_grad():
        frozen_text = torch.stack([tiny_clip.encode_text(tokens(t)) for t in IMAGENET_TEMPLATES], dim=1).mean(1)
        frozen_text = frozen_text / frozen_text.norm(dim=-1, keepdim=True)
        frozen_image = tiny_clip.encode_image(images)
        frozen_image = frozen_image / frozen_image.norm(dim=-1, keepdim=True)
        zero_shot = tiny_clip.logit_scale.exp() * frozen_image @ frozen_text.t()
    kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(zero_shot, dim=1), reduction="sum",
                  log_target=True) / logits.numel()
    expected = (F.cross_entropy(logits, LABELS) + 25.0 * F.l1_loss(text, frozen_text)
                + 10.0 * F.l1_loss(image, frozen_image) + kl)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads(out.loss, params), grads(expected, params)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert all(out.terms[k].item() > 1e-5 for k in ("text_l1", "image_l1", "kl"))


def test_plain_training_loop_steps_on_the_objective(tiny_clip, images):
    """train_prompts with an objective makes the SGD step of that objective's gradient."""
    model = kgcoop_model(tiny_clip)
    objective = KgCoOp(weight=8.0).prepare(model, CLASSNAMES)
    ctx = model.prompt_learner.text["0"]
    expected = ctx.detach() - 0.5 * grads(objective(model, images, LABELS).loss, [ctx])[0]
    loader = DataLoader(TensorDataset(images, LABELS), batch_size=4)
    settings = TrainSettings(epochs=1, lr=0.5, momentum=0.0, weight_decay=0.0, warmup_epochs=0)
    train_prompts(model, loader, settings, progress=False, objective=objective)
    torch.testing.assert_close(ctx.detach(), expected, rtol=1e-5, atol=1e-7)


# -- the search -----------------------------------------------------------------------------------------

def test_search_steps_use_the_given_objective_and_record_it(tiny_clip, images, tmp_path):
    torch.manual_seed(0)
    model = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1, 2), branches=("text",), coupled=False)
    objective = KgCoOp(weight=8.0).prepare(model, CLASSNAMES)
    loader = DataLoader(TensorDataset(images, LABELS), batch_size=4)
    optimizer = build_sgd(model.prompt_learner.prompt_parameters(), lr=0.05)
    search = BilevelSearch(model, loader, loader, optimizer, None, SearchSettings(epochs=1, plot=False),
                           str(tmp_path), objective=objective)
    architect = search.architect
    arch = architect.arch_params
    want = grads(objective(model, images, LABELS).loss, arch)
    seen = {}
    step = architect.optimizer.step
    architect.optimizer.step = lambda *a, **k: (seen.update({id(p): p.grad.clone() for p in arch}), step(*a, **k))
    architect.step((images, LABELS), (images, LABELS))
    for param, grad in zip(arch, want):
        torch.testing.assert_close(seen[id(param)], grad, rtol=1e-5, atol=1e-7)
    search.run()
    plain = BilevelSearch(model, loader, loader, build_sgd(model.prompt_learner.prompt_parameters(), lr=0.05), None,
                          SearchSettings(epochs=2, plot=False), str(tmp_path))
    with pytest.raises(SearchStateMismatchError, match="objective"):  # a checkpoint of another objective
        plain.run()


def test_one_call_search_takes_the_objective_and_records_it(tiny_clip, images):
    loader = DataLoader(TensorDataset(images, LABELS), batch_size=4)
    result = search_prompt_lengths(tiny_clip, CLASSNAMES, loader, loader, design="coop", candidates=(0, 1),
                                   settings=SearchSettings(epochs=1, plot=False), objective=KgCoOp(weight=2.0))
    assert result.config.provenance["objective"] == {"name": "kgcoop", "weight": 2.0, "template": "a photo of a {}."}


# -- Gaussian prompt aggregation ------------------------------------------------------------------------

def _states(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"0": torch.randn(2, 3, generator=g)} for _ in range(n)]


class _Learner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_parameter("0", torch.nn.Parameter(torch.zeros(2, 3)))


@pytest.mark.parametrize("mean, std, epochs", [(15, 1, 20), (3, 2, 5), (30, 30, 8)])
def test_gaussian_aggregation_weighs_epochs_by_the_normalised_gaussian(mean, std, epochs):
    learner, averaging = _Learner(), GaussianPromptAveraging(mean, std)
    states = _states(epochs)
    for epoch, state in enumerate(states, 1):
        learner.load_state_dict(state)
        averaging.add(learner, epoch)
    pdf = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for e in range(1, epochs + 1)]
    expected = sum(w / sum(pdf) * s["0"].double() for w, s in zip(pdf, states))
    trained = learner.state_dict()["0"].clone()
    averaging.apply(learner)
    torch.testing.assert_close(learner.state_dict()["0"].double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(averaging.trained["0"], trained)


def test_gaussian_aggregation_survives_far_tails_and_resumes_with_the_trained_prompts():
    """Epochs 1-2 under mean 45, std 1: every published weight underflows (0/0); the limit is epoch 2."""
    learner, averaging = _Learner(), GaussianPromptAveraging(45, 1)
    states = _states(3)
    learner.load_state_dict(states[0])
    averaging.add(learner, 1)
    learner.load_state_dict(states[1])
    averaging.add(learner, 2)
    averaging.apply(learner)
    assert torch.isfinite(learner.state_dict()["0"]).all()
    torch.testing.assert_close(learner.state_dict()["0"], states[1]["0"], rtol=1e-6, atol=1e-6)
    # Resuming (a longer run): the trained prompts come back, and the average goes on.
    saved = averaging.state_dict()
    resumed, learner2 = GaussianPromptAveraging(45, 1), _Learner()
    learner2.load_state_dict(learner.state_dict())  # the checkpoint's (averaged) prompts
    resumed.load_state_dict(saved, learner2)
    torch.testing.assert_close(learner2.state_dict()["0"], states[1]["0"])
    learner2.load_state_dict(states[2])
    resumed.add(learner2, 3)
    w = [math.exp(-0.5 * (e - 45) ** 2 + 0.5 * 42 ** 2) for e in (1, 2, 3)]  # relative to epoch 3's
    expected = sum(wi * s["0"].double() for wi, s in zip(w, states)) / sum(w)
    torch.testing.assert_close(resumed.average()["0"].double(), expected, rtol=1e-6, atol=1e-6)


def test_cross_entropy_is_the_default_objective(tiny_clip, images):
    model = promptsrc_model(tiny_clip)
    out = Objective()(model, images, LABELS)
    torch.testing.assert_close(out.loss, F.cross_entropy(model(images), LABELS))
