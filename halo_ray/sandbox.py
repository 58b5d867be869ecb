"""The bubblewrap sandbox, host side: one warm worker process per sandbox, spoken to over pipes.

Each ``SandboxWorker`` is ``bwrap`` running ``sandbox_worker.py`` (a zygote and its judge; see that
module for the judge, the call boundary and the cleaning) with: no network (own net namespace), a
private pid namespace, the system directories bound read-only (of ``/etc`` only the files that
toolchains need: the dynamic loader's cache and config, ``alternatives``), private tmpfs scratch
dirs (``/scratch``, ``/tmp``) and a judge-only ``/judge``, a scrubbed environment.

Two modes. As root: the worker keeps CAP_SETUID/SETGID/KILL/DAC_OVERRIDE/FOWNER (to drop children to
an unprivileged uid of its own, one per worker claimed host-wide with a lock file, and to clean
whatever they leave); children have no capabilities. As an ordinary user (Ray's images, uid 1000):
``bwrap --unshare-user`` with no capabilities at all; children share the worker's uid inside the
user namespace, so the judge and zygote make themselves undumpable (no ptrace, no /proc fd or
memory access); a child can still signal them, which ends its own check as a RUNTIME_ERROR and
replaces the worker, never as a success. Where user namespaces are forbidden, ``SandboxError`` says
so.

Whole-check limits: where this process may create cgroups (v1 memory+pids, or v2 with both
controllers), each worker gets two cgroups nested under this process's own (``run``: memory_mb and
max_processes for the check as a whole; ``compile``: the compile limits); children join them
through an fd of ``cgroup.procs`` and never see the cgroup filesystem. Processes are never moved out
of this process's cgroup. Without one, the judge's watchdog polices memory and process count
(weaker: see ``sandbox_worker``).

A worker that fails to start, or is found dead before a request is delivered, raises
``SandboxError``: infrastructure, for the caller to retry on a fresh worker. Once a request has been
delivered, anything that goes wrong (death, silence, garbage) is that check's RUNTIME_ERROR, and the
worker is replaced; the request is never retried.
"""

from __future__ import annotations

import fcntl
import json
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
# The only /etc entries a sandbox sees: what the dynamic loader and the toolchains' driver symlinks need,
# and the JDK's configuration (its conf/ files are links into /etc/java-N-openjdk; without them java
# and javac fail to start).
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives")
ETC_GLOBS = ("/etc/java-*-openjdk",)
START_TIMEOUT_S = 30.0
CLEAN_GRACE_S = sandbox_worker.CLEAN_BUDGET_S + 5.0
_USERNS_HELP = ("the verifier sandbox runs as an ordinary user through user namespaces (bwrap --unshare-user), "
                "which this kernel or container forbids: {why}. Allow them (sysctl user.max_user_namespaces > 0, "
                "kernel.apparmor_restrict_unprivileged_userns=0, or docker/podman with --security-opt "
                "seccomp=unconfined), or run the verifier as root")


def rootless() -> bool:
    """Whether sandboxes start as an ordinary user (user namespaces) rather than as root."""
    return os.geteuid() != 0


def bwrap_path() -> str:
    """The ``bwrap`` executable; raises SandboxError with the fix when it is missing."""
    path = shutil.which("bwrap")
    if not path:
        raise SandboxError("bubblewrap (bwrap) is not installed; the verifier sandbox needs it: apt-get install bubblewrap")
    return path


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--perms", "0755", "--dir", "/etc"]
    import glob

    for path in ETC_FILES + tuple(p for pattern in ETC_GLOBS for p in sorted(glob.glob(pattern))):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def bwrap_argv(uid: int | None, extra_binds: list[str], scratch_mb: int, path: str = SANDBOX_PATH,
               config: dict | None = None) -> list[str]:
    """The full command line of one sandboxed worker; ``uid`` None runs rootless (user namespace)."""
    # --as-pid-1: the zygote is the namespace's init, and no bwrap process inside holds the host
    # channel (as an ordinary user a program could otherwise open bwrap's fds through /proc).
    args = [bwrap_path(), "--die-with-parent", "--new-session", "--unshare-pid", "--as-pid-1", "--unshare-net",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
            "--clearenv", "--setenv", "PATH", path, "--setenv", "HOME", "/scratch",
            "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0"]
    if uid is None:
        args += ["--unshare-user"]
    args += _system_binds()
    # Scratch tmpfs first: binds that follow may live below /tmp (a venv in a checkout under /tmp)
    # and must stay visible on top of it.
    size = str(scratch_mb << 20)
    for tmp in sandbox_worker.SCRATCH_DIRS:
        args += ["--perms", "1777", "--size", size, "--tmpfs", tmp]
    args += ["--perms", "0700", "--size", str(64 << 20), "--tmpfs", "/judge"]
    # The interpreter and the import path (the judge imports pytest; .pth files may point elsewhere).
    python_dirs = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
                   *(p for p in sys.path if p.startswith("/") and os.path.isdir(p) and "site-packages" in p)}
    made: set[str] = set(sandbox_worker.SCRATCH_DIRS)
    keep: list[str] = []
    for d in sorted({*python_dirs, *extra_binds}):
        if d.startswith(("/usr/", "/etc/")) or not os.path.exists(d):
            continue
        for parent in reversed(Path(d).parents[:-1]):  # e.g. /root is 0700 on the host: open it
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", d, d]
        keep.append(d)
    args += ["--ro-bind", sandbox_worker.__file__, WORKER_PATH, "--dev", "/dev", "--proc", "/proc"]
    # The sandbox's root (a tmpfs holding the mount points) read-only: as an ordinary user its
    # directories belong to the sandbox's only uid, and a check must not leave files there.
    args += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", "/scratch", "--cap-drop", "ALL"]
    if uid is not None:
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER"):
            args += ["--cap-add", cap]
    cfg = dict(config or {}, uid=uid, keep=keep)
    # -S, and the site-packages that site would add, appended by hand: the zygote imports none of the
    # .pth hooks; -c and an import rather than a script: the worker module is not compiled as
    # __main__, whose parser leaves ~4 MiB of heap behind. Every fork copies the page tables of the
    # zygote's resident memory, and every child pays a fault for each page it writes (12.6 -> 7.6 MiB).
    site = [d for d in keep if d.rstrip("/").endswith("-packages")]
    boot = (f"import sys; sys.path += {site!r}; sys.path.insert(0, {os.path.dirname(WORKER_PATH)!r}); "
            "import sandbox_worker; sys.exit(sandbox_worker.main())")
    # The interpreter by a normalised path: one reached through a folder the sandbox does not bind
    # (`../.venv/bin/python` run from a subfolder) does not exist in there.
    return args + ["--", os.path.abspath(sys.executable), "-I", "-S", "-B", "-c", boot, json.dumps(cfg)]


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


# ---------------------------------------------------------------- cgroups


def _v1_dirs() -> dict[str, Path]:
    """This process's own v1 cgroup directory per controller (memory, pids), where mounted."""
    own = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            for c in controllers.split(","):
                own[c] = rel
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) < 3 or rfields[0] != "cgroup":
            continue
        root, point = fields[3], fields[4]
        for c in ("memory", "pids"):
            if c in rfields[2].split(",") and c in own:
                rel = own[c]
                if rel.startswith(root):
                    found[c] = Path(point) / rel[len(root):].lstrip("/")
    return found


def _v2_dir() -> Path | None:
    try:
        rel = next(x[3:] for x in Path("/proc/self/cgroup").read_text().splitlines() if x.startswith("0::"))
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except (OSError, StopIteration):
        return None
    for line in mounts:
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            root, point = left.split()[3], left.split()[4]
            if rel.startswith(root):
                d = Path(point) / rel[len(root):].lstrip("/")
                try:
                    ctl = set((d / "cgroup.subtree_control").read_text().split())
                except OSError:
                    continue
                if {"memory", "pids"} <= ctl:
                    return d
    return None


class CheckCgroups:
    """The ``run`` and ``compile`` cgroups of one worker, nested under this process's own cgroups.

    ``fds()`` are the open ``cgroup.procs`` files (children write "0" to join) and the OOM
    counters; ``None`` from ``make`` when no cgroup can be made here (the watchdog then applies).
    """

    def __init__(self, dirs: list[Path], procs: dict[str, int], ooms: dict[str, int]):
        self.dirs, self.procs, self.ooms = dirs, procs, ooms

    @staticmethod
    def sweep(base: Path) -> None:
        """Remove the empty cgroups of sandboxes whose process is gone (killed before it could close them)."""
        try:
            entries = list(base.iterdir())
        except OSError:
            return
        for entry in entries:
            parts = entry.name.split("-")
            if len(parts) != 4 or parts[:2] != ["halo", "ray"] or not parts[2].isdigit() or Path(f"/proc/{parts[2]}").exists():
                continue
            for d in [*(c for c in entry.iterdir() if c.is_dir()), entry] if entry.is_dir() else []:
                try:
                    d.rmdir()
                except OSError:
                    pass

    @classmethod
    def make(cls, name: str, limits: dict[str, tuple[int, int]]) -> CheckCgroups | None:
        """``limits``: {"run": (memory_bytes, processes), "compile": (...)}."""
        made: list[Path] = []
        procs: dict[str, int] = {}
        ooms: dict[str, int] = {}
        try:
            v1 = _v1_dirs()
            if "memory" in v1 and "pids" in v1 and os.access(v1["memory"], os.W_OK) and os.access(v1["pids"], os.W_OK):
                for base in (v1["memory"], v1["pids"]):
                    cls.sweep(base)
                for kind, (mem, nproc) in limits.items():
                    mdir, pdir = v1["memory"] / name / kind, v1["pids"] / name / kind
                    for d in (mdir.parent, pdir.parent, mdir, pdir):
                        if not d.exists():
                            d.mkdir()
                            made.append(d)
                    (mdir / "memory.limit_in_bytes").write_text(str(mem))
                    try:
                        (mdir / "memory.memsw.limit_in_bytes").write_text(str(mem))
                    except OSError:
                        pass
                    (pdir / "pids.max").write_text(str(nproc))
                    # a child writes "0" once to each: it joins memory and pids together
                    procs[kind + ".memory"] = os.open(mdir / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
                    procs[kind + ".pids"] = os.open(pdir / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
                    ooms[kind] = os.open(mdir / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
                return cls(made, procs, ooms)
            v2 = _v2_dir()
            if v2 is not None and os.access(v2, os.W_OK):
                cls.sweep(v2)
                top = v2 / name
                top.mkdir()
                made.append(top)
                (top / "cgroup.subtree_control").write_text("+memory +pids")
                for kind, (mem, nproc) in limits.items():
                    d = top / kind
                    d.mkdir()
                    made.append(d)
                    (d / "memory.max").write_text(str(mem))
                    (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
                    (d / "pids.max").write_text(str(nproc))
                    procs[kind] = os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
                    ooms[kind] = os.open(d / "memory.events", os.O_RDONLY | os.O_CLOEXEC)
                return cls(made, procs, ooms)
        except OSError as exc:
            log.info("no cgroup for the sandbox (%s); the judge's watchdog limits the checks", exc)
            cls(made, procs, ooms).close()
        return None

    def fds(self) -> list[int]:
        return [*self.procs.values(), *self.ooms.values()]

    def config(self) -> dict:
        groups: dict[str, list[int]] = {}
        for key, fd in self.procs.items():
            groups.setdefault(key.split(".")[0], []).append(fd)
        return {"cgroups": groups, "oom_fds": dict(self.ooms)}

    def close(self) -> None:
        for fd in self.fds():
            try:
                os.close(fd)
            except OSError:
                pass
        self.procs, self.ooms = {}, {}
        for d in reversed(self.dirs):
            for _ in range(50):  # the sandbox's processes may take a moment to be reaped
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs = []


class SandboxWorker:
    """One warm sandbox: a bwrap'd zygote and judge that run check requests one at a time.

    Args:
        extra_binds: host directories to bind read-only at the same path (toolchains).
        scratch_mb: size of each private tmpfs (``/scratch``, ``/tmp``).
        start_timeout_s: how long the worker may take to report ready.
        limits: ``{"run": (memory_bytes, processes), "compile": (...)}`` for the check's cgroups;
            None: no cgroup (the watchdog applies).
    """

    def __init__(self, extra_binds: list[str] = (), scratch_mb: int = 256, start_timeout_s: float = START_TIMEOUT_S,
                 limits: dict[str, tuple[int, int]] | None = None):
        self._lock = None
        self.cgroups = None
        if rootless():
            self.uid = None
        else:
            self.uid, self._lock = _claim_uid()
        if limits:
            self.cgroups = CheckCgroups.make(f"halo-ray-{os.getpid()}-{id(self):x}", limits)
        config = self.cgroups.config() if self.cgroups else {}
        argv = bwrap_argv(self.uid, list(extra_binds), scratch_mb, config=config)
        pass_fds = self.cgroups.fds() if self.cgroups else []
        self.proc = _SPAWNER.submit(subprocess.Popen, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=_HOST_ENV, close_fds=True, pass_fds=pass_fds,
                                    start_new_session=True).result()
        try:
            hello = self._recv(time.monotonic() + start_timeout_s)
        except sandbox_worker.ProtocolError as exc:
            hello = {"error": str(exc)}
        if not hello or not hello.get("ready"):
            try:
                self.proc.wait(timeout=2.0)  # it said nothing: its exit and stderr explain why
            except subprocess.TimeoutExpired:
                pass
            why = (hello or {}).get("error") or self._stderr() or "no answer"
            self.close()
            if self.uid is None and ("namespace" in why or "Operation not permitted" in why or "setting up uid map" in why):
                raise SandboxError(_USERNS_HELP.format(why=why))
            raise SandboxError(f"sandbox worker failed to start: {why}")
        self.whole_check_limits = bool(hello.get("cgroup"))

    def run(self, request: dict, budget_s: float) -> dict:
        """Send one check request; return the judge's raw result.

        Raises SandboxError only when the request could not be delivered (the worker was already
        dead): the caller may retry it on a fresh worker. Any fault after delivery is this check's
        RUNTIME_ERROR; the result then has ``replace_worker`` (and the worker is closed).
        """
        if self.proc.poll() is not None:
            self.close()
            raise SandboxError(f"sandbox worker is gone ({self._stderr() or 'no message'})")
        try:
            sandbox_worker.send(self.proc.stdin.fileno(), request)
        except (BrokenPipeError, OSError) as exc:
            self.close()
            raise SandboxError(f"sandbox worker is gone ({exc}); {self._stderr()}") from None
        try:
            result = self._recv(time.monotonic() + budget_s + CLEAN_GRACE_S)
            why = None if isinstance(result, dict) else "the sandbox gave no answer" if result is None else "a malformed answer"
        except sandbox_worker.ProtocolError as exc:
            result, why = None, f"the sandbox broke its protocol ({exc})"
        if why is None and "error" in result:
            why = f"the verifier failed on this check: {result['error']}"
        if why is None and result.get("replace_worker"):
            log.info("replacing a sandbox worker: %s", result["replace_worker"])
            self.close()
            return result
        if why is not None:
            if result is None and self.proc.poll() is not None:
                why = f"the sandbox died during the check ({self._stderr() or 'no message'})"
            log.warning("sandbox check failed (%s); the worker is replaced", why)
            self.close()
            return {"verdict": "RUNTIME_ERROR", "passed": 0, "total": 0, "warnings": False, "detail": why,
                    "replace_worker": why}
        return result

    def _recv(self, deadline: float) -> dict | None:
        return sandbox_worker.recv(self.proc.stdout.fileno(), deadline, sandbox_worker.HOST_MAX_FRAME)

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
        """Kill the sandbox (its pid namespace dies with bwrap), release the uid and the cgroups."""
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
        if self.cgroups is not None:
            self.cgroups.close()
            self.cgroups = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
