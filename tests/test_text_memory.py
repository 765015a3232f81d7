"""Text-side memory at many classes: activation checkpointing and class-chunked evaluation."""

import pytest
import torch

from conftest import CLASSNAMES
from dpl_plugin import PromptConfig, build_prompted_clip
from dpl_plugin.designs import get_design
from dpl_plugin.runtime.memory import SavedActivations
from dpl_plugin.search import build_supernet

TEMPLATES = ["a photo of a {}.", "a sketch of the {}.", "itap of a {}."]


def randomise(model, seed=3):
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.prompt_learner.parameters():
            param.normal_(std=0.5)


def models(tiny_clip, kind, **kwargs):
    if kind == "supernet":
        return build_supernet(tiny_clip, CLASSNAMES, candidates=[0, 1, 3], **get_design("maple").search_space(),
                              **kwargs)
    return build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.maple(2, 2, 3, 3), **kwargs)


@pytest.mark.parametrize("kind", ["supernet", "native"])
def test_text_checkpointing_gives_the_same_gradients_and_keeps_less(tiny_clip, images, kind):
    labels = torch.tensor([0, 1, 2, 3])
    results = {}
    for checkpoint in (False, True):
        model = models(tiny_clip, kind, text_checkpoint=checkpoint)
        randomise(model)
        params = model.learnable_parameters()
        with SavedActivations(exclude=model.parameters()) as saved:
            logits = model(images)
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, labels), params)
        results[checkpoint] = logits.detach(), grads, saved.bytes
    (logits, grads, plain_bytes), (logits_ckpt, grads_ckpt, ckpt_bytes) = results[False], results[True]
    assert torch.equal(logits, logits_ckpt)
    assert len(grads) == len(grads_ckpt) > 0
    for a, b in zip(grads, grads_ckpt):
        assert torch.equal(a, b)
    assert ckpt_bytes < plain_bytes  # the text blocks' activations are no longer saved


@pytest.mark.parametrize("merge", ["features", "embeddings"])
def test_class_chunked_evaluation_equals_one_pass(tiny_clip, merge):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig(text=[2, 0, 1], vision=[0, 0, 0]),
                                templates=TEMPLATES, merge=merge)
    randomise(model)
    calls = []
    model.text_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].num_classes))
    with torch.no_grad():
        model.text_chunk = 0
        whole = model.encode_text()
        model.text_chunk = 2
        chunked = model.encode_text()
    assert calls == [5, 2, 2, 1]
    # Equal up to float rounding: a matrix product may be blocked differently for fewer rows.
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)


def test_training_encodes_all_classes_at_once(tiny_clip):
    """Chunks only bound memory without gradients; a training step keeps one pass (one graph)."""
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.coop(2, 3, 3))
    model.text_chunk = 2
    calls = []
    model.text_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].num_classes))
    assert model.encode_text().requires_grad
    assert calls == [5]
