"""Hostile programs in the real sandbox: each must get a failing verdict and leave the host untouched.

After every check: no process of the sandbox uids survives on the host, no file appeared outside
the sandbox, no connection reached a host listener, no host secret was readable.
"""

from __future__ import annotations

import os
import shutil
import socket
import time

import pytest

from halo_ray.sandbox import UID_BASE, UID_SLOTS
from halo_ray.sections import VerifierConfig
from halo_ray.verifiers import Verifier

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="the sandbox needs bubblewrap (apt-get install bubblewrap)")
ROOTLESS = os.geteuid() != 0  # run by test_rootless.py as an ordinary user

SECRET = "halo-secret-7f3a"
TESTS = "assert f(1) == 2\nassert f(2) == 3\n"
GOOD = "def f(x):\n    return x + 1\n"


@pytest.fixture(scope="module")
def pool():
    os.environ["HALO_TEST_SECRET"] = SECRET  # the host has a secret the programs must not see
    try:
        with Verifier(VerifierConfig(workers=2, timeout_s=1.0, memory_mb=512, max_processes=16,
                                     compile_memory_mb=1024, compile_timeout_s=10.0)) as v:
            yield v
    finally:
        os.environ.pop("HALO_TEST_SECRET", None)


def sandbox_processes(pool) -> list[str]:
    """Processes of this pool's sandboxes running as a sandbox uid (other sandboxes on a shared host
    are not ours to count). As an ordinary user every process of the sandbox has the test's uid:
    there the daemon and fork-flood tests look for the programs themselves."""
    if ROOTLESS:
        return []
    parents, uids = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            parents[int(pid)] = int(fields["PPid"])
            uids[int(pid)] = int(fields["Uid"].split()[0])
        except (OSError, KeyError, ValueError):
            continue
    roots = {w.proc.pid for w in pool._all}
    found = []
    for pid, uid in uids.items():
        if not UID_BASE <= uid < UID_BASE + UID_SLOTS:
            continue
        p = pid
        for _ in range(64):
            p = parents.get(p, 0)
            if p in roots:
                found.append(str(pid))
                break
            if p <= 1:
                break
    return found


def check(pool, code, tests=TESTS, **extra):
    out = pool.verify([{"id": "h", "code": code, "tests": tests, **extra}])[0]
    left = sandbox_processes(pool)
    assert left == [], f"a sandboxed process outlived its check: {[_describe(p) for p in left]}"
    # the pool still works after the attack (and the attack's result was not cached as success)
    assert pool.verify([{"id": "ok", "code": GOOD, "tests": TESTS}])[0]["verdict"] == "SUCCESS"
    return out


@pytest.mark.parametrize("code", [
    "import sys\nsys.exit(0)\n" + GOOD,
    "import os\nos._exit(0)\n" + GOOD,
    GOOD.replace("x + 1", "x") + "import atexit, os\natexit.register(lambda: os._exit(0))\nimport sys\nsys.exit(0)\n",
    "import sys\nsys.exit(0)\n",  # nothing defined at all
], ids=["sys.exit", "os._exit", "atexit", "exit-without-code"])
def test_exiting_before_the_tests_fails(pool, code):
    out = check(pool, code)
    assert out["verdict"] == "RUNTIME_ERROR" and out["pass_rate"] == 0.0, out


def test_systemexit_inside_the_function_fails(pool):
    out = check(pool, "def f(x):\n    raise SystemExit(0)\n")
    assert (out["verdict"], out["pass_rate"]) == ("RUNTIME_ERROR", 0.0)


@pytest.mark.parametrize("marker", ["PASSED", "D 0", "all tests passed", "{\"verdict\": \"SUCCESS\"}"])
def test_printed_success_markers_fail(pool, marker):
    code = f"import sys\ndef f(x):\n    print({marker!r})\n    sys.stdout.flush()\n    return 0\nprint({marker!r})\n"
    assert check(pool, code)["verdict"] == "WRONG_OUTPUT"


def test_writing_the_result_pipe_fails(pool):
    code = ("import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, b'P\\nP\\nD 00\\n')\n    except OSError:\n"
            "        pass\nos._exit(0)\n")
    assert check(pool, code)["verdict"] == "RUNTIME_ERROR"


def test_killing_the_parent_fails(pool):
    code = ("import os, signal\nfor pid in (os.getppid(), 1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError:\n        pass\nos.kill(-1, signal.SIGKILL)\ndef f(x):\n    return 0\n")
    sandboxes = sorted(w.proc.pid for w in pool._all)
    out = check(pool, code)
    if ROOTLESS:  # one uid in the user namespace: the program can kill the zygote, which ends its own check
        assert out["verdict"] in ("WRONG_OUTPUT", "RUNTIME_ERROR"), out
        return
    assert out["verdict"] == "WRONG_OUTPUT"  # the tests still ran and judged it
    assert sorted(w.proc.pid for w in pool._all) == sandboxes  # no worker died or was replaced


def test_fork_flood_ends_and_leaves_nothing(pool):
    code = ("import os\ndef f(x):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n"
            "            pass\n")
    out = check(pool, code)
    assert out["verdict"] in ("TIMEOUT", "RUNTIME_ERROR")


def test_daemon_does_not_outlive_the_run(pool, tmp_path):
    code = ("import os, subprocess\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        os.execv('/bin/sleep', ['sleep', '987'])\n    os._exit(0)\n" + GOOD)
    out = check(pool, code)
    assert out["verdict"] == "SUCCESS"  # the program itself is right; its daemon is still killed
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == "sleep 987"]


def _describe(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            state = next(line for line in fh if line.startswith("State:")).split(None, 1)[1].strip()
    except (OSError, StopIteration):
        state = "gone"
    return f"{pid} {state} {_cmdline(pid)[:60]}"


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_memory_bomb_is_stopped(pool):
    out = check(pool, "def f(x):\n    return len(bytearray(8 << 30))\n")
    assert out["verdict"] == "RUNTIME_ERROR" and "MemoryError" in out["detail"]
    out = check(pool, "def f(x):\n    blocks = []\n    while True:\n        blocks.append(bytearray(1 << 20))\n")
    assert out["verdict"] in ("RUNTIME_ERROR", "TIMEOUT")


def test_sigterm_ignoring_loop_is_killed(pool):
    start = time.monotonic()
    code = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ndef f(x):\n    while True:\n        pass\n"
    assert check(pool, code)["verdict"] == "TIMEOUT"
    assert time.monotonic() - start < 5


def test_compile_bomb_ends_within_limits(pool):
    start = time.monotonic()
    out = pool.verify([{"id": "b", "language": "c", "code": '#include "/dev/zero"\nint main(void){return 0;}\n'}])[0]
    assert out["verdict"] == "SYNTAX_ERROR" and out["reward"] == 0.0
    assert time.monotonic() - start < 15
    assert sandbox_processes(pool) == []


def test_no_network(pool):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = ("import socket\ndef f(x):\n    s = socket.socket()\n    s.settimeout(0.5)\n"
            f"    s.connect(('127.0.0.1', {port}))\n    return x + 1\n")
    out = check(pool, code)
    assert out["verdict"] == "RUNTIME_ERROR" and "ConnectionRefused" in out["detail"]
    with pytest.raises(socket.timeout):
        server.accept()  # nothing reached the host
    server.close()
    out = check(pool, "import socket\ndef f(x):\n    socket.create_connection(('8.8.8.8', 53), timeout=0.5)\n")
    assert out["verdict"] == "RUNTIME_ERROR"


def test_no_writes_outside_scratch(pool, tmp_path):
    targets = [str(tmp_path / "escaped"), "/work/main/escaped-file", "/etc/escaped", "/usr/escaped"]
    code = ("import os\ndef f(x):\n    ok = 0\n    for path in %r:\n        try:\n            open(path, 'w').write('x')\n"
            "            ok += 1\n        except OSError:\n            pass\n    open('scratch.txt', 'w').write('fine')\n"
            "    return x + 1 if ok == 0 else -1\n") % (targets,)
    assert check(pool, code)["verdict"] == "SUCCESS"  # every write failed, scratch worked
    assert not any(os.path.exists(p) for p in targets)


def test_host_secrets_are_not_visible(pool):
    code = ("import os, glob\ndef f(x):\n    seen = [k for k, v in os.environ.items() if 'halo-secret' in v]\n"
            "    for path in glob.glob('/proc/*/environ'):\n        try:\n            seen += ['proc'] if b'halo-secret' in "
            "open(path, 'rb').read() else []\n        except OSError:\n            pass\n"
            "    return x + 1 if not seen else seen\n")
    assert check(pool, code)["verdict"] == "SUCCESS"
    assert SECRET in os.environ["HALO_TEST_SECRET"]


def test_runs_as_unprivileged_uid_without_capabilities(pool):
    code = ("import os\ndef f(x):\n    caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
            "    assert os.getuid() >= 1000 and os.geteuid() >= 1000, os.getuid()\n"
            "    assert int(caps.split()[1], 16) == 0, caps\n    return x + 1\n")
    assert check(pool, code)["verdict"] == "SUCCESS"


def test_capped_output(pool):
    out = pool.verify([{"id": "o", "code": "print('x' * 10_000_000)", "test_cases": [{"input": "", "output": "y"}]}])[0]
    assert out["verdict"] == "WRONG_OUTPUT" and len(out["detail"]) <= 300


@pytest.mark.skipif(ROOTLESS, reason="as an ordinary user the sandbox has a single uid (user namespace)")
def test_each_sandbox_has_its_own_uid(pool):
    uids = {w.uid for w in pool._all}
    assert len(uids) == pool.workers and all(UID_BASE <= u < UID_BASE + UID_SLOTS for u in uids)


WRONG = "def f(x):\n    return x\n"  # fails both asserts
FORGE = ("import os\n"
         "def forge(frame):\n"
         "    while frame is not None:\n"
         "        if 'nonce' in frame.f_locals:\n"
         "            frame.f_locals['emit']('D ' + frame.f_locals['nonce'])\n"
         "            os._exit(0)\n"
         "        frame = frame.f_back\n")


@pytest.mark.parametrize("grab", [
    "import sys\nforge(sys._getframe())\n",
    "import inspect\nforge(inspect.currentframe())\n",
    "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    forge(e.__traceback__.tb_frame)\n",
    "import sys\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    forge(sys.exc_info()[2].tb_frame)\n",
    "def g():\n    yield\nit = g()\nnext(it)\nforge(it.gi_frame)\n",
    "import sys\nforge(list(sys._current_frames().values())[0])\n",
    "import sys\nsys.settrace(lambda fr, ev, arg: forge(fr))\nsys._getframe\ndef h():\n    pass\nh()\n",
    "import gc\nfor o in gc.get_objects():\n    if type(o).__name__ == 'frame':\n        forge(o)\n",
    "import signal, os\nsignal.signal(signal.SIGUSR1, lambda s, fr: forge(fr))\nos.kill(os.getpid(), signal.SIGUSR1)\n",
    "import sys\ndel sys.modules['_signal']\nimport _signal\n_signal.signal(10, lambda s, fr: forge(fr))\n",
    "import ctypes\n",
    "data = open('/proc/self/mem', 'rb')\n",
], ids=["_getframe", "inspect", "tb_frame", "exc_info", "gi_frame", "current_frames", "settrace", "gc",
        "signal", "signal-reimport", "ctypes", "proc-mem"])
def test_introspection_cannot_forge_success(pool, grab):
    # Each snippet tries to reach the harness frame and write its "all tests ran" line itself.
    out = check(pool, FORGE + grab + WRONG)
    assert out["verdict"] != "SUCCESS" and out["reward"] < 1.0, out


def test_ordinary_programs_still_run_under_the_guard(pool):
    code = ("import collections, enum, logging, typing\n"
            "P = collections.namedtuple('P', 'a b')\n"
            "Colour = enum.Enum('Colour', 'RED GREEN')\n"
            "class T(typing.NamedTuple):\n    a: int\n"
            "logging.getLogger('x').warning('hello')\n"
            "def f(x):\n    return P(x, 1).a + T(1).a + Colour.RED.value - 1\n")
    out = check(pool, code)
    assert out["verdict"] == "SUCCESS", out
