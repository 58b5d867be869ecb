"""``ray job submit`` as a cluster user does it: a head from ``ray start --head`` (token auth on, Ray's
default), the tiny RAFT job submitted with ``--working-dir .``, waited on until SUCCEEDED, its run
directory checked where ``$HALO_RAY_HOME`` (default ``~/halo-ray``) puts it, never in Ray's copy.

Twice: with this checkout's editable install, and with the wheel installed into a fresh venv, where
the job must import the wheel's ``halo_ray`` (not the uploaded checkout's).

What keeps it cheap on a small machine: both heads share one HOME (the module's), so what the first
one's jobs build there (the embedded tiny model, DeepSpeed's compiled ops) the second one's find; each
job is one ``ray job submit`` that tails its logs until the job ends, as a user waits on one (no
``ray job status`` processes polling); the editable head's three jobs are submitted at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
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

    def __init__(self, python: str, home: Path, pythonpath: str = ""):
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
        if pythonpath:  # a git worktree of the checkout: its own code, not the one the editable install points at
            head_env["PYTHONPATH"] = pythonpath
        # The client side as cluster/README.md says: RAY_AUTH_MODE=token reads ~/.ray/auth_token.
        self.env = {**head_env, "RAY_AUTH_MODE": "token"}
        self.ray = [python, "-m", "ray.scripts.scripts"]
        # The token Ray's docs have a user generate (~/.ray/auth_token); with it a head starts with token auth on.
        subprocess.run(self.ray + ["get-auth-token", "--generate"], env=head_env, capture_output=True, check=True,
                       timeout=120)
        # 8 logical CPUs: the editable head runs its three jobs at once (RAFT 3, benchmark 2, SFT 1).
        cmd = self.ray + [
            "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={free_port()}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}",
            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            "--num-cpus=8", "--object-store-memory=300000000", f"--temp-dir={self.temp_dir}",
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
        """Until the dashboard answers HTTP (asked in-process: a `ray` CLI process per try costs seconds of
        CPU), then until its job server lists jobs with the token and refuses them without it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ray start exited: {Path(self.log.name).read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=5)
                break
            except urllib.error.HTTPError:  # it answers (401 without the token)
                break
            except OSError:
                time.sleep(1)
        while time.monotonic() < deadline:
            if self.cli("job", "list", "--address", self.dashboard, timeout=60).returncode == 0:
                refused = subprocess.run(self.ray + ["job", "list", "--address", self.dashboard], capture_output=True,
                                         text=True, timeout=60,
                                         env={k: v for k, v in self.env.items() if k != "RAY_AUTH_MODE"})
                assert refused.returncode != 0, "the head must require its token (token auth on, as Ray defaults)"
                return
            time.sleep(2)
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


def submit_tiny(head: Head, *jobs: tuple[str, str]) -> list[str]:
    """Submit ``jobs/<job>.py --config configs/tiny/<job>.yaml --set logging.name=<name>`` for each
    ``(job, name)`` as cluster/README.md says, all at once, each with a ``ray job submit`` that tails the
    job's logs until it ends; returns their outputs (the job's logs, then Ray's verdict), in order."""
    procs = []
    for job, name in jobs:
        job_id = f"tiny-{job}-{name}-{os.getpid()}"
        procs.append((job_id, subprocess.Popen(
            head.ray + ["job", "submit", "--address", head.dashboard, "--submission-id", job_id, "--working-dir", ".",
                        "--runtime-env", "cluster/runtime-env.yaml", "--",
                        "python", f"jobs/{job}.py", "--config", f"configs/tiny/{job}.yaml", "--set", f"logging.name={name}"],
            env=head.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    outs = []
    for job_id, proc in procs:
        try:
            out, _ = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        # `ray job submit` exits 1 when the job FAILED and prints Ray's verdict on the job last.
        assert proc.returncode == 0 and f"Job '{job_id}' succeeded" in out, f"{job_id}:\n{out[-5000:]}"
        outs.append(out)
    return outs


def check_run_directory(logs: str, home: Path, name: str) -> Path:
    run = home / "halo-ray" / "runs" / name  # the default HALO_RAY_HOME is ~/halo-ray
    assert f"run directory {run}" in logs, logs[-3000:]
    for step in (1, 2):  # progress as it happens, with the rate and ETA
        assert re.search(rf"^step {step}/2: .* \[[\d.]+ s/step, ETA \d+ s\]$", logs, re.M), logs[-3000:]
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "step_0002").is_dir()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if "rollout/samples" in m] == [1, 2], "one metrics record per step"
    summary = json.loads(logs[logs.index("{\n"):logs.rindex("}") + 1])
    assert summary["run_dir"] == str(run)
    acc = summary["accounting"]
    assert acc["generated"] >= 2 * 16 * 4  # 2 steps of 16 prompts, 4 samples each (+ replaced stale ones)
    assert acc["generated"] == acc["kept"] + acc["filtered"] + acc["stale"] + acc["failed"]
    return run


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The HOME of both heads: Ray's token, the default HALO_RAY_HOME (``~/halo-ray``) and the caches the
    jobs fill (``~/.cache``: the embedded tiny model, DeepSpeed's compiled ops), built once for both."""
    return tmp_path_factory.mktemp("home")


def test_submit_tiny_raft_from_the_editable_checkout(home):
    import halo_ray

    package = Path(halo_ray.__file__).parent  # the checkout's (a worktree's own when PYTHONPATH names it)
    head = Head(sys.executable, home, os.environ.get("PYTHONPATH", "") if package.parent == ROOT else "")
    try:
        # The other jobs' tiny presets through the same door, beside RAFT.
        logs, sft_logs, bench_logs = submit_tiny(head, ("raft", "editable"), ("sft", "sft-editable"),
                                                 ("benchmark", "unused"))
    finally:
        head.stop()
    check_run_directory(logs, home, "editable")
    assert f"from {ROOT / 'halo_ray'};" in logs  # the editable install's package (the checkout itself)
    sft_run = home / "halo-ray" / "runs" / "sft-editable"
    assert f"run directory {sft_run}" in sft_logs and (sft_run / "final" / "config.json").is_file()
    results = home / "halo-ray" / "tiny-benchmark.json"  # benchmark.output, relative: under HALO_RAY_HOME
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
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a worktree's PYTHONPATH would shadow the wheel
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, env=plain).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    deps = [str(ours)] + [line.strip() for pth in ours.glob("*.pth") for line in pth.read_text().splitlines()
                          if line.strip() and not line.startswith(("import", "#")) and Path(line.strip()).is_dir()]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where = subprocess.run([python, "-c", "import halo_ray.actors.rollout, halo_ray; print(halo_ray.__path__[0])"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120, env=plain)
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.strip() == str(site / "halo_ray"), where.stdout
    return python


def test_submit_tiny_raft_with_the_wheel_installed(home, tmp_path):
    python = wheel_venv(tmp_path, build_wheel(tmp_path))
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    head = Head(python, home)
    try:
        (logs,) = submit_tiny(head, ("raft", "wheel"))
    finally:
        head.stop()
    check_run_directory(logs, home, "wheel")
    # The job ran the wheel's halo_ray, not the checkout Ray uploaded (cluster/runtime-env.yaml leaves it out).
    assert f"from {site}/halo_ray;" in logs, logs[:3000]
