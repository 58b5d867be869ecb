"""``logging.report_to``: every metric RunLog receives reaches TensorBoard, W&B and MLflow with its step,
read back through each library's own files (W&B offline, MLflow's file store, no network); unknown
names, the replaced ``tensorboard`` key and missing libraries are one clear error at start-up; a
reporter failing mid-run does not stop the run.
"""

from __future__ import annotations

import builtins
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from halo_ray.config import from_dict, load_config
from halo_ray.errors import ConfigError
from halo_ray.reporters import REPORTERS, wandb_mode
from halo_ray.runlog import RunLog, read_metrics
from halo_ray.sections import LoggingConfig, RaftJobConfig, RolloutConfig

STEPS = {1: 2.5, 2: 1.75, 3: 1.125}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline with every folder of its own under tmp_path; MLflow on its default file store."""
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home" / key.lower()))
    return tmp_path


def wandb_records(run_dir: Path) -> list:
    """The records of the run's offline ``.wandb`` files (oldest first), parsed with W&B's own protobuf schema.

    The file is a LevelDB log behind a 7-byte ``:W&B`` header: 32 KiB blocks of chunks, each with a
    7-byte header (crc32c, little-endian length, type: 1 full, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    records = []
    for path in sorted(run_dir.glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.parent.name):
        data = path.read_bytes()
        assert data[:4] == b":W&B", path
        pos, chunk = 7, b""
        while pos + 7 <= len(data):
            room = 32768 - pos % 32768
            if room < 7:
                pos += room
                continue
            length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
            chunk += data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):
                record = pb.Record()
                record.ParseFromString(chunk)
                records.append(record)
                chunk = b""
        assert pos == len(data), f"{path}: {len(data) - pos} bytes left unread"
    return records


def wandb_history(records) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            out.setdefault(r.history.step.num, {}).update(items)
    return out


def test_every_metric_reaches_each_library_with_its_step(offline, caplog):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = offline / "runs" / "r1"
    config = RaftJobConfig(rollout=RolloutConfig(temperature=0.9),
                           logging=LoggingConfig(report_to=("tensorboard", "wandb", "mlflow"), project="halo-test"))
    run = RunLog(run_dir, config)
    for step, loss in STEPS.items():
        run.log(step, {"train/loss": loss, "train/tokens": 100 * step, "stream/ok": True, "note": "text"},
                stage=f"step_{step}")
    run.close()
    assert [r["train/loss"] for r in read_metrics(run_dir)] == list(STEPS.values())

    tb = EventAccumulator(str(run_dir / "tensorboard"))
    tb.Reload()
    assert [(e.step, e.value) for e in tb.Scalars("train/loss")] == list(STEPS.items())
    assert [(e.step, e.value) for e in tb.Scalars("train/tokens")] == [(s, 100.0 * s) for s in STEPS]
    assert "stream/ok" not in tb.Tags()["scalars"] and "note" not in tb.Tags()["scalars"]

    tracking = json.loads((run_dir / "tracking.json").read_text())
    records = wandb_records(run_dir)
    (start,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (start.run_id, start.display_name, start.project) == (tracking["wandb"]["id"], "r1", "halo-test")
    wb_config = {i.key: json.loads(i.value_json) for i in start.config.update}
    assert wb_config["rollout"]["temperature"] == 0.9 and wb_config["logging"]["project"] == "halo-test"
    history = wandb_history(records)
    assert sorted(history) == list(STEPS)
    assert {s: history[s]["train/loss"] for s in STEPS} == STEPS
    assert {s: history[s]["train/tokens"] for s in STEPS} == {s: 100 * s for s in STEPS}
    assert any(r.WhichOneof("record_type") == "exit" for r in records)  # close() finished the run

    uri = tracking["mlflow"]["tracking_uri"]
    assert uri == (offline / "runs" / "mlruns").resolve().as_uri()  # the default store beside the runs
    client = MlflowClient(uri)
    run_id = tracking["mlflow"]["run_id"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")] == list(STEPS.items())
    got = client.get_run(run_id)
    assert got.info.run_name == "r1" and got.info.status == "FINISHED"
    assert got.data.params["rollout.temperature"] == "0.9" and got.data.params["logging.project"] == "halo-test"
    assert client.get_experiment(got.info.experiment_id).name == "halo-test"
    assert [f.path for f in client.list_artifacts(run_id)] == ["config.yaml"]

    # A resumed run continues the same W&B and MLflow runs.
    run = RunLog(run_dir, config)
    run.log(4, {"train/loss": 0.5})
    run.close()
    assert json.loads((run_dir / "tracking.json").read_text()) == tracking
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")][-1] == (4, 0.5)
    records = wandb_records(run_dir)
    assert {r.run.run_id for r in records if r.WhichOneof("record_type") == "run"} == {tracking["wandb"]["id"]}
    assert wandb_history(records)[4]["train/loss"] == 0.5
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "report_to" in r.getMessage()]


def test_a_run_continued_from_a_checkpoint_holds_each_step_once(tmp_path):
    """Steps 1-3 logged, then a restart from the checkpoint of step 1 redoes steps 2 and 3: metrics.jsonl,
    samples/, eval/ and TensorBoard (purge_step) hold each step once, with the redone values."""
    import pyarrow as pa
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "r1"
    config = RaftJobConfig(logging=LoggingConfig(report_to=("tensorboard",)))
    run = RunLog(run_dir, config)
    run.log(0, {"eval/pass_at_1": 0.25})
    for step, loss in STEPS.items():
        run.log(step, {"train/loss": loss})
        run.samples(f"step_{step:04d}", pa.table({"step": [step]}))
        (run_dir / "eval").mkdir(exist_ok=True)
        (run_dir / "eval" / f"step_{step:04d}.json").write_text("{}")
    run.close()
    with (run_dir / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 4, "train/lo')  # the killed start's torn last line

    run = RunLog(run_dir, config, first_step=2)
    assert [r["step"] for r in read_metrics(run_dir)] == [0, 1]
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_0001.parquet"]
    assert sorted(p.name for p in (run_dir / "eval").iterdir()) == ["step_0001.json"]
    for step in (2, 3):
        run.log(step, {"train/loss": -step})
    run.close()
    assert [(r["step"], r.get("train/loss")) for r in read_metrics(run_dir)] == [(0, None), (1, 2.5), (2, -2), (3, -3)]
    tb = EventAccumulator(str(run_dir / "tensorboard"))
    tb.Reload()
    assert [(e.step, e.value) for e in tb.Scalars("train/loss")] == [(1, 2.5), (2, -2.0), (3, -3.0)]

    RunLog(run_dir, config, first_step=0).close()  # a resume that found no checkpoint starts from scratch
    assert read_metrics(run_dir) == [] and not list((run_dir / "samples").iterdir())


def test_unknown_name_and_duplicates_name_the_key():
    with pytest.raises(ConfigError, match=r"logging\.report_to: 'wandbb' is not one of tensorboard, wandb, "
                                          r"mlflow; did you mean 'wandb'\?"):
        load_config(RaftJobConfig, overrides=["logging.report_to=[tensorboard,wandbb]"])
    with pytest.raises(ConfigError, match=r"logging: report_to lists 'mlflow' twice"):
        from_dict(RaftJobConfig, {"logging": {"report_to": ["mlflow", "mlflow"]}})
    assert from_dict(RaftJobConfig, {"logging": {"report_to": []}}).logging.report_to == ()
    assert from_dict(RaftJobConfig, {"logging": {"report_to": "mlflow"}}).logging.report_to == ("mlflow",)
    assert RaftJobConfig().logging.report_to == ("tensorboard",) and REPORTERS.names() == ["tensorboard", "wandb", "mlflow"]


def test_the_replaced_tensorboard_key_says_what_to_write():
    with pytest.raises(ConfigError) as err:
        from_dict(RaftJobConfig, {"logging": {"tensorboard": False}}, source="old.yaml")
    assert str(err.value) == ("old.yaml: logging.tensorboard: replaced by report_to beside it, a list of tensorboard, "
                              "wandb, mlflow (default [tensorboard]): 'tensorboard: false' is 'report_to: []'; "
                              "for 'true' delete the line")


def test_a_missing_library_is_one_error_at_start_up(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError) as err:  # config check and load_config catch it, importing nothing
        load_config(RaftJobConfig, overrides=["logging.report_to=[tensorboard,wandb]"])
    assert str(err.value) == ("--set logging.report_to=[tensorboard,wandb]: logging: report_to lists wandb, but the "
                              "wandb library is not installed: pip install 'halo-ray[tracking]' (or pip install wandb)")

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):  # as if mlflow were not installed, whatever an earlier test imported
        if name.split(".")[0] == "mlflow":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    config = RaftJobConfig(logging=LoggingConfig(report_to=("tensorboard", "mlflow")))  # the driver API, unvalidated
    with pytest.raises(ConfigError, match=r"^logging\.report_to: mlflow needs the mlflow library \(.*\): pip install "
                                          r"'halo-ray\[tracking\]' \(or pip install mlflow-skinny\), or remove mlflow"):
        RunLog(tmp_path / "r1", config)
    assert not (tmp_path / "r1" / "metrics.jsonl").exists()  # refused before the run logged anything


def test_a_run_the_library_cannot_start_is_one_error_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(ConfigError, match=r"^logging\.report_to: mlflow could not start a run: .*Check "
                                          r"MLFLOW_TRACKING_URI and that its server is reachable\.$"):
        RunLog(tmp_path / "r1", RaftJobConfig(logging=LoggingConfig(report_to=("tensorboard", "mlflow"))))


def test_a_reporter_failing_mid_run_warns_once_and_the_run_goes_on(offline, caplog):
    run_dir = offline / "runs" / "r1"
    run = RunLog(run_dir, RaftJobConfig(logging=LoggingConfig(report_to=("tensorboard", "mlflow"))))
    run.log(1, {"train/loss": 1.0})
    shutil.rmtree(offline / "runs" / "mlruns")  # the tracking store goes away mid-run
    with caplog.at_level(logging.WARNING, logger="halo_ray.runlog"):
        for step in (2, 3, 4):
            run.log(step, {"train/loss": 1.0 / step})
        warned = [r.getMessage() for r in caplog.records]
        run.close()
    assert len(warned) == 1 and warned[0].startswith("logging.report_to: mlflow failed (")
    assert "mlflow failed 4 time(s)" in caplog.records[-1].getMessage()  # 3 logs and the final set_terminated
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(run_dir / "tensorboard"))
    tb.Reload()
    assert [e.step for e in tb.Scalars("train/loss")] == [1, 2, 3, 4]  # the other reporter kept going


def test_the_cli_and_config_checks_import_no_tracking_library():
    code = ("import sys, halo_ray.cli, halo_ray.runlog\n"
            "from halo_ray.config import load_config\n"
            "from halo_ray.sections import RaftJobConfig\n"
            "load_config(RaftJobConfig, overrides=['logging.report_to=[tensorboard,wandb,mlflow]'])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'wandb', 'mlflow', 'tensorboard', 'torch'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_wandb_mode_auto_is_online_only_with_credentials(tmp_path, monkeypatch):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode("auto") == "offline"  # no key, no netrc file
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password k" + "0" * 39 + "\n")
    assert wandb_mode("auto") == "online"  # `wandb login` was run
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert wandb_mode("auto") == "offline"  # logged in elsewhere, not on this host
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto") == "offline"  # the user's WANDB_MODE wins
    assert wandb_mode("online") == "online"  # and an explicit logging.wandb_mode wins over everything
