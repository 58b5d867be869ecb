"""Every YAML under configs/ (tiny presets included) loads strictly against its job's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from halo_ray.config import load_config
from halo_ray.errors import ConfigError
from halo_ray.sections import JOB_CONFIGS

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
PRESET_JOBS = {"tiny": "demo"}  # configs/tiny.yaml is the embedded default (make demo)
JOBS_WITH_A_SCRIPT = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem != "__init__")


def job_of(path: Path) -> str:
    """The job a preset configures: its file stem before any ``-<hardware>`` suffix."""
    stem = path.stem.split("-")[0]
    return PRESET_JOBS.get(stem, stem)


# configs/sweeps/ holds ready sweeps, not job configs: test_sweep loads each and every point's config strictly
PRESETS = sorted(p for p in CONFIGS.rglob("*.yaml") if p.relative_to(CONFIGS).parts[0] != "sweeps")


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_yaml_under_configs_loads_strictly(path):
    job = job_of(path)
    assert job in JOB_CONFIGS, f"{path}: no job config named {job!r} (known: {sorted(JOB_CONFIGS)})"
    load_config(JOB_CONFIGS[job], path)


def test_strict_loading_rejects_a_misspelt_key(tmp_path):
    # The test above is only worth something if a wrong key fails: a typo in a copy of a tiny preset does.
    bad = tmp_path / "raft.yaml"
    bad.write_text((CONFIGS / "tiny" / "raft.yaml").read_text().replace("num_steps:", "num_stesp:"))
    with pytest.raises(ConfigError, match="num_stesp"):
        load_config(JOB_CONFIGS["raft"], bad)


@pytest.mark.parametrize("job", JOBS_WITH_A_SCRIPT)
def test_each_job_has_a_tiny_preset_on_the_embedded_model(job):
    path = CONFIGS / "tiny" / f"{job}.yaml"
    assert path.is_file(), f"jobs/{job}.py has no configs/tiny/{job}.yaml"
    config = load_config(JOB_CONFIGS[job], path)
    assert config.model.path == "", "tiny presets run on the embedded model (empty model.path builds it)"
    # Input files a preset names are relative to the checkout (Ray's working dir) and must be there.
    problems = getattr(getattr(config, "benchmark", None), "problems", "")
    if problems:
        assert (ROOT / problems).is_file(), problems
    if job == "dpo":  # the untrained embedded model forms no pair from tests: the preset trains on shipped ones
        from halo_ray.data.schema import validate_file

        prefs = ROOT / config.dpo.preferences
        _, count, bad = validate_file(prefs, "preferences")
        assert count > 0 and not bad, (prefs, bad[:3])
