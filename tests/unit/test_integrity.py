"""Reward integrity: each attack class of issue 10, tried as an attacker would, in the real sandbox.

Every test asserts the verdict of the hostile record, that the other records of its batch are
judged normally (one bad record never costs a batch), and that the next check on the same pool is
untouched. The same file runs as root and, from ``test_rootless.py``, as an ordinary user.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from halo_ray.sections import VerifierConfig
from halo_ray.verifiers import Verifier

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="the sandbox needs bubblewrap (apt-get install bubblewrap)")

TESTS = "assert f(1) == 2\nassert f(2) == 3\n"
GOOD = "def f(x):\n    return x + 1\n"
WRONG = "def f(x):\n    return x\n"
GOOD_RECORD = {"id": "good", "code": GOOD, "tests": TESTS}


@pytest.fixture(scope="module")
def pool():
    with Verifier(VerifierConfig(workers=1, timeout_s=2.0, memory_mb=512, max_processes=32, cache_size=0,
                                 scratch_mb=64, compile_memory_mb=1024, compile_timeout_s=20.0)) as v:
        yield v


def judge(pool, record, **extra):
    """Verify ``record`` between two good records; the batch and the next check must be untouched."""
    hostile = {"id": "hostile", "tests": TESTS, **record, **extra}
    out = pool.verify([GOOD_RECORD, hostile, dict(GOOD_RECORD, id="good2")])
    assert [r["id"] for r in out] == ["good", "hostile", "good2"]
    assert out[0]["verdict"] == "SUCCESS" and out[2]["verdict"] == "SUCCESS", out
    after = pool.verify([dict(GOOD_RECORD, id="after")])[0]
    assert after["verdict"] == "SUCCESS", after
    json.dumps(out[1], ensure_ascii=False).encode("utf-8")  # always writable
    return out[1]


def assert_not_success(out):
    assert out["verdict"] != "SUCCESS" and out["reward"] < 1.0, out


# ------------------------------------------------------------------ 1. the tests ran in the completion's world


@pytest.mark.parametrize("patch,tests", [
    ("import math\nmath.isclose = lambda *a, **k: True\n", "import math\nassert math.isclose(f(1), 2.5)\n"),
    ("import builtins\nbuiltins.sorted = lambda *a, **k: [1, 2, 3]\n", "assert sorted(f(3)) == [1, 2, 3]\n"),
    ("import builtins\nbuiltins.len = lambda *a: 3\n", "assert len(f(3)) == 3\n"),
    ("import builtins\nbuiltins.isinstance = lambda *a: True\n", "assert isinstance(f(3), list)\n"),
    ("import builtins\nclass Nope(Exception):\n    pass\nbuiltins.AssertionError = Nope\n", TESTS),
    ("__builtins__.abs = lambda x: 0\n", "assert abs(f(1) - 2.5) < 1e-9\n"),
], ids=["math.isclose", "sorted", "len", "isinstance", "AssertionError", "abs"])
def test_patching_what_the_tests_use_cannot_pass(pool, patch, tests):
    out = judge(pool, {"code": patch + WRONG, "tests": tests})
    # WRONG_OUTPUT, or RUNTIME_ERROR where the patch also broke the program's own side of the channel
    assert out["verdict"] in ("WRONG_OUTPUT", "RUNTIME_ERROR"), out


def test_overriding_the_test_helpers_cannot_pass(pool):
    # HumanEval convention: the tests define check(candidate); the program defines check too.
    tests = "def check(candidate):\n    assert candidate(1) == 2\n"
    code = WRONG + "def check(candidate):\n    pass\n"
    out = judge(pool, {"verifier": "humaneval", "code": code, "tests": tests, "entry_point": "f"})
    assert out["verdict"] == "WRONG_OUTPUT", out


# ------------------------------------------------------------------ 2. always-equal values


@pytest.mark.parametrize("value", [
    "class A:\n    def __eq__(self, o):\n        return True\n    __hash__ = object.__hash__\nV = A()\n",
    "class A(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\nV = A(0)\n",
    "class A(str):\n    def __eq__(self, o):\n        return True\n    __hash__ = str.__hash__\nV = A('')\n",
    "class A(list):\n    def __eq__(self, o):\n        return True\nV = A()\n",
    "class A(float):\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n        return False\n"
    "    def __sub__(self, o):\n        return 0.0\n    __rsub__ = __sub__\n    __hash__ = float.__hash__\nV = A(0)\n",
], ids=["object", "int", "str", "list", "float"])
def test_always_equal_values_are_wrong(pool, value):
    out = judge(pool, {"code": value + "def f(x):\n    return V\n",
                       "tests": "assert f(1) == 2\nassert f(2) == 'three'\nassert abs(f(3) - 4.5) < 1e-9\n"})
    assert out["verdict"] == "WRONG_OUTPUT" and out["pass_rate"] == 0.0, out


# ------------------------------------------------------------------ 3./4. the guard and the judge's channel


FORGE_WITH_GUARD_OFF = (
    "import sys\n"
    "w = sys.modules.get('__main__')\n"
    "for name in ('_BLOCKED_EVENTS', '_BLOCKED_IMPORTS', '_FRAME_ATTRS'):\n"
    "    if hasattr(w, name):\n"
    "        setattr(w, name, frozenset())\n"
    "frame = sys._getframe()\n"
    "while frame is not None:\n"
    "    if 'nonce' in frame.f_locals and 'emit' in frame.f_locals:\n"
    "        frame.f_locals['emit']('D ' + frame.f_locals['nonce'])\n"
    "        import os\n"
    "        os._exit(0)\n"
    "    frame = frame.f_back\n")


def test_emptying_the_guard_cannot_forge(pool):
    assert_not_success(judge(pool, {"code": FORGE_WITH_GUARD_OFF + WRONG}))


def test_forged_pass_lines_do_not_count(pool):
    code = "import os\nfor fd in range(3, 12):\n    try:\n        os.write(fd, b'P\\n' * 50)\n    except OSError:\n        pass\n"
    out = judge(pool, {"code": code + WRONG})
    assert out["verdict"] != "SUCCESS" and out["pass_rate"] == 0.0, out


FILTER = (  # a forked filter between the harness and its result pipe: drops failures, forwards the rest
    "import os\n"
    "for fd in range(3, 12):\n"
    "    try:\n"
    "        os.fstat(fd)\n"
    "    except OSError:\n"
    "        continue\n"
    "    r, w = os.pipe()\n"
    "    if os.fork() == 0:\n"
    "        os.close(w)\n"
    "        data = b''\n"
    "        while True:\n"
    "            chunk = os.read(r, 65536)\n"
    "            if not chunk:\n"
    "                break\n"
    "            data += chunk\n"
    "        keep = [l for l in data.split(b'\\n') if l and l[:1] not in (b'F', b'E')]\n"
    "        try:\n"
    "            os.write(fd, b'P\\nP\\n' + b'\\n'.join(keep) + b'\\n')\n"
    "        except OSError:\n"
    "            pass\n"
    "        os._exit(0)\n"
    "    os.close(r)\n"
    "    os.dup2(w, fd)\n"
    "    os.close(w)\n"
    "    break\n")


def test_a_filter_on_the_judge_channel_cannot_forge(pool):
    out = judge(pool, {"code": FILTER + WRONG})
    assert out["verdict"] != "SUCCESS" and out["pass_rate"] == 0.0, out


# ------------------------------------------------------------------ 5./6. the program never holds the answers


READ_ANSWERS = (  # search the whole heap for the request (expected outputs) or the compiled tests
    "import gc, sys, re\n"
    "seen = []\n"
    "for o in gc.get_objects():\n"
    "    if isinstance(o, dict):\n"
    "        for v in list(o.values()):\n"
    "            if isinstance(v, (list, str)):\n"
    "                seen.append(v)\n"
    "for m in list(sys.modules.values()):\n"
    "    for v in list(vars(m).values()) if hasattr(m, '__dict__') else []:\n"
    "        if isinstance(v, dict):\n"
    "            seen.extend(k for k in list(v) if isinstance(k, str))\n")


def test_stdio_programs_never_hold_expected_outputs(pool):
    code = READ_ANSWERS + (
        "data = sys.stdin.read()\n"
        "for v in seen:\n"
        "    if isinstance(v, list):\n"
        "        for c in v:\n"
        "            if isinstance(c, dict) and c.get('input') == data and 'output' in c:\n"
        "                print(c['output'])\n"
        "                sys.exit(0)\n"
        "print('no idea')\n")
    out = judge(pool, {"code": code, "tests": None, "test_cases": [{"input": "7\n", "output": "secret-answer-49"}]})
    assert out["verdict"] == "WRONG_OUTPUT", out


def test_programs_never_see_their_tests(pool):
    code = READ_ANSWERS + (
        "table = {}\n"
        "for s in seen:\n"
        "    if isinstance(s, str):\n"
        "        for a, b in re.findall(r'f\\((\\d+)\\) == (\\d+)', s):\n"
        "            table[int(a)] = int(b)\n"
        "def f(x):\n"
        "    return table.get(x, -1)\n")
    out = judge(pool, {"code": code, "tests": "assert f(7) == 4321\nassert f(8) == 8765\n"})
    assert out["verdict"] == "WRONG_OUTPUT" and out["pass_rate"] == 0.0, out


# ------------------------------------------------------------------ 7. one record never fails the batch


@pytest.mark.parametrize("garbage", [
    b"N \\xd9\\xa3\\n", b"N \\xc2\\xb2\\n", b"N " + b"9" * 40 + b"\\n", b"S {bad json\\n",
    b"S " + b"[" * 100000 + b"\\n", b"\\xff\\xfe\\x00garbage\\n", b"\\x00\\x00\\x00\\x10{not json at all",
    b"\\x7f\\xff\\xff\\xff", b"\\x00\\x00\\x00\\x02[]",
], ids=["arabic-digit", "superscript", "long-number", "bad-json", "deep", "binary", "bad-frame", "huge-frame",
        "not-a-dict"])
def test_garbage_on_every_fd_is_one_verdict(pool, garbage):
    code = ("import os\nfor fd in range(1, 12):\n    try:\n        os.write(fd, b'%s')\n    except OSError:\n"
            "        pass\nos._exit(0)\n") % garbage.decode()
    out = judge(pool, {"code": code})
    assert out["verdict"] == "RUNTIME_ERROR", out


def test_five_thousand_digit_line(pool):
    code = ("import os\nfor fd in range(3, 12):\n    try:\n        os.write(fd, b'N ' + b'9' * 5000 + b'\\n')\n"
            "    except OSError:\n        pass\nos._exit(0)\n")
    assert judge(pool, {"code": code})["verdict"] == "RUNTIME_ERROR"


def test_surrogates_and_control_characters_are_cleaned(pool):
    code = "def f(x):\n    raise ValueError('bad \\udcff\\x00\\x1b[31m\\u2028 end')\n"
    out = judge(pool, {"code": code})
    assert out["verdict"] == "RUNTIME_ERROR", out
    out["detail"].encode("utf-8")  # no lone surrogate
    assert not any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in out["detail"]), out["detail"]
    assert "ValueError" in out["detail"]


# ------------------------------------------------------------------ 8. state never survives a check

LEAVE_STATE = (
    "import os\n"
    "for top in ('/scratch', '/tmp'):\n"
    "    os.makedirs(top + '/locked/inner', exist_ok=True)\n"
    "    open(top + '/locked/inner/note', 'w').write('from the previous check')\n"
    "    os.chmod(top + '/locked/inner', 0)\n"
    "    os.chmod(top + '/locked', 0)\n"
    "os.chdir('/scratch')\n"
    "for i in range(3000):\n"  # deeper than the fd limit of the old wipe
    "    os.mkdir('d')\n"
    "    os.chdir('d')\n"
    "open('deep-note', 'w').write('x')\n")
# A checkout (and its venv) under /tmp is bound into the sandbox at the same path, so its first folder
# below /tmp is a bind point in every check, not state left by the previous one.
BIND_POINTS = sorted({path.split("/")[2] for path in (sys.prefix, sys.base_prefix, *sys.path)
                      if path.startswith("/tmp/") and len(path.split("/")) > 2})
SEE_STATE = ("import os\ndef f(x):\n    left = [e for top in ('/scratch', '/tmp', '/dev/shm') if os.path.isdir(top) "
             f"for e in os.listdir(top) if not (top == '/tmp' and e in {BIND_POINTS!r})]\n"
             "    return x + 1 if not left else left\n")


def test_unwritable_and_deep_directories_do_not_survive(pool):
    pool.verify([{"id": "leave", "code": LEAVE_STATE + GOOD, "tests": TESTS}])
    out = judge(pool, {"code": SEE_STATE})
    assert out["verdict"] == "SUCCESS", out


def test_a_full_locked_scratch_does_not_break_the_next_compile(pool):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    fill = ("import os\nos.makedirs('/tmp/full', exist_ok=True)\nfor top in ('/tmp/full', '/scratch'):\n"
            "    try:\n        with open(top + '/blob', 'wb') as fh:\n            while True:\n"
            "                fh.write(b'x' * (1 << 20))\n    except OSError:\n        pass\nos.chmod('/tmp/full', 0)\n" + GOOD)
    pool.verify([{"id": "fill", "code": fill, "tests": TESTS}])
    c = '#include <stdio.h>\nint main(void){int a; if (scanf("%d", &a) != 1) return 1; printf("%d\\n", 2*a); return 0;}\n'
    out = judge(pool, {"code": c, "language": "c", "tests": None, "test_cases": [{"input": "3", "output": "6"}]})
    assert out["verdict"] == "SUCCESS", out


def test_a_hard_link_flood_is_not_charged_to_the_next_check(pool):
    flood = ("import os, time\nopen('/scratch/f', 'w').close()\nend = time.monotonic() + 1.6\ni = 0\n"
             "while time.monotonic() < end:\n    for _ in range(1000):\n        i += 1\n"
             "        try:\n            os.link('/scratch/f', '/scratch/l%d' % i)\n        except OSError:\n"
             "            end = 0\n            break\n" + GOOD)
    pool.verify([{"id": "flood", "code": flood, "tests": TESTS}])
    out = judge(pool, {"code": SEE_STATE})
    assert out["verdict"] == "SUCCESS", out


# ------------------------------------------------------------------ 9. limits hold for the check as a whole


def test_memory_is_limited_for_the_check_as_a_whole(pool):
    # 5 processes x 180 MiB, each well under the 512 MiB per-process limit, 900 MiB together.
    code = ("import os, time\n"
            "def f(x):\n"
            "    kids = []\n"
            "    for _ in range(5):\n"
            "        pid = os.fork()\n"
            "        if pid == 0:\n"
            "            try:\n"
            "                block = bytearray(180 << 20)\n"
            "                for i in range(0, len(block), 4096):\n"
            "                    block[i] = 1\n"
            "                time.sleep(0.3)\n"
            "            except BaseException:\n"
            "                os._exit(1)\n"
            "            os._exit(0)\n"
            "        kids.append(pid)\n"
            "    ok = all(os.waitpid(p, 0)[1] == 0 for p in kids)\n"
            "    return x + 1 if ok else -1\n")
    out = judge(pool, {"code": code, "tests": "assert f(1) == 2\n"})
    assert_not_success(out)
    worker = pool._all[0]
    if worker.cgroups is not None:  # the kernel held the check as a whole under its limit
        peak = next(d for d in worker.cgroups.dirs if d.name == "run" and "memory" in str(d)) / "memory.max_usage_in_bytes"
        assert int(peak.read_text()) <= 512 << 20


def test_the_watchdog_limits_the_check_where_no_cgroup_can_be_made(monkeypatch):
    import halo_ray.sandbox as sandbox

    monkeypatch.setattr(sandbox.CheckCgroups, "make", classmethod(lambda cls, *a, **k: None))
    code = ("import os, time\n"
            "def f(x):\n"
            "    for _ in range(5):\n"
            "        if os.fork() == 0:\n"
            "            block = bytearray(180 << 20)\n"
            "            for i in range(0, len(block), 4096):\n"
            "                block[i] = 1\n"
            "            time.sleep(5)\n"
            "            os._exit(0)\n"
            "    time.sleep(5)\n"
            "    return x + 1\n")
    with Verifier(VerifierConfig(workers=1, timeout_s=3.0, memory_mb=512, max_processes=32, cache_size=0)) as v:
        assert not v._all[0].whole_check_limits
        out = v.verify([{"id": "spread", "code": code, "tests": "assert f(1) == 2\n"}, GOOD_RECORD])
    assert out[0]["verdict"] == "RUNTIME_ERROR" and "memory limit" in out[0]["detail"], out[0]
    assert out[1]["verdict"] == "SUCCESS"


# ------------------------------------------------------------------ 10. small leaks and the verdict class


def test_host_etc_is_not_echoed(pool):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    code = '#include "/etc/passwd"\nint main(void){return 0;}\n'
    out = judge(pool, {"code": code, "language": "c", "tests": None})
    assert out["verdict"] == "SYNTAX_ERROR", out
    assert "root:" not in out["detail"] and "/bin/" not in out["detail"], out
    for name in ("shadow", "hostname", "hosts", "passwd", "group"):
        probe = f"import os\ndef f(x):\n    return x + 1 if not os.path.exists('/etc/{name}') else '/etc/{name}'\n"
        assert pool.verify([{"id": name, "code": probe, "tests": TESTS}])[0]["verdict"] == "SUCCESS", name


@pytest.mark.parametrize("exc", ["AssertionError", "AssertionError('wrong')", "SystemExit(0)", "KeyboardInterrupt"])
def test_an_exception_in_the_program_is_a_runtime_error_whatever_its_name(pool, exc):
    out = judge(pool, {"code": f"def f(x):\n    raise {exc}\n"})
    assert (out["verdict"], out["reward"]) == ("RUNTIME_ERROR", 0.0), out  # Python: pass_rate, nothing passed


def test_a_failing_assertion_of_the_tests_is_wrong_output(pool):
    out = judge(pool, {"code": WRONG})
    assert (out["verdict"], out["reward"], out["pass_rate"]) == ("WRONG_OUTPUT", 0.0, 0.0), out
    assert out["detail"].startswith("AssertionError")


# ------------------------------------------------------------------ pytest verifier

PYTESTS = "def test_a():\n    assert sq(2) == 4\n\ndef test_b():\n    assert sq(3) == 9\n"


@pytest.mark.parametrize("code", [
    "import _pytest.reports as r\norig = r.TestReport.__init__\n"
    "def init(self, *a, **k):\n    orig(self, *a, **k)\n    self.outcome = 'passed'\n    self.longrepr = None\n"
    "r.TestReport.__init__ = init\ndef sq(x):\n    return 0\n",
    "import pytest\npytest.skip('nothing to see', allow_module_level=True)\n",
    "import _pytest.python as p\np.Function.runtest = lambda self: None\ndef sq(x):\n    return 0\n",
], ids=["patched-report", "module-skip", "patched-runtest"])
def test_pytest_reports_cannot_be_forged(pool, code):
    out = judge(pool, {"verifier": "pytest", "code": code, "tests": PYTESTS})
    assert_not_success(out)


def test_nothing_written_outside_scratch_survives(pool):
    dirs = ("/", "/etc", "/opt", "/opt/halo-ray", "/usr", "/dev", "/dev/pts", "/dev/shm", "/proc", "/judge", "/root",
            "/work", "/home", "/var", "/scratch", "/tmp")
    write = ("def f(x):\n    for d in %r:\n        try:\n            open(d + '/left-behind', 'w').close()\n"
             "        except OSError:\n            pass\n    return x + 1\n") % (dirs,)
    pool.verify([{"id": "write", "code": write, "tests": TESTS}])
    read = ("import os\ndef f(x):\n    left = [d for d in %r if os.path.exists(d + '/left-behind')]\n"
            "    return x + 1 if not left else left\n") % (dirs,)
    out = judge(pool, {"code": read})
    assert out["verdict"] == "SUCCESS", out


def test_a_check_that_breaks_the_judge_is_its_own_verdict_and_is_never_retried(pool, monkeypatch):
    starts = []
    start, request = pool._start_worker, pool.request
    monkeypatch.setattr(pool, "_start_worker", lambda: starts.append(1) or start())
    monkeypatch.setattr(pool, "request", lambda r: dict(request(r), kind="bogus") if r["id"] == "poison" else request(r))
    other = dict(GOOD_RECORD, id="good2", code="def f(x):\n    return 1 + x\n")
    out = pool.verify([GOOD_RECORD, {"id": "poison", "code": GOOD, "tests": TESTS}, other])
    assert [r["verdict"] for r in out] == ["SUCCESS", "RUNTIME_ERROR", "SUCCESS"], out
    assert "unknown request kind" in out[1]["detail"]
    assert len(starts) == 1  # the broken worker was replaced once; the poisoned request never ran again


def test_pytest_verdicts_come_from_the_judge(pool):
    good = "def sq(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x * x\n"
    tests = PYTESTS + "\ndef test_raises():\n    import pytest\n    with pytest.raises(ValueError):\n        sq(-1)\n"
    out = pool.verify([{"id": "good", "verifier": "pytest", "code": good, "tests": tests},
                       {"id": "skip", "verifier": "pytest", "tests": tests,
                        "code": "import pytest\npytest.skip('x', allow_module_level=True)\n"}])
    assert (out[0]["verdict"], out[0]["pass_rate"]) == ("SUCCESS", 1.0), out[0]
    assert out[1]["verdict"] == "RUNTIME_ERROR", out[1]


def test_other_processes_fds_and_memory_are_out_of_reach(pool):
    # The host channel is held by the judge (and bwrap): a program that could open another process's
    # fds through /proc could forge the judge's answer to the host.
    code = ("import os\n"
            "def f(x):\n"
            "    me, hits = os.getpid(), []\n"
            "    for pid in os.listdir('/proc'):\n"
            "        if not pid.isdigit() or int(pid) == me:\n"
            "            continue\n"
            "        for what in ('mem', 'environ'):\n"
            "            try:\n"
            "                open('/proc/%s/%s' % (pid, what), 'rb').read(1)\n"
            "                hits.append((pid, what))\n"
            "            except OSError:\n"
            "                pass\n"
            "        try:\n"
            "            fds = os.listdir('/proc/%s/fd' % pid)\n"
            "        except OSError:\n"
            "            continue\n"
            "        for fd in fds:\n"
            "            try:\n"
            "                with open('/proc/%s/fd/%s' % (pid, fd), 'wb') as fh:\n"
            "                    fh.write(b'\\x00\\x00\\x00\\x15{\"verdict\": \"SUCCESS\"}')\n"
            "                hits.append((pid, fd))\n"
            "            except OSError:\n"
            "                pass\n"
            "    return x + 1 if not hits else hits\n")
    out = judge(pool, {"code": code})
    assert out["verdict"] == "SUCCESS", out


def test_a_worker_that_cannot_be_proven_clean_is_replaced(pool):
    # SysV shared memory outlives its process and no wipe of scratch removes it.
    code = ("import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.shmget(0x4a4c, 4096, 0o1666) >= 0\n" + GOOD)
    before = [w.proc.pid for w in pool._all]
    out = judge(pool, {"code": code})
    assert out["verdict"] == "SUCCESS", out  # the program itself is right
    assert [w.proc.pid for w in pool._all] != before  # but its worker was replaced, not reused


def test_cgroups_of_a_killed_verifier_are_swept():
    import subprocess

    from halo_ray.sandbox import CheckCgroups, _v1_dirs

    base = _v1_dirs().get("memory")
    if os.geteuid() != 0 or base is None or not os.access(base, os.W_OK):
        pytest.skip("no writable v1 memory cgroup here")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = base / f"halo-ray-{dead.pid}-deadbeef"
    (stale / "run").mkdir(parents=True)
    cg = CheckCgroups.make(f"halo-ray-{os.getpid()}-sweeptest", {"run": (64 << 20, 8)})
    try:
        assert not stale.exists()
    finally:
        if cg is not None:
            cg.close()
        for d in (stale / "run", stale):
            if d.exists():
                d.rmdir()


def test_speculated_calls_never_change_what_a_stateful_program_sees(pool):
    # The plan is f(0), f(100), f(1); f(0) raises, so the tests really call f(0), f(1): the judge
    # must replay f(0) alone on a fresh child, or f(1) would see the speculated f(100).
    code = ("calls = []\ndef f(x):\n    calls.append(x)\n    if x == 0:\n        raise ValueError('zero')\n"
            "    return len(calls)\n")
    tests = "try:\n    f(0)\n    f(100)\nexcept ValueError:\n    pass\nassert f(1) == 2\nassert f(5) == 3\n"
    out = judge(pool, {"code": code, "tests": tests})
    assert out["verdict"] == "SUCCESS", out
