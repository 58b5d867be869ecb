"""The bubblewrap sandbox, host side: one warm worker process per sandbox, spoken to over pipes.

Each ``SandboxWorker`` is ``bwrap`` running ``sandbox_worker.py`` with: no network (own net
namespace), a private pid namespace (so killing "everything" means everything of that sandbox),
the system directories bound read-only, two private tmpfs scratch dirs (``/scratch``, ``/tmp``),
a scrubbed environment, and only CAP_SETUID/CAP_SETGID/CAP_KILL kept. Untrusted programs run in
children that drop to an unprivileged uid of their own (one per worker, claimed host-wide with a
lock file, so RLIMIT_NPROC counts only that sandbox's processes). ``sandbox_worker`` documents
the child's limits and how results are judged.

A worker that fails to start, dies or stops answering raises ``SandboxError``: infrastructure, for
the caller to retry on a fresh worker, never a verdict.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from halo_ray import sandbox_worker
from halo_ray.errors import SandboxError

log = logging.getLogger(__name__)

UID_BASE = 62000  # children run as UID_BASE + slot; no account on a Debian system uses this range
UID_SLOTS = 1000
WORKER_PATH = "/opt/halo-ray/sandbox_worker.py"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def bwrap_path() -> str:
    """The ``bwrap`` executable; raises SandboxError with the fix when it is missing."""
    path = shutil.which("bwrap")
    if not path:
        raise SandboxError("bubblewrap (bwrap) is not installed; the verifier sandbox needs it: apt-get install bubblewrap")
    if os.geteuid() != 0:
        raise SandboxError("the verifier sandbox drops programs to a separate uid and needs to start as root "
                           f"(running as uid {os.geteuid()}); run halo-ray verify as root or inside a container")
    return path


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def bwrap_argv(uid: int, extra_binds: list[str], scratch_mb: int, path: str = SANDBOX_PATH) -> list[str]:
    """The full command line of one sandboxed worker running as child uid ``uid``."""
    args = [bwrap_path(), "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
            "--clearenv", "--setenv", "PATH", path, "--setenv", "HOME", "/scratch",
            "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0",
            *_system_binds()]
    # Scratch tmpfs first: binds that follow may live below /tmp (a venv in a checkout under /tmp)
    # and must stay visible on top of it.
    size = str(scratch_mb << 20)
    for tmp in sandbox_worker.SCRATCH_DIRS:
        args += ["--perms", "1777", "--size", size, "--tmpfs", tmp]
    python_dirs = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    made: set[str] = set(sandbox_worker.SCRATCH_DIRS)
    for d in sorted({*python_dirs, *extra_binds}):
        if d.startswith(("/usr/", "/etc/")) or not os.path.exists(d):
            continue
        for parent in reversed(Path(d).parents[:-1]):  # e.g. /root is 0700 on the host: open it
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", d, d]
    args += ["--ro-bind", sandbox_worker.__file__, WORKER_PATH, "--dev", "/dev", "--proc", "/proc"]
    args += ["--chdir", "/scratch", "--cap-drop", "ALL"]
    for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_KILL"):
        args += ["--cap-add", cap]
    return args + ["--", sys.executable, "-I", "-B", WORKER_PATH, str(uid)]


# bwrap's --die-with-parent follows the *thread* that forked it: a sandbox started from a short-lived
# thread would be killed when that thread ends. Every sandbox is forked from this one lasting thread.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="halo-ray-sandbox-spawner")


def _claim_uid() -> tuple[int, object]:
    """Claim an unused child uid host-wide (a held flock); returns the uid and the lock's file."""
    folder = Path(tempfile.gettempdir()) / "halo-ray-sandbox-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    for uid in range(UID_BASE, UID_BASE + UID_SLOTS):
        fh = open(folder / f"{uid}.lock", "a")  # noqa: SIM115 - held for the worker's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fh
        except BlockingIOError:
            fh.close()
    raise SandboxError(f"all {UID_SLOTS} sandbox uids from {UID_BASE} are in use")


class SandboxWorker:
    """One warm sandbox: a bwrap'd worker that runs check requests one at a time.

    Args:
        extra_binds: host directories to bind read-only at the same path (toolchains).
        scratch_mb: size of each private tmpfs (``/scratch``, ``/tmp``).
        start_timeout_s: how long the worker may take to report ready.
    """

    def __init__(self, extra_binds: list[str] = (), scratch_mb: int = 256, start_timeout_s: float = 30.0):
        self.uid, self._lock = _claim_uid()
        argv = bwrap_argv(self.uid, list(extra_binds), scratch_mb)
        self.proc = _SPAWNER.submit(subprocess.Popen, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=_HOST_ENV, close_fds=True,
                                    start_new_session=True).result()
        hello = self._recv(time.monotonic() + start_timeout_s)
        if not hello or not hello.get("ready"):
            why = (hello or {}).get("error") or self._stderr() or "no answer"
            self.close()
            raise SandboxError(f"sandbox worker failed to start: {why}")

    def run(self, request: dict, budget_s: float) -> dict:
        """Send one check request; return the worker's raw result.

        Raises SandboxError when the worker dies, answers garbage or takes longer than ``budget_s``
        (the worker is then killed; make a new one).
        """
        try:
            sandbox_worker.send(self.proc.stdin.fileno(), request)
        except (BrokenPipeError, OSError) as exc:
            self.close()
            raise SandboxError(f"sandbox worker is gone ({exc}); {self._stderr()}") from None
        result = self._recv(time.monotonic() + budget_s)
        if result is None:
            alive = self.proc.poll() is None
            self.close()
            raise SandboxError("sandbox worker " + (f"gave no answer within {budget_s:.0f}s" if alive else
                                                   f"died ({self._stderr() or 'no message'})"))
        if "error" in result:
            raise SandboxError(f"sandbox worker failed: {result['error']}")
        return result

    def _recv(self, deadline: float) -> dict | None:
        return sandbox_worker.recv(self.proc.stdout.fileno(), deadline)

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        try:
            return self.proc.stderr.read(4096).decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Kill the sandbox (its pid namespace dies with bwrap) and release the uid."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        if self._lock is not None:
            self._lock.close()
            self._lock = None
