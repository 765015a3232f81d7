"""The shipped demo backbone: intact, loadable as a ViT CLIP, and still accurate on Fashion-MNIST."""

import hashlib
import os

import pytest
import torch

from dpl_plugin import BackboneSpec, load_clip
from dpl_plugin.demo.fashion_mnist import CLASSNAMES, load_fashion_mnist, to_clip_input
from dpl_plugin.demo.pretrain import ARCH, WEIGHTS, zero_shot_accuracy

# Zero-shot accuracy ("a photo of a {}.") of the shipped weights on the first 1000 test images,
# measured when they were trained, and the margin the test allows below it (the weights are fixed,
# so only a different torch/CPU numerics could move it, and only slightly).
MEASURED_ACCURACY = 0.888
MARGIN = 0.03


@pytest.fixture(scope="module")
def demo_clip():
    return load_clip(WEIGHTS)


def test_weights_match_committed_sha256():
    with open(WEIGHTS + ".sha256") as f:
        expected = f.read().split()[0]
    with open(WEIGHTS, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == expected
    assert os.path.getsize(WEIGHTS) < 10e6  # the shipped backbone stays small (5.0 MB)


def test_loads_as_small_vit(demo_clip):
    spec = BackboneSpec.of(demo_clip)
    assert spec.is_vit
    assert (spec.vision_layers, spec.vision_width, spec.vision_heads) == (
        ARCH["vision_layers"], ARCH["vision_width"], ARCH["vision_width"] // 64)
    assert (spec.text_layers, spec.text_width, spec.text_heads) == (
        ARCH["transformer_layers"], ARCH["transformer_width"], ARCH["transformer_heads"])
    assert (spec.embed_dim, spec.image_resolution, spec.context_length) == (
        ARCH["embed_dim"], ARCH["image_resolution"], ARCH["context_length"])
    assert demo_clip.token_embedding.weight.shape == (ARCH["vocab_size"], ARCH["transformer_width"])
    images = to_clip_input(torch.zeros(2, 28, 28, dtype=torch.uint8), spec.image_resolution)
    with torch.no_grad():
        assert demo_clip.encode_image(images).shape == (2, spec.embed_dim)


def test_zero_shot_accuracy_on_clean_test_images(demo_clip):
    try:
        images, labels = load_fashion_mnist("test", download=False)
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not available ({err})")
    assert len(CLASSNAMES) == int(labels.max()) + 1
    accuracy = zero_shot_accuracy(demo_clip, images[:1000], labels[:1000])
    assert accuracy >= MEASURED_ACCURACY - MARGIN
