"""``ray job submit`` as a cluster user does it: a head from ``ray start --head`` (token auth on, Ray's
default), the tiny RAFT job submitted with ``--working-dir .``, waited on until SUCCEEDED, its run
directory checked where ``$HALO_RAY_HOME`` (default ``~/halo-ray``) puts it, never in Ray's copy.

Twice: with this checkout's editable install, and with the wheel installed into a fresh venv, where
the job must import the wheel's ``halo_ray`` (not the uploaded checkout's).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Head:
    """``ray start --head --block`` in its own process group, on 127.0.0.1, with its own temp dir."""

    def __init__(self, python: str, home: Path):
        # Unix socket paths must stay under 107 characters: a short temp dir, not pytest's.
        self.temp_dir = tempfile.mkdtemp(prefix="hr-", dir="/tmp")
        self.dashboard = f"http://127.0.0.1:{free_port()}"
        bindir = str(Path(python).parent)
        # The entrypoint's `python` is the one on the head's PATH; HOME holds Ray's auth token and the
        # default HALO_RAY_HOME, so the test touches nothing of the user's.
        head_env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(home),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        for var in ("RAY_ADDRESS", "HALO_RAY_HOME", "PYTHONPATH", "VIRTUAL_ENV", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                    "RAY_AUTH_TOKEN_PATH"):
            head_env.pop(var, None)  # the head as Ray defaults it: token auth on, a token generated in ~/.ray
        # The client side as cluster/README.md says: RAY_AUTH_MODE=token reads ~/.ray/auth_token.
        self.env = {**head_env, "RAY_AUTH_MODE": "token"}
        self.ray = [python, "-m", "ray.scripts.scripts"]
        # The token Ray's docs have a user generate (~/.ray/auth_token); with it a head starts with token auth on.
        subprocess.run(self.ray + ["get-auth-token", "--generate"], env=head_env, capture_output=True, check=True,
                       timeout=120)
        cmd = self.ray + [
            "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={free_port()}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}",
            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            "--num-cpus=4", "--object-store-memory=300000000", f"--temp-dir={self.temp_dir}",
            "--include-dashboard=true", "--disable-usage-stats"]
        self.log = open(Path(self.temp_dir) / "head.log", "w")
        self.proc = subprocess.Popen(cmd, env=head_env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.ray + list(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ray start exited: {Path(self.log.name).read_text()[-3000:]}"
            if self.cli("job", "list", "--address", self.dashboard, timeout=60).returncode == 0:
                return
            time.sleep(3)
        raise AssertionError(f"the head's job server did not answer: {Path(self.log.name).read_text()[-3000:]}")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def submit_tiny_raft(head: Head, name: str) -> str:
    """Submit the tiny RAFT job as the README says, wait for it; returns its logs."""
    return submit_tiny(head, "raft", name)


def submit_tiny(head: Head, job: str, name: str) -> str:
    """Submit ``jobs/<job>.py --config configs/tiny/<job>.yaml`` as cluster/README.md says, wait for it;
    returns its logs."""
    job_id = f"tiny-{job}-{name}-{os.getpid()}"
    refused = subprocess.run(head.ray + ["job", "list", "--address", head.dashboard], capture_output=True, text=True,
                             env={k: v for k, v in head.env.items() if k != "RAY_AUTH_MODE"}, timeout=60)
    assert refused.returncode != 0, "the head must require its token (token auth on, as Ray defaults)"
    done = head.cli("job", "submit", "--address", head.dashboard, "--submission-id", job_id, "--working-dir", ".",
                    "--runtime-env", "cluster/runtime-env.yaml", "--no-wait", "--",
                    "python", f"jobs/{job}.py", "--config", f"configs/tiny/{job}.yaml", "--set", f"logging.name={name}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    deadline, status = time.monotonic() + 600, ""
    while time.monotonic() < deadline:
        out = head.cli("job", "status", "--address", head.dashboard, job_id)
        text = (out.stdout + out.stderr).lower()  # "Job 'ID' succeeded" (or failed, stopped)
        status = next((s for s in ("succeeded", "failed", "stopped") if f"' {s}" in text), "")
        if status:
            break
        time.sleep(5)
    logs = head.cli("job", "logs", "--address", head.dashboard, job_id).stdout
    assert status == "succeeded", f"job ended {status or 'not at all'}:\n{logs[-5000:]}"
    return logs


def check_run_directory(logs: str, home: Path, name: str) -> Path:
    run = home / "halo-ray" / "runs" / name  # the default HALO_RAY_HOME is ~/halo-ray
    assert f"run directory {run}" in logs, logs[-3000:]
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "step_0002").is_dir()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if "rollout/samples" in m] == [1, 2], "one metrics record per step"
    summary = json.loads(logs[logs.index("{\n"):logs.rindex("}") + 1])
    assert summary["run_dir"] == str(run)
    acc = summary["accounting"]
    assert acc["generated"] >= 2 * 16 * 4  # 2 steps of 16 prompts, 4 samples each (+ replaced stale ones)
    assert acc["generated"] == acc["kept"] + acc["filtered"] + acc["stale"] + acc["failed"]
    return run


def test_submit_tiny_raft_from_the_editable_checkout(tmp_path):
    head = Head(sys.executable, tmp_path)
    try:
        logs = submit_tiny_raft(head, "editable")
        # The other jobs' tiny presets through the same door.
        sft_logs = submit_tiny(head, "sft", "sft-editable")
        bench_logs = submit_tiny(head, "benchmark", "unused")
    finally:
        head.stop()
    check_run_directory(logs, tmp_path, "editable")
    assert f"from {ROOT / 'halo_ray'};" in logs  # the editable install's package (the checkout itself)
    sft_run = tmp_path / "halo-ray" / "runs" / "sft-editable"
    assert f"run directory {sft_run}" in sft_logs and (sft_run / "final" / "config.json").is_file()
    results = tmp_path / "halo-ray" / "tiny-benchmark.json"  # benchmark.output, relative: under HALO_RAY_HOME
    assert f"results {results}" in bench_logs
    assert json.loads(results.read_text())["problems"] == 16


def build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"  # build from a copy: setuptools leaves build/ in the source tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache"))
    # pyproject.toml needs setuptools>=77; a venv's own older setuptools may shadow a newer one further
    # down sys.path (a .pth to shared site-packages): build with the newest one found first.
    from importlib.metadata import distributions

    newest = max((d for d in distributions() if (d.metadata["Name"] or "").lower() == "setuptools"),
                 key=lambda d: tuple(int(x) for x in d.version.split(".")[:2]))
    env = {**os.environ, "PYTHONPATH": str(Path(newest.locate_file("")))}
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("halo_ray-*.whl")
    return wheel


def wheel_venv(tmp_path: Path, wheel: Path) -> str:
    """A fresh venv with the wheel installed; its other dependencies come from this environment's
    site-packages through a .pth line (which adds the folder without running its .pth files, so the
    editable install's import hook stays out)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    deps = [str(ours)] + [line.strip() for pth in ours.glob("*.pth") for line in pth.read_text().splitlines()
                          if line.strip() and not line.startswith(("import", "#")) and Path(line.strip()).is_dir()]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where = subprocess.run([python, "-c", "import halo_ray.actors.rollout, halo_ray; print(halo_ray.__path__[0])"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.strip() == str(site / "halo_ray"), where.stdout
    return python


def test_submit_tiny_raft_with_the_wheel_installed(tmp_path):
    python = wheel_venv(tmp_path, build_wheel(tmp_path))
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    head = Head(python, tmp_path)
    try:
        logs = submit_tiny_raft(head, "wheel")
    finally:
        head.stop()
    check_run_directory(logs, tmp_path, "wheel")
    # The job ran the wheel's halo_ray, not the checkout Ray uploaded (cluster/runtime-env.yaml leaves it out).
    assert f"from {site}/halo_ray;" in logs, logs[:3000]
