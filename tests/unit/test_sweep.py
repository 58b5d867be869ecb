"""Sweep planning: grid parsing and expansion, run names, overrides, reading a metric back, the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halo_ray.errors import ConfigError, DataError
from halo_ray.sweep import best, expand, job_argv, load_grid_file, overrides, parse_grid, read_metric, result_table, run_name


def test_grid_parsing_and_cartesian_expansion():
    assert parse_grid("learner.lr=1e-5,5e-5") == ("learner.lr", [1e-5, 5e-5])
    assert parse_grid("dpo.score=pass_rate,reward") == ("dpo.score", ["pass_rate", "reward"])
    assert parse_grid("learner.bf16=true,false")[1] == [True, False]
    points = expand([parse_grid("learner.lr=1e-5,5e-5"), parse_grid("objective.beta=0.1,0.3,0.5")])
    assert len(points) == 6
    assert points[0] == {"learner.lr": 1e-5, "objective.beta": 0.1}
    assert points[1] == {"learner.lr": 1e-5, "objective.beta": 0.3}  # the first grid varies slowest
    assert points[-1] == {"learner.lr": 5e-5, "objective.beta": 0.5}
    for bad in ("learner.lr", "=1,2", "learner.lr=", "learner.lr=1,,2", "learner.lr=1,1"):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)
    with pytest.raises(ConfigError, match="more than once"):
        expand([parse_grid("a.b=1,2"), parse_grid("a.b=3")])
    with pytest.raises(ConfigError, match="at least one --grid"):
        expand([])


def test_run_names_and_argv():
    point = {"learner.lr": 1e-05, "data.train": "demo#sft"}
    assert run_name(point, 3) == "003-lr=1e-05-train=demo_sft"
    argv = job_argv("sft", "c.yaml", "out/003", point, ["learner.epochs=1"])
    assert argv == ["sft", "train", "--output", "out/003", "--config", "c.yaml", "--set", "learner.epochs=1",
                    "--set", "learner.lr=1.0e-05", "--set", 'data.train="demo#sft"']
    from halo_ray.config import parse_override

    assert [parse_override(a) for a in argv[9::2]] == [(["learner", "lr"], 1e-05), (["data", "train"], "demo#sft")]
    with pytest.raises(ConfigError, match="known: sft, raft"):
        job_argv("nope", None, "x", point)


def test_read_metric_from_metrics_then_summaries(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert read_metric(run, "train/loss") is None
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/loss": 0.9}) + "\n"
                                       + json.dumps({"step": 2, "train/loss": 0.4}) + "\n" + '{"step": 3, "tr')
    assert read_metric(run, "train/loss") == 0.4  # last value; a torn last line is skipped
    (run / "summary.json").write_text(json.dumps({"train": {"loss": 0.5}, "stages": [{"pass_at_1": 0.1},
                                                                                     {"pass_at_1": 0.3}]}))
    assert read_metric(run, "train.loss") == 0.5 and read_metric(run, "stages.-1.pass_at_1") == 0.3
    (run / "eval").mkdir()
    (run / "eval" / "summary.json").write_text(json.dumps({"stages": [{}, {"pass_at_k": {"1": 0.25}}]}))
    assert read_metric(run, "stages.1.pass_at_k.1") == 0.25
    with pytest.raises(DataError, match="not a number"):
        read_metric(run, "train")


def test_result_table_and_best():
    points = [{"learner.lr": 0.001}, {"learner.lr": 0.01}, {"learner.lr": 0.1}]
    runs = [{"name": "000", "status": "ok", "metric": 0.5}, {"name": "001", "status": "ok", "metric": 0.2},
            {"name": "002", "status": "failed (exit 2)", "metric": None}]
    header, rows = result_table(points, runs, "train/loss")
    assert header == ["run", "learner.lr", "status", "train/loss"]
    assert rows == [["000", "0.001", "ok", "0.5"], ["001", "0.01", "ok", "0.2"], ["002", "0.1", "failed (exit 2)", "–"]]
    assert best(runs, maximize=False)["name"] == "001" and best(runs, maximize=True)["name"] == "000"
    assert best(runs[2:], maximize=True) is None


SWEEPS = sorted((Path(__file__).resolve().parents[2] / "configs" / "sweeps").glob("*.yaml"))
SWEEP_CONFIGS = {"srl": "srl", "srl-traces": "teacher"}  # sweep job -> JOB_CONFIGS key of its config


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_ready_grid_loads_and_each_point_is_a_valid_config(path):
    from halo_ray.config import load_config
    from halo_ray.sections import JOB_CONFIGS

    ready = load_grid_file(path)
    assert ready["about"] and ready["metric"] and Path(ready["config"]).is_file()
    cls = JOB_CONFIGS[SWEEP_CONFIGS[ready["job"]]]
    for point in expand(ready["grids"]):
        cfg = load_config(cls, ready["config"], ready["set"] + overrides(point))  # strict: a wrong key or type fails
        for key, value in point.items():
            got = cfg
            for part in key.split("."):
                got = getattr(got, part)
            assert got == value, (path.name, key)


def test_the_seed_003_ablations_each_have_a_grid():
    keys = {k for p in SWEEPS for k, _ in load_grid_file(p)["grids"]}
    assert {"objective.grpo.kl_coef", "verifier.srl.action_weight", "verifier.srl.brevity_coef",
            "verifier.srl.malformed_reward", "rollout.temperature"} <= keys


def test_grid_file_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("job: srl\ngird:\n  learner.lr: [1]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'gird'"):
        load_grid_file(bad)
    bad.write_text("job: nope\ngrid:\n  learner.lr: []\n")
    with pytest.raises(ConfigError, match="job: expected one of") as err:
        load_grid_file(bad)
    assert "grid: expected a mapping" in str(err.value)
