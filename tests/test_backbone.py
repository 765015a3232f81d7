import gzip
import io

import pytest
import torch

from dpl_plugin import BackboneSpec, CorruptWeightsError, WeightsNotFoundError, load_clip
from dpl_plugin._clip import clip_model_module
from dpl_plugin.backbone import resolve_weights

from conftest import make_clip


def _logits(model, images, tokens):
    with torch.no_grad():
        return model(images, tokens)[0]


def test_state_dict_file_loads_to_identical_fp32_model(tmp_path, images):
    original = make_clip()
    path = tmp_path / "w.pt"
    torch.save(original.state_dict(), path)
    loaded = load_clip(str(path))
    tokens = torch.randint(1, 49406, (2, 77))
    tokens[:, 10] = 49407
    assert loaded.visual.conv1.weight.dtype == torch.float32
    assert not any(p.requires_grad for p in loaded.parameters())
    assert not loaded.training
    # clip.load's CPU path: OpenAI's fp16 weight layout (convert_weights), then upcast to fp32.
    reference = make_clip()
    clip_model_module.convert_weights(reference)
    reference.float()
    torch.testing.assert_close(_logits(loaded, images, tokens), _logits(reference.eval(), images, tokens))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")  # making the archive
def test_torchscript_archive_and_gzip_load_like_state_dicts(tmp_path, images):
    model = make_clip().eval()
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[:, 0], tokens[:, 1], tokens[:, 2] = 49406, 320, 49407
    traced = torch.jit.trace(model, (images, tokens), check_trace=False)
    jit_path = tmp_path / "jit.pt"
    torch.jit.save(traced, str(jit_path))
    sd_path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), sd_path)
    gz_path = tmp_path / "sd.pt.gz"
    with gzip.open(gz_path, "wb") as f:
        f.write(sd_path.read_bytes())
    expected = _logits(load_clip(str(sd_path)), images, tokens)
    torch.testing.assert_close(_logits(load_clip(str(jit_path)), images, tokens), expected)
    torch.testing.assert_close(_logits(load_clip(str(gz_path)), images, tokens), expected)


def test_missing_named_weights_offline_name_the_expected_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DPL_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        load_clip("ViT-B/16", download_root=str(tmp_path))
    assert str(tmp_path / "ViT-B-16.pt") in str(err.value)
    assert "DPL_OFFLINE" in str(err.value)


def test_failed_download_names_the_cache_file_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("DPL_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights("RN50", download_root=str(tmp_path))
    assert str(tmp_path / "RN50.pt") in str(err.value)
    assert not (tmp_path / "RN50.pt").exists()


def test_corrupt_cached_download_is_reported_not_loaded(tmp_path):
    (tmp_path / "ViT-B-32.pt").write_bytes(b"partial download")
    with pytest.raises(CorruptWeightsError, match="SHA256"):
        load_clip("ViT-B/32", download_root=str(tmp_path))


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"\x1f\x8b garbage"])
def test_corrupt_local_file_names_the_file(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CorruptWeightsError) as err:
        load_clip(str(path))
    assert str(path) in str(err.value)


def test_truncated_checkpoint_is_reported(tmp_path):
    buffer = io.BytesIO()
    torch.save(make_clip().state_dict(), buffer)
    path = tmp_path / "truncated.pt"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(CorruptWeightsError, match="truncated"):
        load_clip(str(path))


def test_unknown_name_lists_available_models():
    with pytest.raises(WeightsNotFoundError, match="ViT-B/16"):
        load_clip("ViT-Z/99")


def test_fp16_on_cpu_falls_back_to_fp32(tiny_clip_path):
    with pytest.warns(UserWarning, match="fp32"):
        model = load_clip(tiny_clip_path, precision="fp16")
    assert model.token_embedding.weight.dtype == torch.float32


@pytest.mark.parametrize("shape", [
    dict(vision_width=192, vision_layers=4, text_width=128, text_layers=2, patch=16),  # 3 vs 2 heads
    dict(vision_width=64, vision_layers=2, text_width=64, text_layers=3, patch=4),
])
def test_spec_reads_shapes_off_the_model(tmp_path, shape):
    torch.save(make_clip(**shape).state_dict(), tmp_path / "w.pt")
    spec = BackboneSpec.of(load_clip(str(tmp_path / "w.pt")))
    assert (spec.vision_layers, spec.vision_width, spec.vision_heads) == (
        shape["vision_layers"], shape["vision_width"], shape["vision_width"] // 64)
    assert (spec.text_layers, spec.text_width, spec.text_heads) == (
        shape["text_layers"], shape["text_width"], shape["text_width"] // 64)
    assert spec.image_resolution == 32 and spec.is_vit


def test_resnet_backbone_has_no_vision_layers(tmp_path):
    torch.save(make_clip(vision_resnet=True, vision_width=64, embed_dim=64).state_dict(), tmp_path / "rn.pt")
    spec = BackboneSpec.of(load_clip(str(tmp_path / "rn.pt")))
    assert not spec.is_vit and spec.vision_layers == 0 and spec.text_layers == 3
