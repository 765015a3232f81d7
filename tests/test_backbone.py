import gzip
import hashlib
import io
from typing import Tuple

import pytest
import torch

from dpl_plugin import BackboneSpec, CorruptWeightsError, WeightsNotFoundError, load_clip
from dpl_plugin.backbones.clip_package import clip_model_module
from dpl_plugin.backbones.openai_clip import UntrustedWeightsError, resolve_weights
from dpl_plugin.errors import ArgumentTypeError

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
    with pytest.raises(UntrustedWeightsError, match="jit.pt is a TorchScript archive.*trust_torchscript=True"):
        load_clip(str(jit_path))  # not one of clip's published files: TorchScript only by choice
    torch.testing.assert_close(_logits(load_clip(str(jit_path), trust_torchscript=True), images, tokens), expected)
    torch.testing.assert_close(_logits(load_clip(str(gz_path)), images, tokens), expected)


class _RunsCodeWhenLoaded(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = 1

    @torch.jit.export
    def __getstate__(self) -> Tuple[int, bool]:
        return (self.x, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[int, bool]) -> None:
        print("CODE RAN DURING THE LOAD")
        self.x = state[0]
        self.training = state[1]

    def forward(self, x):
        return x


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_torchscript_archive_with_code_is_refused_before_it_runs(tmp_path, capfd):
    path = tmp_path / "weights.pt"
    torch.jit.save(torch.jit.script(_RunsCodeWhenLoaded()), str(path))
    torch.jit.load(str(path))
    assert "CODE RAN DURING THE LOAD" in capfd.readouterr().out  # what torch.jit.load does with it
    with pytest.raises(UntrustedWeightsError, match="weights.pt is a TorchScript archive, and loading one runs"):
        load_clip(str(path))
    assert "CODE RAN" not in capfd.readouterr().out


def test_a_weights_file_with_flipped_bytes_is_refused_by_its_zip_crc(tmp_path):
    path = tmp_path / "flipped.pt"
    torch.save(make_clip().state_dict(), path)
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 2000] = bytes(b ^ 0xFF for b in raw[middle:middle + 2000])  # in place: same size
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptWeightsError, match=r"flipped.pt is corrupt: its record '.*' fails the zip archive's "
                                                  r"CRC check"):
        load_clip(str(path))


@pytest.mark.parametrize("value", [None, 3, ["ViT-B/16"]])
def test_load_clip_names_a_wrong_argument(value):
    with pytest.raises(ArgumentTypeError, match="load_clip's name_or_path must be a str or PathLike"):
        load_clip(value)


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


# -- files that read but do not hold a usable CLIP ---------------------------------------------------------

def _non_finite_tensors(path):
    state = torch.load(path, weights_only=True)
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def test_a_file_corrupted_in_place_is_reported_with_the_tensor(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(make_clip().state_dict(), path)
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 4096] = b"\xff" * 4096  # NaN bit patterns, as a damaged disk block might hold
    path.write_bytes(bytes(raw))
    damaged = _non_finite_tensors(path)
    assert len(damaged) == 1  # torch reads the damaged file without complaint
    with pytest.raises(CorruptWeightsError, match=r"tiny\.pt is corrupt: its record .* fails the zip archive's CRC"):
        load_clip(str(path))  # the zip's own CRCs find it first
    # Records intact but values not finite (damaged before it was saved): the tensor check names it.
    state = make_clip().state_dict()
    state[damaged[0]].view(-1)[:1024] = float("nan")
    saved_nan = tmp_path / "saved_nan.pt"
    torch.save(state, saved_nan)
    with pytest.raises(CorruptWeightsError) as err:
        load_clip(str(saved_nan))
    assert f"{saved_nan}: tensor '{damaged[0]}' holds 1024 NaN or infinite values (of " in str(err.value)


@pytest.mark.parametrize("key, rows, message", [
    ("token_embedding.weight", 49400, "tensor 'token_embedding.weight' has shape (49400, 128), expected (49408, 128)"),
    ("positional_embedding", 70, "tensor 'positional_embedding' has shape (70, 128), expected (77, 128)"),
    ("visual.positional_embedding", 16, "tensor 'visual.positional_embedding' has shape (16, 128), expected (17, 128)"),
    ("transformer.resblocks.1.mlp.c_fc.weight", 500,
     "tensor 'transformer.resblocks.1.mlp.c_fc.weight' has shape (500, 128), expected (512, 128)"),
])
def test_a_state_dict_with_cut_rows_is_reported_with_the_tensor(tmp_path, key, rows, message):
    state = make_clip().state_dict()
    state[key] = state[key][:rows].clone()
    path = tmp_path / "cut.pt"
    torch.save(state, path)
    with pytest.raises(CorruptWeightsError) as err:
        load_clip(str(path))
    assert message in str(err.value) and str(path) in str(err.value)
    assert "ViT 3 layers, width 128, patch 8" in str(err.value)  # the architecture read from the file


def test_a_missing_tensor_is_named(tmp_path):
    state = make_clip().state_dict()
    del state["ln_final.bias"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(CorruptWeightsError, match="tensor 'ln_final.bias' is missing"):
        load_clip(str(tmp_path / "partial.pt"))


def test_a_file_named_like_clips_model_must_have_its_published_sha256(tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    torch.save(make_clip().state_dict(), path)  # readable, but not OpenAI's ViT-B/16
    with pytest.raises(CorruptWeightsError) as err:
        load_clip(str(path))
    assert "named like clip's 'ViT-B/16' weights" in str(err.value)
    assert "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f" in str(err.value)  # clip's URL


def test_a_sha256_file_beside_the_weights_is_checked(tmp_path, images):
    path = tmp_path / "tiny.pt"
    torch.save(make_clip().state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "tiny.pt.sha256").write_text(f"{digest}  tiny.pt\n")
    load_clip(str(path))
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1  # one flipped bit
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptWeightsError, match=f"does not match its checksum file {path}.sha256"):
        load_clip(str(path))
