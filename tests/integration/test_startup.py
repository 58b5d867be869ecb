"""Start-up that cannot be confused: a stale Ray address file, Ray's own errors, SIGTERM (real Ray, real CLI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from halo_ray.verifiers.verdicts import JUDGED

HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))


@pytest.fixture
def ray_tmpdir():
    """A short, private RAY_TMPDIR (Ray's socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="halo-startup-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _env(tmpdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return dict(env, RAY_TMPDIR=str(tmpdir))


def _session_processes(tmpdir: Path) -> list[str]:
    """Command lines of live processes that belong to a Ray session under ``tmpdir``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"{tmpdir}/" in cmd or cmd.rstrip().endswith(str(tmpdir)):
            out.append(f"{proc.name}: {cmd[:160]}")
    return out


@pytest.mark.slow
def test_stale_address_file_does_not_break_generate(tiny_model, tmp_path, ray_tmpdir):
    # What an earlier, killed `ray start` leaves behind: an address file with no Ray alive.
    (ray_tmpdir / "ray").mkdir()
    (ray_tmpdir / "ray" / "ray_current_cluster").write_text("127.0.0.1:6390\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "def f(x):\n"}) + "\n")
    out = tmp_path / "samples.jsonl"
    done = subprocess.run([HALO_RAY, "--log-level", "INFO", "generate", "--model", tiny_model, "--prompts",
                           str(prompts), "--output", str(out), "--n", "2", "--max-new-tokens", "8"],
                          env=_env(ray_tmpdir), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "num_cpus and num_gpus must not be provided" not in done.stderr
    assert len(out.read_text().splitlines()) == 2
    # progress outside a terminal: log lines for the engine load and the sampled prompts
    assert "loading 1 rollout engine(s): done in" in done.stderr
    assert "sampled 1/1 prompts (100%" in done.stderr
    assert "(RolloutActor pid=" in done.stderr  # the engine's own log reaches the terminal at INFO
    # the session's log folder is named at INFO, and it is this session's (under RAY_TMPDIR)
    assert f"Ray session logs: {ray_tmpdir}" in done.stderr
    time.sleep(2)
    assert _session_processes(ray_tmpdir) == []


@pytest.mark.slow
def test_sigterm_stops_the_session(tiny_model, tmp_path, ray_tmpdir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": "def f(x):\n"}) + "\n" for i in range(50)))
    proc = subprocess.Popen([HALO_RAY, "--log-level", "INFO", "generate", "--model", tiny_model, "--prompts",
                             str(prompts), "--output", str(tmp_path / "out.jsonl"), "--n", "64"],
                            env=_env(ray_tmpdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:  # wait until the session is up
            lines.append(line)
            if "Ray session logs:" in line:
                break
        assert _session_processes(ray_tmpdir), "no Ray session under RAY_TMPDIR"
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, "".join(lines)[-2000:] + rest[-2000:]
    assert "received SIGTERM" in rest
    deadline = time.time() + 30
    while _session_processes(ray_tmpdir) and time.time() < deadline:
        time.sleep(1)
    assert _session_processes(ray_tmpdir) == []


def test_unreachable_address_is_one_line_with_the_fix(tmp_path, ray_tmpdir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "x"}) + "\n")
    env = dict(_env(ray_tmpdir), RAY_ADDRESS="127.0.0.1:1")
    done = subprocess.run([HALO_RAY, "generate", "--prompts", str(prompts), "--output", str(tmp_path / "o.jsonl")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("halo-ray generate: error:")]
    assert len(error) == 1 and "RAY_ADDRESS" in error[0] and "127.0.0.1:1" in error[0], done.stderr[-2000:]


@pytest.mark.slow
def test_generate_on_a_spec_feeds_verify_directly(ray_session, tiny_model, tmp_path):
    """`generate --prompts demo#heldout` writes sample records that `verify` takes as they are (Parquet out)."""
    from halo_ray import cli

    problems = tmp_path / "two.jsonl"
    assert cli.main(["data", "prepare", "--dataset", "demo#heldout", "--output", str(problems)]) == 0
    problems.write_text("".join(problems.read_text().splitlines(keepends=True)[:2]))
    samples = tmp_path / "samples.parquet"
    assert cli.main(["generate", "--model", tiny_model, "--prompts", f"{problems}#all", "--output", str(samples),
                     "--n", "2", "--max-new-tokens", "16"]) == 0
    assert cli.main(["data", "validate", str(samples)]) == 0
    results = tmp_path / "results.parquet"
    assert cli.main(["verify", "--input", str(samples), "--output", str(results)]) == 0
    import pyarrow.parquet as pq

    rows = pq.read_table(results).to_pylist()
    assert len(rows) == 4 and {r["sample_index"] for r in rows} == {0, 1}
    assert all(r["verdict"] in JUDGED for r in rows)
    # the problem's tests travelled with the samples: a test-less record would only compile and run
    assert all(pq.read_table(samples).column("tests").to_pylist())


def test_driver_names_a_missing_prompt_id_before_any_actor():
    from halo_ray import driver
    from halo_ray.errors import DataError
    from halo_ray.sections import GenerateConfig

    with pytest.raises(DataError, match=r"prompts\[0\]: needs a string 'prompt_id' \(a problem's 'id' goes in 'prompt_id'\)"):
        driver.generate(GenerateConfig(), [{"id": "a", "prompt": "x"}])


def test_errors_from_ray_mid_run_are_one_line(monkeypatch, capsys):
    """A Ray error after start-up (an actor died, a timeout) is one line with where to look; DEBUG keeps the traceback."""
    import ray.exceptions

    from halo_ray import cli
    from halo_ray.cli import verify

    def boom(args):
        raise ray.exceptions.GetTimeoutError("Get timed out: some object(s) not ready.\nlast words")

    monkeypatch.setattr(verify, "run", boom)
    assert cli.main(["verify", "--input", "x.jsonl", "--output", "y.jsonl"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["halo-ray verify: error: Ray: GetTimeoutError: last words (actor output: --log-level INFO; "
                   "full traceback: --log-level DEBUG)"]
    with pytest.raises(ray.exceptions.GetTimeoutError):
        cli.main(["--log-level", "DEBUG", "verify", "--input", "x.jsonl", "--output", "y.jsonl"])


def _kill(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


@pytest.mark.slow
def test_a_ray_start_head_is_not_joined_by_accident(tiny_model, tmp_path, ray_tmpdir):
    started = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--num-cpus", "1", "--include-dashboard=false",
                              "--disable-usage-stats"], env=_env(ray_tmpdir), capture_output=True, text=True,
                             timeout=180)
    head = [int(line.split(":")[0]) for line in _session_processes(ray_tmpdir)]
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        assert (ray_tmpdir / "ray" / "ray_current_cluster").is_file()
        prompts = tmp_path / "prompts.jsonl"
        prompts.write_text(json.dumps({"id": "a", "prompt": "def f(x):\n"}) + "\n")
        done = subprocess.run([HALO_RAY, "--log-level", "INFO", "generate", "--model", tiny_model, "--prompts",
                               str(prompts), "--output", str(tmp_path / "o.jsonl"), "--n", "1", "--max-new-tokens",
                               "4"], env=_env(ray_tmpdir), capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Started a local Ray instance" in done.stderr and "Connecting to existing Ray cluster" not in done.stderr
    finally:
        _kill(head + [int(line.split(":")[0]) for line in _session_processes(ray_tmpdir)])
