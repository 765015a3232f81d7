import pytest
import yaml

from dpl_plugin import BackboneSpec, PromptConfig, PromptConfigError

from conftest import make_clip

VIT_B = BackboneSpec("ViT-B/16", 12, 512, 8, 77, 512, 12, 768, 12, 224)
VIT_L = BackboneSpec("ViT-L/14", 12, 768, 12, 77, 768, 24, 1024, 16, 224)
RN50 = BackboneSpec("RN50", 12, 512, 8, 77, 1024, 0, 0, 0, 224)


def test_yaml_round_trip_keeps_every_field(tmp_path):
    config = PromptConfig(text=[2, 0, 6] + [0] * 9, vision=[6, 6, 1] + [0] * 9, insertion="prefix",
                          max_length=6, provenance={"dataset": "imagenet", "shots": 16})
    path = config.save(str(tmp_path / "searched.yaml"))
    loaded = PromptConfig.load(path, backbone=VIT_B)
    assert loaded == config
    text = open(path).read()
    assert text.startswith("# dpl-plugin prompt configuration")
    assert "text: [2, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0]" in text  # one human-editable line per branch
    assert not list(tmp_path.glob(".tmp-*"))  # the atomic write left no temporary file


def test_hand_edited_yaml_is_accepted(tmp_path):
    path = tmp_path / "edited.yaml"
    path.write_text("insertion: native\ntext: [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\n"
                    "vision: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\n")
    config = PromptConfig.load(str(path), backbone=VIT_B)
    assert config.insertion == "native" and config.input_length("text") == 4 and not config.uses("vision")


@pytest.mark.parametrize("edit, message", [
    ({"txt": [0]}, "unknown key(s) ['txt']"),
    ({"text": [1, -2] + [0] * 10}, "text layer 1: token counts must be non-negative integers, got -2"),
    ({"text": [1.5] + [0] * 11}, "text layer 0"),
    ({"text": [0] * 11}, "lists 11 text layers but ViT-B/16 has 12"),
    ({"vision": [0] * 24}, "lists 24 vision layers but ViT-B/16 has 12"),
    ({"max_length": 4, "text": [6] + [0] * 11}, "text layer 0 asks for 6 tokens, above max_length 4"),
    ({"insertion": "suffix"}, "insertion must be one of"),
    ({"coupled": "yes"}, "'coupled' must be true or false"),
    ({"coupled": True, "text": [2] + [0] * 11}, "layer 0 has text 2 and vision 0"),
])
def test_bad_yaml_is_rejected_with_the_problem_named(tmp_path, edit, message):
    data = {"insertion": "prefix", "text": [0] * 12, "vision": [0] * 12}
    data.update(edit)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PromptConfigError) as err:
        PromptConfig.load(str(path), backbone=VIT_B)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(PromptConfigError, match="not found"):
        PromptConfig.load(str(tmp_path / "nope.yaml"))
    (tmp_path / "broken.yaml").write_text("text: [1, 2\n")
    with pytest.raises(PromptConfigError, match="not valid YAML"):
        PromptConfig.load(str(tmp_path / "broken.yaml"))
    (tmp_path / "partial.yaml").write_text("text: [1]\n")
    with pytest.raises(PromptConfigError, match=r"missing \['vision'\]"):
        PromptConfig.load(str(tmp_path / "partial.yaml"))


def test_resnet_backbone_rejects_vision_prompts_and_accepts_text_only():
    with pytest.raises(PromptConfigError, match="ResNet image encoder: vision prompts need a ViT"):
        PromptConfig.vpt().validate(RN50)
    PromptConfig.coop().validate(RN50)


def test_layer_counts_follow_the_backbone():
    PromptConfig.ivlp(text_layers=12, vision_layers=24, depth_vision=24).validate(VIT_L)
    with pytest.raises(PromptConfigError, match="lists 12 vision layers but ViT-L/14 has 24"):
        PromptConfig.ivlp().validate(VIT_L)


def test_backbone_spec_from_a_real_model_drives_validation():
    spec = BackboneSpec.of(make_clip(vision_layers=4, text_layers=2))
    PromptConfig.maple(n_ctx=2, depth=2, text_layers=2, vision_layers=4).validate(spec)
    with pytest.raises(PromptConfigError):
        PromptConfig.maple().validate(spec)


def test_baseline_designs():
    assert PromptConfig.coop().text == [16] + [0] * 11 and not PromptConfig.coop().uses("vision")
    vpt = PromptConfig.vpt()
    assert vpt.vision == [8] * 12 and not vpt.uses("text")
    maple = PromptConfig.maple()
    assert maple.text == maple.vision == [2] * 9 + [0] * 3 and maple.coupled
    ivlp = PromptConfig.ivlp(n_text=2, n_vision=4, depth_text=3, depth_vision=12)
    assert ivlp.text == [2, 2, 2] + [0] * 9 and ivlp.vision == [4] * 12 and not ivlp.coupled
    assert all(c.insertion == "native" for c in (PromptConfig.coop(), vpt, maple, ivlp))
    with pytest.raises(PromptConfigError, match="prompt depth 13"):
        PromptConfig.maple(depth=13)


def test_coupled_configuration_on_unequal_depths():
    PromptConfig(text=[2, 2], vision=[2, 2, 0, 0], coupled=True)
    with pytest.raises(PromptConfigError, match="layer 3 has text 0 and vision 2"):
        PromptConfig(text=[2, 2], vision=[2, 2, 0, 2], coupled=True)


@pytest.mark.parametrize("yaml_text, message", [
    ("max_length: true", "'max_length' must be a whole number of tokens (or left out), got bool True"),
    ("max_length: 6.0", "'max_length' must be a whole number of tokens (or left out), got float 6.0"),
    ("max_length: '6'", "'max_length' must be a whole number of tokens (or left out), got str '6'"),
    ("text: '2, 0, 0'", "'text' must be a list of token counts, one per layer"),
    ("vision: [0, 0.0, 0]", "vision layer 1: token counts must be non-negative integers, got 0.0"),
    ("text: [0, true, 0]", "text layer 1: token counts must be non-negative integers, got True"),
    ("insertion: 1", "'insertion' must be one of ['prefix', 'native'], got 1"),
    ("provenance: [a, b]", "'provenance' must be a mapping, got list"),
])
def test_values_of_the_wrong_type_are_rejected_naming_the_key(tmp_path, yaml_text, message):
    data = yaml.safe_load("text: [1, 0, 0]\nvision: [0, 0, 0]\n")
    data.update(yaml.safe_load(yaml_text))
    path = tmp_path / "typed.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PromptConfigError) as err:
        PromptConfig.load(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_the_constructor_checks_types_too():
    with pytest.raises(PromptConfigError, match="'coupled' must be true or false, got 1"):
        PromptConfig(text=[1, 0], vision=[1, 0], coupled=1)
    with pytest.raises(PromptConfigError, match="'text' must be a list of token counts"):
        PromptConfig(text="10", vision=[0, 0])
