"""The prompted encoders against independent reference computations (tests/reference.py)."""

import pytest
import torch

import reference
from conftest import CLASSNAMES
from dpl_plugin import ContextOverflowError, PromptConfig, build_prompted_clip
from dpl_plugin.backbones.clip_package import clip, clip_model_module


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def texts(template, n_placeholders=0):
    prefix = " ".join(["X"] * n_placeholders) + " " if n_placeholders else ""
    return clip.tokenize([prefix + template.format(c.replace("_", " ")) for c in CLASSNAMES])


def randomise(learner, seed=3):
    """Prompt values unlike any initialisation, so that every prompt visibly matters."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in learner.parameters():
            param.normal_(std=0.5)


def layer_list(params, layers):
    return [params[str(i)] if str(i) in params else None for i in range(layers)]


def check_against_reference(model, clip_model, images, tokens, n_ctx, insertion="native", vision_prompts=None):
    """The model's logits equal the reference's with the same prompt values."""
    learner = model.prompt_learner
    if vision_prompts is None:
        vision_prompts = layer_list(learner.vision, 3)
    with torch.no_grad():
        expected = reference.logits(
            clip_model,
            reference.image_features(clip_model, images, vision_prompts, insertion),
            reference.text_features(clip_model, tokens, n_ctx, layer_list(learner.text, 3), insertion),
        )
        close(model(images), expected)


@pytest.mark.parametrize("insertion", ["prefix", "native"])
def test_all_zero_configuration_is_plain_clip(tiny_clip, images, insertion):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.zeros(3, 3, insertion=insertion))
    assert not model.learnable_parameters()
    with torch.no_grad():
        expected = tiny_clip(images, texts("a photo of a {}."))[0]
        close(model(images), expected)


def test_coop_matches_coop_reference(tiny_clip, images):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.coop(n_ctx=4, text_layers=3, vision_layers=3))
    randomise(model.prompt_learner)
    ctx = model.prompt_learner.text["0"]
    with torch.no_grad():
        expected = reference.logits(tiny_clip, tiny_clip.encode_image(images),
                                    reference.text_features(tiny_clip, texts("{}.", 4), 4, [ctx, None, None]))
        close(model(images), expected)


def test_coop_with_placeholder_embeddings_is_clip_on_the_placeholder_text(tiny_clip, images):
    """An invariant of CoOp's input: context vectors equal to the embedding of "X" give back the
    plain CLIP logits of the prompt "X X X X {class}."."""
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.coop(n_ctx=4, text_layers=3, vision_layers=3))
    x_token = clip.tokenize("X")[0, 1]
    with torch.no_grad():
        model.prompt_learner.text["0"].copy_(tiny_clip.token_embedding.weight[x_token].expand(4, -1))
        close(model(images), tiny_clip(images, texts("{}.", 4))[0])


def test_ctx_init_starts_from_the_template_words(tiny_clip, images):
    """MaPLe/CoOp ``CTX_INIT``: with "a photo of a" the first 2 tokens are learnable and start from
    their own embeddings, so a shallow model initially equals plain CLIP."""
    config = PromptConfig(text=[2, 0, 0], vision=[0, 0, 0], insertion="native")
    model = build_prompted_clip(tiny_clip, CLASSNAMES, config, ctx_init="a photo of a")
    with torch.no_grad():
        close(model(images), tiny_clip(images, texts("a photo of a {}."))[0])


@pytest.mark.parametrize("design", ["maple", "ivlp", "vpt"])
def test_deep_native_designs_match_baseline_reference(tiny_clip, images, design):
    config = {
        "maple": PromptConfig.maple(n_ctx=2, depth=2, text_layers=3, vision_layers=3),
        "ivlp": PromptConfig.ivlp(n_text=2, n_vision=3, depth_text=3, depth_vision=2, text_layers=3, vision_layers=3),
        "vpt": PromptConfig.vpt(n_ctx=4, depth=3, text_layers=3, vision_layers=3),
    }[design]
    model = build_prompted_clip(tiny_clip, CLASSNAMES, config, ctx_init="a photo of a")
    randomise(model.prompt_learner)
    learner = model.prompt_learner
    text_prompts = layer_list(learner.text, 3)
    if design == "maple":
        vision_prompts = [learner.maps[str(i)](text_prompts[i]) if text_prompts[i] is not None else None
                          for i in range(3)]
    else:
        vision_prompts = layer_list(learner.vision, 3)
    check_against_reference(model, tiny_clip, images, texts("a photo of a {}."), config.text[0],
                            vision_prompts=vision_prompts)


def test_prefix_insertion_matches_multihead_attention_reference(tiny_clip, images):
    config = PromptConfig(text=[3, 0, 5], vision=[1, 6, 0], insertion="prefix")
    model = build_prompted_clip(tiny_clip, CLASSNAMES, config)
    randomise(model.prompt_learner)
    check_against_reference(model, tiny_clip, images, texts("a photo of a {}."), 0, "prefix")


def test_native_variable_lengths_move_the_eot_and_mask(tiny_clip, images):
    """Searched lengths trained natively: 2 input tokens, 5 at layer 1 (sequence grows), none at
    layer 2 (the 5 pass through); vision 0, 4, 1."""
    config = PromptConfig(text=[2, 5, 0], vision=[0, 4, 1], insertion="native")
    model = build_prompted_clip(tiny_clip, CLASSNAMES, config)
    randomise(model.prompt_learner)
    check_against_reference(model, tiny_clip, images, texts("{}.", 2), 2)


@pytest.mark.parametrize("config", [
    PromptConfig(text=[3, 0, 5], vision=[0, 0, 0], insertion="prefix"),
    PromptConfig(text=[2, 5, 0], vision=[0, 0, 0], insertion="native"),
])
def test_text_cut_after_last_eot_equals_full_context(tiny_clip, config):
    torch.manual_seed(0)
    short = build_prompted_clip(tiny_clip, CLASSNAMES, config)
    full = build_prompted_clip(tiny_clip, CLASSNAMES, config, truncate=False)
    full.prompt_learner.load_state_dict(short.prompt_learner.state_dict())
    assert full.text_tokens.shape[1] == 77 > short.text_tokens.shape[1]
    with torch.no_grad():
        close(short.encode_text(), full.encode_text())


def test_evaluation_encodes_class_texts_once(tiny_clip, images):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.maple(2, 2, 3, 3))
    randomise(model.prompt_learner)
    calls = []
    model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        per_batch = [model(images[i:i + 2]) for i in (0, 2)]
        assert len(calls) == 2
        with model.cached_text_features():
            cached = [model(images[i:i + 2]) for i in (0, 2)]
        assert len(calls) == 3
    for a, b in zip(cached, per_batch):
        close(a, b)


def test_template_ensemble_averages_normalised_features(tiny_clip, images):
    templates = ["a photo of a {}.", "a sketch of the {}.", "itap of a {}."]
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.zeros(3, 3), templates=templates)
    with torch.no_grad():
        per_template = torch.stack([
            torch.nn.functional.normalize(tiny_clip.encode_text(texts(t)), dim=-1) for t in templates])
        expected = torch.nn.functional.normalize(per_template.mean(0), dim=-1)
        close(model.encode_text(), expected)


@pytest.mark.parametrize("config", [PromptConfig.maple(2, 2, 3, 3), PromptConfig.ivlp(2, 2, 3, 3, 3, 3),
                                    PromptConfig.maple(2, 2, 3, 3).with_insertion("prefix")])
def test_only_prompts_and_maps_learn(tiny_clip, images, config):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, config)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(images), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    learned = {n for n, p in model.named_parameters() if p.grad is not None}
    expected = {"prompt_learner." + n for n, _ in model.prompt_learner.named_parameters()}
    assert learned == expected
    assert all(model.prompt_learner.get_parameter(n[len("prompt_learner."):]).grad.abs().sum() > 0
               for n in expected)
    assert all(p.grad is None and not p.requires_grad for p in tiny_clip.parameters())
    assert not model.text_encoder.training and not model.image_encoder.training


def test_class_names_with_underscores_read_as_spaces(tiny_clip):
    model = build_prompted_clip(tiny_clip, ["golden_retriever"], PromptConfig.zeros(3, 3))
    assert torch.equal(model.text_tokens[0], clip.tokenize("a photo of a golden retriever.")[0, : model.text_tokens.shape[1]])


def test_class_name_too_long_for_the_context_is_named(tiny_clip):
    long_name = "very " * 70 + "long_class"
    with pytest.raises(ContextOverflowError) as err:
        build_prompted_clip(tiny_clip, ["cat", long_name], PromptConfig.coop(4, 3, 3))
    assert long_name in str(err.value) and "77" in str(err.value)
    # the same name fits when fewer input tokens are prepended
    build_prompted_clip(tiny_clip, ["cat", "very " * 60 + "long"], PromptConfig.zeros(3, 3))


def test_resnet_backbone_takes_text_prompts_only(tmp_path, images):
    from conftest import make_clip, save_and_load

    rn = save_and_load(make_clip(vision_resnet=True, vision_width=64, embed_dim=64, resolution=32), tmp_path / "rn.pt")
    model = build_prompted_clip(rn, CLASSNAMES, PromptConfig.coop(4, 3, 0))
    assert model(images).shape == (4, len(CLASSNAMES))
    with pytest.raises(ValueError, match="ViT"):
        build_prompted_clip(rn, CLASSNAMES, PromptConfig.vpt(2, 1, 3, 1))


def test_embedding_ensemble_is_one_sequence_per_class(tiny_clip):
    """The official DPL train stage's "ensemble": the templates' token embeddings averaged into one
    sequence per class, read at the last template's EOT."""
    templates = ["a photo of a {}.", "a sketch of the {}.", "itap of the {}."]
    config = PromptConfig(text=[2, 0, 1], vision=[0, 0, 0], insertion="prefix")
    model = build_prompted_clip(tiny_clip, CLASSNAMES, config, templates=templates, merge="embeddings")
    randomise(model.prompt_learner)
    tokens = torch.stack([texts(t) for t in templates], dim=1)  # (C, T, 77)
    with torch.no_grad():
        embedded = tiny_clip.token_embedding(tokens).mean(dim=1)
        expected = reference.text_features(tiny_clip, tokens[:, -1], 0, layer_list(model.prompt_learner.text, 3),
                                           "prefix", embedded=embedded)
        close(model.encode_text(), torch.nn.functional.normalize(expected, dim=-1))


def test_ctx_init_too_short_for_the_input_tokens_warns(tiny_clip):
    with pytest.warns(UserWarning, match=r"PromptConfig.coop\(n_ctx=4\)"):
        model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.coop(16, 3, 3), ctx_init="a photo of a")
    assert model.prompts.n_slots == 16 and model.prompts.overlay_text is None


def test_prompt_free_text_features_follow_the_model_dtype(tiny_clip, images):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.vpt(2, 3, 3, 3))
    with torch.no_grad():
        model(images)
        clip_model_module.convert_weights(tiny_clip)  # CLIP's fp16 layout, as on a GPU with PREC fp16
        assert model.encode_text().dtype == torch.float16
