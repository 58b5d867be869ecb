"""Strict config loading: key paths, closest names, types, all errors at once, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from halo_ray.config import describe, dump_yaml, from_dict, load_config, read_yaml
from halo_ray.errors import ConfigError
from halo_ray.sections import JOB_CONFIGS, GenerateConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_load():
    cfg = from_dict(GenerateConfig, {})
    assert cfg.rollout.samples_per_prompt == 8 and cfg.model.lora.r == 16


def test_unknown_key_names_full_path_and_closest():
    with pytest.raises(ConfigError) as err:
        from_dict(GenerateConfig, {"rollout": {"samples_per_promt": 4}})
    (msg,) = err.value.problems
    assert msg.startswith("rollout.samples_per_promt: unknown key")
    assert "did you mean 'rollout.samples_per_prompt'" in msg


def test_all_errors_reported_together():
    data = {"rollout": {"temperature": "hot", "top_p": 1.0, "bogus": 1}, "model": {"lora": {"r": "x"}}, "nope": {}}
    with pytest.raises(ConfigError) as err:
        from_dict(GenerateConfig, data, source="cfg.yaml")
    keys = sorted(p.split(":")[1].strip() for p in err.value.problems)
    assert keys == ["model.lora.r", "nope", "rollout.bogus", "rollout.temperature"]
    assert all(p.startswith("cfg.yaml: ") for p in err.value.problems)


def test_bool_is_not_an_int_and_int_widens_to_float():
    with pytest.raises(ConfigError, match="rollout.max_new_tokens: expected int"):
        from_dict(GenerateConfig, {"rollout": {"max_new_tokens": True}})
    assert from_dict(GenerateConfig, {"rollout": {"temperature": 1}}).rollout.temperature == 1.0


def test_cross_field_checks_give_values():
    with pytest.raises(ConfigError, match=r"top_p must be in \(0, 1\], got 1.5"):
        from_dict(GenerateConfig, {"rollout": {"top_p": 1.5}})


def test_choices_are_checked():
    with pytest.raises(ConfigError, match="model.dtype: 'fp8' is not one of"):
        from_dict(GenerateConfig, {"model": {"dtype": "fp8"}})


def test_file_then_base_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rollout:\n  temperature: 0.2\n  samples_per_prompt: 2\n")
    cfg = load_config(GenerateConfig, path, ["rollout.samples_per_prompt=5", 'rollout.stop=["\\n\\n"]'],
                      base={"rollout.temperature": 0.9, "model.path": "/m"})
    assert (cfg.rollout.temperature, cfg.rollout.samples_per_prompt, cfg.model.path) == (0.9, 5, "/m")
    assert cfg.rollout.stop == ("\n\n",)


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rollout:\n  temperature: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        read_yaml(path)
    with pytest.raises(ConfigError, match="config file not found"):
        read_yaml(tmp_path / "missing.yaml")


def test_resolved_config_round_trips():
    cfg = from_dict(GenerateConfig, {"rollout": {"stop": ["x"]}})
    import yaml

    assert from_dict(GenerateConfig, yaml.safe_load(dump_yaml(cfg))) == cfg


def test_every_field_is_documented():
    for job, cls in JOB_CONFIGS.items():
        for key, _tp, _default, doc in describe(cls):
            assert doc.strip(), f"{job}: {key} has no doc"


PRESET_JOBS = {"tiny": "demo"}  # configs/<job>[-<hardware>].yaml; tiny.yaml is the embedded default (make demo)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads(path):
    stem = path.stem.split("-")[0]
    job = PRESET_JOBS.get(stem, stem)
    assert job in JOB_CONFIGS, f"{path.name}: no job config named {job!r}"
    load_config(JOB_CONFIGS[job], path)


def test_tiny_yaml_is_the_embedded_default():
    from halo_ray.sections import DemoConfig

    assert load_config(DemoConfig, CONFIGS / "tiny.yaml") == DemoConfig()


def test_partial_section_overlays_the_fields_own_default():
    from halo_ray.sections import DemoConfig

    cfg = from_dict(DemoConfig, {"sft": {"learner": {"epochs": 3}}})
    assert cfg.sft.learner.epochs == 3
    assert cfg.sft.learner.lr == DemoConfig().sft.learner.lr == 2e-3  # the demo's value, not LearnerConfig's
    assert cfg.sft.data.train == "demo#sft"
