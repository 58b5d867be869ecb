"""The sandbox as an ordinary user (Ray's images run as uid 1000): the hostile suites run again as a
user created for the test, through bubblewrap's user namespaces.

The interpreter of this checkout may live below ``/root`` (mode 0700): the test grants others the
traverse bit on the folders above it (and the list bit on a checkout others cannot list) for the run and
restores their modes afterwards.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from halo_ray.errors import SandboxError

USER = "halo-sbx-test"
ROOT = Path(__file__).resolve().parents[2]
SUITES = ["tests/unit/test_integrity.py", "tests/unit/test_sandbox_hostile.py"]


def _folders_to_open() -> dict[Path, int]:
    """The mode bits others lack: traverse on every folder above the interpreter, the checkout and the import
    path; list on the checkout itself (a clone into ``mktemp -d`` is mode 0700), where pytest starts."""
    paths = {Path(sys.executable), Path(os.path.realpath(sys.executable)), ROOT,
             *(Path(p) for p in sys.path if p.startswith("/") and os.path.isdir(p))}
    closed: dict[Path, int] = {}
    for path in paths:
        for parent in [path, *path.parents]:
            if parent.is_dir() and not parent.stat().st_mode & stat.S_IXOTH:
                closed[parent] = stat.S_IXOTH
    if not ROOT.stat().st_mode & stat.S_IROTH:
        closed[ROOT] = closed.get(ROOT, 0) | stat.S_IROTH
    return closed


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="creates a user; this run is already the ordinary-user run")
@pytest.mark.skipif(not (shutil.which("bwrap") and shutil.which("useradd") and shutil.which("runuser")),
                    reason="needs bubblewrap, useradd and runuser")
def test_hostile_suites_pass_as_an_ordinary_user():
    if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
    bits = _folders_to_open()
    opened = {p: p.stat().st_mode for p in bits}
    try:
        for path, mode in opened.items():
            os.chmod(path, stat.S_IMODE(mode) | bits[path])
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(["runuser", "-u", USER, "--", "env", *(f"{k}={v}" for k, v in env.items()),
                               sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                               "-W", "ignore::pytest.PytestUnraisableExceptionWarning", *SUITES],
                              cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        for path, mode in opened.items():
            os.chmod(path, stat.S_IMODE(mode))
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail, tail


def test_forbidden_user_namespaces_are_explained(tmp_path, monkeypatch):
    import halo_ray.sandbox as sandbox

    fake = tmp_path / "bwrap"  # what bubblewrap prints where the kernel forbids user namespaces
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace, likely because the kernel "
                    "does not allow non-privileged user namespaces' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: str(fake) if name == "bwrap" else shutil.which(name))
    monkeypatch.setattr(sandbox, "rootless", lambda: True)
    with pytest.raises(SandboxError, match="user namespaces") as err:
        sandbox.SandboxWorker([], 16, start_timeout_s=10.0)
    assert "run the verifier as root" in str(err.value)
