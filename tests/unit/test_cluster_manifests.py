"""Every job command in cluster/ (manifests, their comments, the README) names a config and ``--set``
keys that load strictly against that job's config: a renamed key fails here, not on a cluster."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from halo_ray.config import load_config
from halo_ray.errors import ConfigError
from halo_ray.sections import JOB_CONFIGS

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
JOB = re.compile(r"(?:\bjobs/(\w+)\.py|-m\s+halo_ray\.jobs\.(\w+))(.*)")


def logical_lines(text: str) -> list[str]:
    """Lines with comment markers dropped and backslash continuations joined."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip().lstrip("#").strip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    return out + ([current] if current else [])


def job_commands(path: Path) -> list[tuple[str, list[str]]]:
    """``(job, arguments)`` of every job command written in ``path``."""
    text = path.read_text()
    if path.name == "rayjob.yaml":  # the entrypoint is a folded YAML string
        text += "\n" + yaml.safe_load(text)["spec"]["entrypoint"]
    found = []
    for line in logical_lines(text):
        for match in JOB.finditer(line):
            args = shlex.split(match.group(3).split("`")[0].split("|")[0], comments=True)
            if args:  # a bare mention of a job in prose is not a command
                found.append((match.group(1) or match.group(2), args))
    return found


def parse(args: list[str]) -> tuple[Path | None, list[str]]:
    config, sets = None, []
    for flag, value in zip(args, args[1:]):
        if flag == "--config":
            # Relative to the checkout (Ray's working dir); /configs/ is rayjob.yaml's ConfigMap of configs/.
            config = ROOT / "configs" / value.removeprefix("/configs/") if value.startswith("/configs/") else ROOT / value
        elif flag == "--set":
            sets.append(value)
    return config, sets


FILES = sorted(p for p in CLUSTER.iterdir() if p.suffix in (".yaml", ".md"))
COMMANDS = [(p.name, job, args) for p in FILES for job, args in job_commands(p)]


@pytest.mark.parametrize("name,job,args", COMMANDS, ids=[f"{n}:{j}:{i}" for i, (n, j, _) in enumerate(COMMANDS)])
def test_job_command_loads_strictly(name, job, args):
    assert job in JOB_CONFIGS, f"{name}: no job config named {job!r}"
    config, sets = parse(args)
    assert config is not None and config.is_file(), f"{name}: {job} command names no existing --config: {args}"
    load_config(JOB_CONFIGS[job], config, sets)


def test_every_manifest_that_runs_a_job_is_checked():
    names = {n for n, _, _ in COMMANDS}
    assert {"rayjob.yaml", "single-2gpu.yaml", "multi-node.yaml", "README.md"} <= names, names
    assert {"raft", "sft", "benchmark"} <= {job for _, job, _ in COMMANDS}


def test_a_renamed_key_would_fail(tmp_path):
    manifest = tmp_path / "rayjob.yaml"
    manifest.write_text((CLUSTER / "rayjob.yaml").read_text().replace("learner.num_gpus_per_rank", "learner.gpus"))
    (job, args), *_ = [c for c in job_commands(manifest) if "--set" in c[1]]
    config, sets = parse(args)
    with pytest.raises(ConfigError, match="gpus"):
        load_config(JOB_CONFIGS[job], config, sets)
