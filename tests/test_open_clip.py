"""OpenCLIP as a second backbone family: small random-initialised ``open_clip.CLIP`` models against
OpenCLIP's own encoders and a direct computation with its own blocks, the loader, and both stages."""

import json
import os

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

open_clip = pytest.importorskip("open_clip")

import dpl_plugin as dpl  # noqa: E402
from conftest import CLASSNAMES  # noqa: E402
from dpl_plugin.backbones.registry import bind  # noqa: E402
from dpl_plugin.engine.training import TrainSettings, evaluate, train_prompts  # noqa: E402
from dpl_plugin.search.stage import search_prompt_lengths  # noqa: E402

# (LayerScale init, text pooling, image pooling, final_ln_after_pool, Linear text projection)
VARIANTS = {
    "openai-like": (None, "argmax", "tok", False, False),
    "layerscale-eos-avg": (0.1, "eos", "avg", False, False),
    "layerscale-last-avg-after": (0.1, "last", "avg", True, True),
}


def make_open_clip(layer_scale=None, text_pool="argmax", image_pool="tok", after_pool=False, linear_proj=False,
                   seed=0, **vision):
    """Two layers per branch, width 64, 32x32 images; biases and LayerScale randomised so that every
    term of the computation shows."""
    torch.manual_seed(seed)
    vision_cfg = dict(layers=2, width=64, head_width=32, patch_size=8, image_size=32, ls_init_value=layer_scale,
                      pool_type=image_pool, final_ln_after_pool=after_pool, **vision)
    text_cfg = dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2, ls_init_value=layer_scale,
                    pool_type=text_pool, eos_id=49407, proj_bias=linear_proj)
    model = open_clip.CLIP(embed_dim=32, vision_cfg=vision_cfg, text_cfg=text_cfg).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or name.endswith("gamma"):
                param.normal_(std=0.3)
    return model


def full_tokens(prompts):
    """The prompts' ids at full context length, as OpenCLIP's tokenizer gives them."""
    tokens = torch.zeros(prompts.tokens.shape[0], 77, dtype=torch.long)
    tokens[:, :prompts.length] = prompts.tokens
    return tokens


@pytest.fixture()
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_without_prompts_features_equal_open_clip_encoders(variant, images):
    model = make_open_clip(*VARIANTS[variant]).double()
    for insertion in ("prefix", "native"):
        prompted = dpl.build_prompted_clip(model, CLASSNAMES, dpl.PromptConfig.zeros(2, 2, insertion=insertion))
        with torch.no_grad():
            text = prompted.text_encoder(prompted.prompts)
            image = prompted.image_encoder(images.double())
            torch.testing.assert_close(text, model.encode_text(full_tokens(prompted.prompts)), rtol=0, atol=1e-12)
            torch.testing.assert_close(image, model.encode_image(images.double()), rtol=0, atol=1e-12)


OTHER_SHAPES = {
    # CustomTextCLIP (text tower as model.text), no text projection, no ln_pre, patch dropout (off in eval)
    "custom-text": lambda: open_clip.CustomTextCLIP(
        64, dict(layers=2, width=64, head_width=32, patch_size=8, image_size=32, no_ln_pre=True, patch_dropout=0.5),
        dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2, proj_type="none")),
    # a ModifiedResNet image encoder: text prompts only
    "resnet": lambda: open_clip.CLIP(32, dict(layers=(1, 1, 1, 1), width=64, head_width=32, image_size=32),
                                     dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2)),
}


@pytest.mark.parametrize("shape", sorted(OTHER_SHAPES))
def test_other_supported_shapes_equal_open_clip_encoders(shape, images):
    torch.manual_seed(0)
    model = OTHER_SHAPES[shape]().double().eval()
    spec = dpl.BackboneSpec.of(model)
    prompted = dpl.build_prompted_clip(model, CLASSNAMES, dpl.PromptConfig.zeros(2, spec.vision_layers))
    with torch.no_grad():
        text = prompted.text_encoder(prompted.prompts)
        torch.testing.assert_close(text, model.encode_text(full_tokens(prompted.prompts)), rtol=0, atol=1e-12)
        torch.testing.assert_close(prompted.image_encoder(images.double()), model.encode_image(images.double()),
                                   rtol=0, atol=1e-12)
    assert spec.vision_layers == (0 if shape == "resnet" else 2)


def test_class_prompts_are_open_clips_tokens():
    model = make_open_clip()
    prompts = dpl.build_prompts(CLASSNAMES, tokenizer=bind(model).tokenizer)
    expected = open_clip.get_tokenizer("ViT-B-16")([f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])
    assert torch.equal(full_tokens(prompts), expected)


def _block(block, x, prompt=None, mask=None):
    """OpenCLIP's own block step by step, the prompt as extra keys/values through its attention."""
    h = block.ln_1(x)
    kv = h if prompt is None else torch.cat([h, block.ln_1(prompt).expand(x.shape[0], -1, -1)], dim=1)
    if mask is not None and prompt is not None:
        mask = torch.cat([mask, torch.zeros(mask.shape[0], prompt.shape[0], dtype=mask.dtype)], dim=1)
    x = x + block.ls_1(block.attention(q_x=h, k_x=kv, v_x=kv, attn_mask=mask))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def direct_logits(model, tokens, images, text_prompts, vision_prompts, insertion, n_ctx):
    """The logits as OpenCLIP computes them, with prompts put in by hand: under native insertion the
    text prompt fills the ``n_ctx`` placeholder slots after SOT and vision prompts follow the patches;
    a deeper prompt replaces the previous layer's."""
    x = model.token_embedding(tokens)
    n_text = n_ctx
    for layer, block in enumerate(model.transformer.resblocks):
        prompt = text_prompts[layer]
        if insertion == "native" and prompt is not None:
            x = torch.cat([x[:, :1], prompt.expand(x.shape[0], -1, -1), x[:, 1 + n_text:]], dim=1)
            n_text = prompt.shape[0]
        if layer == 0:
            x = x + model.positional_embedding[:x.shape[1]]
        mask = torch.full((x.shape[1], x.shape[1]), float("-inf"), dtype=x.dtype).triu_(1)  # as model.attn_mask
        x = _block(block, x, prompt if insertion == "prefix" else None, mask)
    x = model.ln_final(x)
    if model.text_pool_type == "last":
        x = x[:, -1]
    else:  # the end-of-text token, moved by the prompts' change in length
        x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1) + n_text - n_ctx]
    proj = model.text_projection
    text = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj

    visual = model.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
    n_image = x.shape[1]
    for layer, block in enumerate(visual.transformer.resblocks):
        prompt = vision_prompts[layer]
        if insertion == "native" and prompt is not None:
            x = torch.cat([x[:, :n_image], prompt.expand(x.shape[0], -1, -1)], dim=1)
        if layer == 0:
            x = visual.ln_pre(x)
        x = _block(block, x, prompt if insertion == "prefix" else None)
    image = visual._pool(x[:, :n_image])[0] @ visual.proj  # OpenCLIP's pooling of the image's own tokens
    image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * image @ text.t()


@pytest.mark.parametrize("insertion", ["prefix", "native"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_prompted_logits_equal_a_direct_computation(variant, insertion, images):
    model = make_open_clip(*VARIANTS[variant]).double()
    config = dpl.PromptConfig(text=[2, 3], vision=[2, 1], insertion=insertion)
    prompted = dpl.build_prompted_clip(model, CLASSNAMES, config).double()
    torch.manual_seed(3)
    with torch.no_grad():
        for param in prompted.prompt_learner.parameters():
            param.normal_(std=0.5)
        learner = prompted.prompt_learner
        text = [learner.text[str(i)] for i in range(2)]
        vision = [learner.vision[str(i)] for i in range(2)]
        n_ctx = 2 if insertion == "native" else 0
        template = ["{}."] if n_ctx else ["a photo of a {}."]  # native: placeholder slots before the class name
        tokens = full_tokens(dpl.build_prompts(CLASSNAMES, template, n_slots=n_ctx, tokenizer=bind(model).tokenizer))
        expected = direct_logits(model, tokens, images.double(), text, vision, insertion, n_ctx)
        torch.testing.assert_close(prompted(images.double()), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("option,feature", [
    (dict(vision=dict(attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=1)), "attentional_pool"),
    (dict(vision=dict(qk_norm=True)), "qk_norm"),
    (dict(text=dict(pool_type="first")), "text pooling 'first'"),
    (dict(text=dict(no_causal_mask=True)), "no_causal_mask"),
])
def test_unsupported_features_are_refused_by_name(option, feature):
    vision_cfg = dict(layers=2, width=64, head_width=32, patch_size=8, image_size=32, **option.get("vision", {}))
    text_cfg = dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2, **option.get("text", {}))
    model = open_clip.CLIP(embed_dim=32, vision_cfg=vision_cfg, text_cfg=text_cfg)
    with pytest.raises(dpl.UnsupportedBackboneError) as err:
        dpl.build_prompted_clip(model, CLASSNAMES, dpl.PromptConfig.zeros(2, 2))
    assert feature in str(err.value)


def save_folder(model, folder, config):
    """An OpenCLIP model folder as the Hugging Face hub holds one: its config and its weights."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": config}, f)
    torch.save(model.state_dict(), os.path.join(folder, "open_clip_pytorch_model.bin"))
    return str(folder)


TINY_CONFIG = dict(embed_dim=32, vision_cfg=dict(layers=2, width=64, head_width=32, patch_size=8, image_size=32,
                                                  ls_init_value=0.1),
                   text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2, ls_init_value=0.1))


def test_a_model_folder_loads_offline_to_the_same_model(tmp_path, images):
    original = open_clip.CLIP(**TINY_CONFIG).eval()
    folder = save_folder(original, tmp_path / "tiny", TINY_CONFIG)
    loaded = dpl.load_clip("open_clip:" + folder)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    assert dpl.BackboneSpec.of(loaded).vision_layers == 2
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(images), original.encode_image(images))


def test_missing_weights_are_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(dpl.WeightsNotFoundError) as err:
        dpl.load_clip("open_clip:ViT-B-16/laion2b_s34b_b88k")
    message = str(err.value)
    assert str(tmp_path / "hf" / "hub" / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K") in message
    assert "open_clip:ViT-B-16//path/to/weights.bin" in message
    with pytest.raises(dpl.WeightsNotFoundError, match="does not exist"):
        dpl.load_clip("open_clip:" + str(tmp_path / "no_such_folder"))
    with pytest.raises(dpl.WeightsNotFoundError, match="not a pretrained tag"):
        dpl.load_clip("open_clip:ViT-B-16/no_such_tag")
    with pytest.raises(dpl.WeightsNotFoundError, match="pass its folder"):  # no download attempted
        dpl.load_clip("open_clip:hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K")
    with pytest.raises(dpl.UnsupportedBackboneError, match="Hugging Face tokenizer"):  # refused before building
        dpl.load_clip("open_clip:ViT-B-16-SigLIP/webli")


def test_a_cached_tag_is_found_in_the_hub_cache(tmp_path, monkeypatch):
    """A tag resolves to the file OpenCLIP's download leaves in the hub cache (here an empty stand-in),
    without a download."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    snapshot = tmp_path / "hf" / "hub" / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"")
    from dpl_plugin.backbones.open_clip_loading import resolve_tag

    assert resolve_tag("ViT-B-16", "laion2b_s34b_b88k") == str(snapshot / "open_clip_pytorch_model.bin")


def test_corrupt_weights_are_one_clear_message(tmp_path):
    folder = save_folder(open_clip.CLIP(**TINY_CONFIG), tmp_path / "tiny", TINY_CONFIG)
    weights = os.path.join(folder, "open_clip_pytorch_model.bin")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    with pytest.raises(dpl.CorruptWeightsError, match="truncated, corrupt"):
        dpl.load_clip("open_clip:" + folder)


def test_search_and_train_stages_run_on_open_clip(images):
    model = make_open_clip(*VARIANTS["layerscale-last-avg-after"])
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 3, 32, 32, generator=g), torch.arange(8) % len(CLASSNAMES))
    loader = DataLoader(data, batch_size=4)
    result = search_prompt_lengths(model, CLASSNAMES, loader, loader, design="ivlp", candidates=(0, 1, 2),
                                   settings=dpl.SearchSettings(epochs=1, plot=False))
    assert len(result.config.text) == 2 and len(result.config.vision) == 2
    trained = dpl.build_prompted_clip(model, CLASSNAMES, result.config)
    before = {k: v.clone() for k, v in trained.prompt_learner.state_dict().items()}
    train_prompts(trained, loader, TrainSettings(epochs=1, lr=0.1), progress=False)
    after = trained.prompt_learner.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before) or not before
    assert 0.0 <= evaluate(trained, loader, progress=False) <= 100.0


def test_train_py_searches_and_trains_on_an_open_clip_folder(tmp_path):
    """One tiny ``train.py`` run (search, then training and test) with an OpenCLIP model folder as
    ``MODEL.BACKBONE.NAME``."""
    pytest.importorskip("dassl", reason="Dassl (KaiyangZhou/Dassl.pytorch, not on PyPI) is not installed")
    from train_runs import REPO, Workspace

    workspace = Workspace(tmp_path)
    folder = save_folder(open_clip.CLIP(**TINY_CONFIG), tmp_path / "tiny_open_clip", TINY_CONFIG)
    run = workspace.run("open_clip", "MODEL.BACKBONE.NAME", "open_clip:" + folder, trainer="DPL_IVLP",
                        config=os.path.join(REPO, "configs", "trainers", "DPL_IVLP", "vit_b16.yaml"))
    log = run().ok()
    assert "Searching prompt lengths" in log and "Finish training" in log
    trained = dpl.PromptConfig.load(run.path("prompt_config.yaml"))
    assert len(trained.text) == len(trained.vision) == 2  # the OpenCLIP model's layers, not the openai file's 3
