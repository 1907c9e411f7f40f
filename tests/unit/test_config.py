import pytest
import torch
import yaml

from encoderlab.config import ConfigError, from_dict
from encoderlab.model import Encoder, ModelConfig, preset_names


@pytest.mark.parametrize(
    "name, body_and_embedding, with_head",
    [("210m", 211.8e6, 310.3e6), ("610m", 607.9e6, 755.6e6), ("1b", 1187.9e6, 1409.5e6)],
)
def test_paper_presets_match_parameter_table(name, body_and_embedding, with_head):
    config = ModelConfig.from_name(name)
    # SYSTEM.md: 212M / 310M, 608M / 756M, 1.19B / 1.41B (issue: 310.3M / 755.6M / 1.41B with head)
    assert config.num_parameters(include_head=False) == pytest.approx(body_and_embedding, abs=0.05e6)
    assert config.num_parameters(include_head=True) == pytest.approx(with_head, abs=0.05e6)
    with torch.device("meta"):
        model = Encoder(config)
    assert model.num_parameters() == config.num_parameters()
    assert model.num_parameters(include_head=False) == config.num_parameters(include_head=False)


def test_paper_preset_dimensions():
    c = ModelConfig.from_name("1b")
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.intermediate_size, c.head_dim) == (
        28, 1728, 18, 6, 5120, 96,
    )
    c = ModelConfig.from_name("610m")
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.intermediate_size) == (26, 1152, 18, 6, 4096)
    assert c.vocab_size == 128_256 and c.mask_token_id == 128002 and c.rope_theta == 10_000.0


def test_flops_match_performance_md():
    # performance.md section 1.3, derived GFLOP/token at T=2048
    assert ModelConfig.from_name("210m").flops_per_token(2048) / 1e9 == pytest.approx(1.497, abs=5e-4)
    assert ModelConfig.from_name("610m").flops_per_token(2048, 0.3) / 1e9 == pytest.approx(3.762, abs=5e-4)


def test_overrides_field_by_field():
    c = ModelConfig.from_name("tiny", num_layers=3, rope_theta=500_000.0)
    assert c.num_layers == 3 and c.rope_theta == 500_000.0 and c.hidden_size == 64
    assert "tiny" in preset_names() and "mini" in preset_names()


def test_unknown_preset_names_available_ones():
    with pytest.raises(ConfigError, match=r"unknown model preset '61m'.*210m"):
        ModelConfig.from_name("61m")


def test_unknown_override_field_is_an_error():
    with pytest.raises(ConfigError, match=r"num_layer.*did you mean 'num_layers'"):
        ModelConfig.from_name("tiny", num_layer=3)


def test_yaml_config_is_strict(tmp_path):
    good = tmp_path / "model.yaml"
    good.write_text("preset: tiny\nnum_layers: 3\n")
    assert ModelConfig.from_yaml(good).num_layers == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nhiden_size: 32\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*hiden_size.*hidden_size"):
        ModelConfig.from_yaml(bad)
    typed = tmp_path / "typed.yaml"
    typed.write_text("preset: tiny\nnum_layers: two\n")
    with pytest.raises(ConfigError, match=r"num_layers: expected an integer"):
        ModelConfig.from_yaml(typed)


def test_invalid_geometry_is_rejected():
    with pytest.raises(ConfigError, match="multiple of num_kv_heads"):
        ModelConfig.from_name("tiny", num_kv_heads=3)
    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig.from_name("tiny", num_heads=5, num_kv_heads=5)


def test_numbers_in_scientific_notation_are_numbers():
    # PyYAML (YAML 1.1) reads 1e-3 as the string '1e-3': it is still a number for a float field
    from encoderlab.study.spec import EvaluationSpec

    assert from_dict(EvaluationSpec, {"tasks": ["sst2"], "lrs": ["1e-4", 5e-4, 1], "seeds": [0]}).lrs == [1e-4, 5e-4, 1.0]
    assert ModelConfig.from_name("610m", norm_eps=yaml.safe_load("1e-6")).norm_eps == 1e-6
    with pytest.raises(ConfigError, match="expected a number, got '1e-3x'"):
        from_dict(EvaluationSpec, {"tasks": ["sst2"], "lrs": ["1e-3x"], "seeds": [0]})
