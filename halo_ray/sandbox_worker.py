"""The warm worker that runs inside a bubblewrap sandbox; standard library only, started by path.

One worker serves one host thread over length-prefixed JSON on its stdin/stdout. The worker runs as
root inside the sandbox with only CAP_SETUID, CAP_SETGID and CAP_KILL; it never runs untrusted code
itself. Per program run it forks a child that drops to the worker's unprivileged uid, sets rlimits,
and then runs the program: Python in-process (no interpreter start), native binaries by exec. The
child cannot signal the worker (another uid) and cannot write the worker's channel (closed fds).

A Python check succeeds only if the child writes ``D <nonce>`` on its result pipe after every test
unit passed; the nonce is drawn per check, so ``sys.exit(0)``/``os._exit(0)`` before the tests, atexit
handlers, exit codes and printed markers cannot make a run pass. After every run the worker sends
SIGKILL to every other process of the sandbox's private pid namespace (``kill(-1)``), so daemons and
fork floods never outlive their run.

Per-check costs kept low: the worker compiles (and caches) the test program, which is input data, so
children only compile the untrusted code; the result pipe is grown to hold a whole run's lines and is
read when the child has exited, so the worker is woken once per run rather than once per assertion.
"""

import collections
import fcntl
import json
import os
import resource
import select
import signal
import struct
import sys
import time

SCRATCH_DIRS = ("/scratch", "/tmp")
# Imported once by the worker so that checks do not pay for them (`from typing import List` alone
# costs a fresh child about 8 ms). pytest is left out: it doubles the heap every fork copies from.
WARM_IMPORTS = ("shutil", "traceback", "warnings", "typing", "math", "re", "collections", "itertools", "functools",
                "heapq", "bisect", "string", "hashlib", "random", "copy", "fractions", "statistics", "decimal")
_HEADER = struct.Struct(">I")
RESULT_PIPE_BYTES = 1 << 20  # the result pipe holds a whole run's lines: the worker is not woken per line
RESULT_DRAIN_S = 0.1  # ...but a run that lasts longer has it emptied this often, so that it never blocks
TESTS_CACHE_SIZE = 64  # compiled test programs kept by the worker (a prompt's tests serve many samples)
TESTS_CACHE_MAX_CHARS = 256 * 1024  # larger test programs are compiled by each child, as before
_tests_cache = collections.OrderedDict()


def send(fd, obj):
    data = json.dumps(obj).encode()
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def recv(fd, deadline=None):
    """One message, or None on end of file, on a garbled message or when ``deadline`` passes."""
    header = read_exact(fd, _HEADER.size, deadline)
    body = read_exact(fd, _HEADER.unpack(header)[0], deadline) if header else None
    try:
        return json.loads(body) if body is not None else None
    except ValueError:
        return None


def read_exact(fd, n, deadline=None):
    chunks = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class Run:
    """What one child did: exit status, captured (capped) output, result-pipe lines, timing."""

    def __init__(self):
        self.status = None
        self.timed_out = False
        self.stdout = b""
        self.stderr = b""
        self.messages = []
        self.duration = 0.0

    @property
    def signal(self):
        return os.WTERMSIG(self.status) if self.status is not None and os.WIFSIGNALED(self.status) else None

    @property
    def exit_code(self):
        return os.WEXITSTATUS(self.status) if self.status is not None and os.WIFEXITED(self.status) else None

    def describe_end(self):
        if self.timed_out or self.signal in (signal.SIGXCPU,):
            return "timed out"
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exited with status {self.exit_code}"


def kill_everyone_else():
    """SIGKILL every process of this pid namespace but pid 1 (bwrap) and this worker."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:  # reap our own children; orphans are reaped by pid 1
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _limit(res, value):
    resource.setrlimit(res, (value, value))


def _enter_child(uid, limits, fresh, stdin, out_w, err_w, res_w):
    """In the forked child: plumb fds, set limits, drop privileges, optionally wipe scratch."""
    os.setsid()
    if stdin:
        fd = os.memfd_create("stdin")
        os.write(fd, stdin)
        os.lseek(fd, 0, os.SEEK_SET)
    else:
        fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(fd, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    if res_w is not None:
        os.dup2(res_w, 3)
    os.closerange(4 if res_w is not None else 3, 1 << 16)
    mb = 1 << 20
    _limit(resource.RLIMIT_AS, limits["memory_mb"] * mb)
    _limit(resource.RLIMIT_CPU, int(limits["timeout"]) + 1)
    _limit(resource.RLIMIT_NPROC, limits["max_processes"])
    _limit(resource.RLIMIT_FSIZE, limits["file_mb"] * mb)
    _limit(resource.RLIMIT_NOFILE, 256)
    _limit(resource.RLIMIT_CORE, 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if fresh:
        for top in SCRATCH_DIRS:
            _wipe(top)
    os.chdir(SCRATCH_DIRS[0])


# Read-only binds that may sit below a scratch dir (a venv in a checkout under /tmp): never wiped.
_KEEP = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)))}


def _wipe(top):
    import shutil

    for entry in os.scandir(top):
        if entry.path in _KEEP:
            continue
        if any(keep.startswith(entry.path + "/") for keep in _KEEP):
            _wipe(entry.path)  # a parent of a bind: empty it around the bind
        elif entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def run_child(uid, limits, target, *, fresh=False, stdin=b"", env=None, result_pipe=False):
    """Fork a limited child running ``target`` (argv list to exec, or a callable of the result fd).

    Returns a ``Run``. The wall-clock limit is ``limits["timeout"]``; on expiry the whole namespace
    but this worker is killed.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe() if result_pipe else (None, None)
    watch_res = res_r is not None and not _grow_pipe(res_r, RESULT_PIPE_BYTES)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            _enter_child(uid, limits, fresh, stdin, out_w, err_w, res_w)
        except BaseException as exc:  # noqa: BLE001 - report anything before the program ran
            try:
                os.write(2, f"sandbox child setup failed: {exc!r}\n".encode())
            finally:
                os._exit(127)
        try:
            if callable(target):
                target(3)
                os._exit(0)
            os.execve(target[0], target, env or {})
        except BaseException:  # noqa: BLE001 - the program's own error, reported on its stderr
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
    for fd in (out_w, err_w, res_w):
        if fd is not None:
            os.close(fd)
    run = Run()
    cap = limits["max_output"]
    buffers = {out_r: bytearray(), err_r: bytearray()}
    if res_r is not None:
        buffers[res_r] = bytearray()
    pidfd = os.pidfd_open(pid)
    deadline = start + limits["timeout"]
    open_fds = set(buffers)
    exited = False
    next_res_drain = start + RESULT_DRAIN_S
    while not exited:
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            run.timed_out = True
            break
        # The result pipe (when grown) is not watched: the child's result lines do not wake us. It is
        # read after the run, and every RESULT_DRAIN_S while a long run goes on.
        lazy_res = not watch_res and res_r in open_fds
        if lazy_res and now >= next_res_drain:
            _drain_ready(res_r, buffers, open_fds, 1 << 20)
            next_res_drain = now + RESULT_DRAIN_S
        watched = [fd for fd in open_fds if fd != res_r or watch_res]
        wait = min(left, max(0.0, next_res_drain - now)) if lazy_res else left
        ready, _, _ = select.select([pidfd, *watched], [], [], wait)
        for fd in ready:
            if fd == pidfd:
                exited = True
            else:
                _drain(fd, buffers, open_fds, cap if fd != res_r else 1 << 20)
    run.duration = time.monotonic() - start
    if exited:
        _, run.status = os.waitpid(pid, 0)
    kill_everyone_else()
    if run.status is None:
        _, run.status = os.waitpid(pid, 0)
    end = time.monotonic() + 1.0
    while open_fds and time.monotonic() < end:  # all writers are dead: the rest is buffered
        ready, _, _ = select.select(list(open_fds), [], [], 0.05)
        for fd in ready:
            _drain(fd, buffers, open_fds, cap if fd != res_r else 1 << 20)
    for fd in [pidfd, *buffers]:
        os.close(fd)
    run.stdout, run.stderr = bytes(buffers[out_r]), bytes(buffers[err_r])
    if res_r is not None:
        run.messages = bytes(buffers[res_r]).decode("utf-8", "replace").splitlines()
    return run


def _grow_pipe(fd, size):
    """Make pipe ``fd`` hold ``size`` bytes; False when the kernel refuses (the pipe is then watched)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size) >= size
    except OSError:
        return False


def _drain_ready(fd, buffers, open_fds, cap):
    """Read what ``fd`` holds now, without blocking (at most a full pipe: a fast writer cannot hold us)."""
    for _ in range(RESULT_PIPE_BYTES // 65536 + 1):
        if fd not in open_fds or not select.select([fd], [], [], 0)[0]:
            return
        _drain(fd, buffers, open_fds, cap)


def _drain(fd, buffers, open_fds, cap):
    data = os.read(fd, 65536)
    if not data:
        open_fds.discard(fd)
        return
    buf = buffers[fd]
    if len(buf) < cap:
        buf += data[: cap - len(buf)]


# ---------------------------------------------------------------- Python checks (in the child)


def compiled_tests(source):
    """The test program compiled by the worker, cached by source; None when it does not compile.

    The tests are input data (the host has already parsed and rewritten them), never the program
    under test, so compiling them here is safe; it saves every child the compile and its page
    copies. A source that does not compile is left to the child, which reports the error as before.
    """
    if len(source) > TESTS_CACHE_MAX_CHARS:
        return None
    code = _tests_cache.get(source)
    if code is not None:
        _tests_cache.move_to_end(source)
        return code
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = compile(source, "<tests>", "exec")
    except Exception:  # noqa: BLE001 - the child compiles again and reports it
        return None
    _tests_cache[source] = code
    while len(_tests_cache) > TESTS_CACHE_SIZE:
        _tests_cache.popitem(last=False)
    return code


# Frame and object-graph introspection would let a program find the harness's secret (the nonce that
# marks "every test ran") and report success itself. The child blocks every way Python hands out a
# frame or walks the heap; ValueError is what the stdlib expects when no frame is available
# (namedtuple, enum, typing and logging fall back), so ordinary programs keep working.
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
_BLOCKED_EVENTS = frozenset({"sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile",
                             "gc.get_objects", "gc.get_referrers", "gc.get_referents", "ctypes.dlopen"})
_BLOCKED_IMPORTS = frozenset({"ctypes", "_ctypes", "_signal", "signal"})


def _introspection_guard(event, args):
    if event in _BLOCKED_EVENTS or (event == "object.__getattr__" and args[1] in _FRAME_ATTRS):
        raise ValueError(f"{event} is not available in the sandbox")
    if event == "import" and args[0] in _BLOCKED_IMPORTS:
        raise ImportError(f"module {args[0]!r} is not available in the sandbox")
    if event == "open" and isinstance(args[0], (str, bytes)):
        path = os.fsdecode(args[0])
        if path.startswith("/proc/") and (path.endswith("/mem") or "/map_files" in path):  # raw memory
            raise PermissionError(f"{path}: not available in the sandbox")


def guard_introspection():
    """Install the guard (audit hooks cannot be removed) and take away Python signal handlers, which receive frames."""
    import _signal

    original = _signal.signal

    def no_handlers(signum, handler):
        if callable(handler):  # SIG_IGN / SIG_DFL stay possible: they hand out no frame
            raise ValueError("signal handlers are not available in the sandbox")
        return original(signum, handler)

    _signal.signal = no_handlers  # signal.signal calls it by attribute
    sys.addaudithook(_introspection_guard)


def python_tests_target(req, nonce):
    """The harness of an assert-based check, run in the child; writes its result lines on fd 3."""
    tests_code = compiled_tests(req["tests"])

    def harness(fd):
        write, exit_, dumps = os.write, os._exit, json.dumps

        def emit(line):
            write(fd, (line + "\n").encode())

        def failure(exc):
            return dumps({"type": type(exc).__name__, "msg": _one_line(exc)})

        solution = _compile_solution(req["code"], emit)
        tests = tests_code or compile(req["tests"], "<tests>", "exec")
        namespace = {"__name__": "__solution__", "__builtins__": __builtins__}
        guard_introspection()
        try:
            exec(solution, namespace)
        except BaseException as exc:  # noqa: BLE001 - the program's failure is a result
            emit("E " + failure(exc))
            emit("D " + nonce)
            exit_(0)
        hooks = {req["pass_hook"]: lambda: emit("P"), req["fail_hook"]: lambda exc: emit("F " + failure(exc))}
        test_ns = dict(namespace, __name__="__tests__", **hooks)
        try:
            exec(tests, test_ns)
            entry = req.get("entry_point")
            if entry and callable(test_ns.get("check")) and req.get("call_check"):
                test_ns["check"](test_ns[entry] if entry in test_ns else namespace[entry])
        except BaseException as exc:  # noqa: BLE001
            emit("E " + failure(exc))
        emit("D " + nonce)
        exit_(0)

    return harness


def _compile_solution(code, emit):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = compile(code, "<solution>", "exec")
        except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
            emit("S " + json.dumps(_syntax_line(exc)))
            os._exit(0)
    emit("C " + ("1" if any(issubclass(w.category, SyntaxWarning) for w in caught) else "0"))
    return obj


def python_stdio_target(code):
    def harness(fd):
        def emit(line):
            os.write(fd, (line + "\n").encode())

        solution = _compile_solution(code, emit)
        try:
            exec(solution, {"__name__": "__main__", "__builtins__": __builtins__})
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise
        sys.stdout.flush()
        os._exit(0)

    return harness


def pytest_target(req, nonce):
    def harness(fd):
        def emit(line):
            os.write(fd, (line + "\n").encode())

        _compile_solution(req["code"], emit)
        with open("solution.py", "w") as fh:
            fh.write(req["code"])
        with open("test_solution.py", "w") as fh:
            fh.write("from solution import *  # noqa\n" + req["tests"])

        class Collector:
            def pytest_collection_finish(self, session):
                emit(f"N {len(session.items)}")

            def pytest_runtest_logreport(self, report):
                if report.when == "call" and report.passed:
                    emit("P")
                elif report.failed:
                    kind = "AssertionError" if "AssertionError" in str(report.longrepr) else "Error"
                    emit("F " + json.dumps({"type": kind, "msg": _last_error_line(str(report.longrepr))}))

        import pytest

        code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "test_solution.py"],
                           plugins=[Collector()])
        if code in (0, 1):
            emit("D " + nonce)
        else:
            emit("E " + json.dumps({"type": "PytestError", "msg": f"pytest exited with status {int(code)}"}))
        sys.stdout.flush()
        os._exit(0)

    return harness


def _one_line(exc):
    name = type(exc).__name__
    try:  # the exception object comes from the program: its __str__ may itself fail
        text = str(exc).strip().splitlines()
    except BaseException:  # noqa: BLE001
        return name
    return f"{name}: {text[0]}"[:300] if text and text[0] else name


def _syntax_line(exc):
    line = getattr(exc, "lineno", None)
    return f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}" + (f" (line {line})" if line else "")


def _last_error_line(text):
    lines = [x.strip() for x in text.splitlines() if x.strip().startswith("E ")]
    return (lines[0][2:].strip() if lines else text.strip().splitlines()[-1] if text.strip() else "failed")[:300]


# ---------------------------------------------------------------- judging


def judge_python(run, nonce, units):
    """Verdict of an assert-based Python check from its result lines (never from exit codes)."""
    passed, failures, compiled, warn, done = 0, [], False, False, False
    for line in run.messages:
        tag, _, rest = line.partition(" ")
        if tag == "S":
            return {"verdict": "SYNTAX_ERROR", "passed": 0, "total": units, "detail": json.loads(rest), "warnings": False}
        if tag == "C":
            compiled, warn = True, rest == "1"
        elif tag == "N":
            units = int(rest) if rest.isdigit() else units
        elif tag == "P":
            passed += 1
        elif tag in ("F", "E"):
            failures.append((tag, _loads(rest)))
        elif tag == "D" and rest == nonce:
            done = True
    total = units
    passed = min(passed, total)
    out = {"passed": passed, "total": total, "warnings": warn}
    if not compiled:
        return dict(out, verdict="RUNTIME_ERROR", detail=_first_line(run.stderr) or f"sandbox child {run.describe_end()}")
    if run.timed_out or run.signal == signal.SIGXCPU:
        return dict(out, verdict="TIMEOUT", detail=f"timed out after {run.duration:.1f}s")
    if failures:
        tag, info = failures[0]
        verdict = "WRONG_OUTPUT" if info.get("type") == "AssertionError" else "RUNTIME_ERROR"
        return dict(out, verdict=verdict, detail=info.get("msg", ""))
    if not done:
        why = _first_line(run.stderr) or f"program {run.describe_end()} before the tests finished"
        return dict(out, verdict="RUNTIME_ERROR", detail=why)
    return dict(out, passed=total, verdict="SUCCESS", detail="")


def _loads(text):
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else {"msg": str(value)}
    except ValueError:
        return {"msg": text[:300]}


def _first_line(data):
    """The first error line of captured stderr (the last line of a Python traceback)."""
    lines = [x.strip() for x in data.decode("utf-8", "replace").splitlines() if x.strip()]
    if lines and lines[0].startswith("Traceback"):
        lines.reverse()
    return lines[0][:300] if lines else ""


def same_output(got, want):
    """Compare program output with the expected output, ignoring trailing white space."""

    def norm(text):
        lines = [x.rstrip() for x in text.replace("\r\n", "\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    return norm(got.decode("utf-8", "replace")) == norm(want)


def run_cases(uid, limits, cases, make_target, env=None, result_pipe=False, fresh=True):
    """Run the program once per stdin/stdout case; the first failure decides the verdict."""
    passed, first = 0, None
    for case in cases or [None]:
        stdin = (case or {}).get("input", "").encode()
        run = run_child(uid, limits, make_target(), fresh=fresh, stdin=stdin, env=env, result_pipe=result_pipe)
        fresh = False
        syntax = [m for m in run.messages if m.startswith("S ")]
        if syntax:
            return {"verdict": "SYNTAX_ERROR", "passed": 0, "total": len(cases), "detail": json.loads(syntax[0][2:])}
        if run.timed_out or run.signal == signal.SIGXCPU:
            outcome = ("TIMEOUT", f"timed out after {run.duration:.1f}s")
        elif run.status != 0:
            outcome = ("RUNTIME_ERROR", _first_line(run.stderr) or f"program {run.describe_end()}")
        elif case is not None and not same_output(run.stdout, case.get("output", "")):
            outcome = ("WRONG_OUTPUT", f"wrong output for input {stdin[:60]!r}: got {run.stdout[:60]!r}")
        else:
            passed += 1
            continue
        first = first or outcome
    total = len(cases)
    if first:
        return {"verdict": first[0], "passed": passed, "total": total, "detail": first[1]}
    return {"verdict": "SUCCESS", "passed": passed, "total": total, "detail": ""}


# ---------------------------------------------------------------- requests


def handle(req, uid):
    limits = req["limits"]
    kind = req["kind"]
    nonce = os.urandom(16).hex()
    if kind == "python":
        run = run_child(uid, limits, python_tests_target(req, nonce), fresh=True, result_pipe=True)
        return judge_python(run, nonce, req["units"])
    if kind == "pytest":
        run = run_child(uid, limits, pytest_target(req, nonce), fresh=True, result_pipe=True)
        return judge_python(run, nonce, 0)
    if kind == "python_stdio":
        out = run_cases(uid, limits, req["cases"], lambda: python_stdio_target(req["code"]), result_pipe=True)
        return dict(out, warnings=False)
    if kind == "native":
        return handle_native(req, uid, limits)
    raise ValueError(f"unknown request kind {kind!r}")


def handle_native(req, uid, limits):
    comp = req["compile"]
    env = req["env"]
    source = req["code"].encode()

    def write_source(fd):
        with open(comp["source"], "wb") as fh:
            fh.write(source)
        os.execve(comp["argv"][0], comp["argv"], env)

    climits = dict(limits, timeout=comp["timeout"], memory_mb=comp["memory_mb"], max_processes=comp["max_processes"])
    run = run_child(uid, climits, write_source, fresh=True)
    text = (run.stderr + run.stdout).decode("utf-8", "replace")
    if run.timed_out or run.status != 0:
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        errors = [x for x in lines if "error" in x.lower()] or lines
        detail = errors[0] if errors else f"compiler {run.describe_end()}"
        if run.timed_out or run.signal is not None:
            detail = f"compilation exceeded its limits ({run.describe_end()}): {detail}"
        return {"verdict": "SYNTAX_ERROR", "passed": 0, "total": len(req["cases"]), "detail": detail[:300],
                "warnings": False}
    warn = any(marker in text for marker in comp["warning_markers"])
    out = run_cases(uid, limits, req["cases"], lambda: req["run"], env=env, fresh=False)
    return dict(out, warnings=warn)


def main():
    uid = int(sys.argv[1])
    channel_in, channel_out = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    if os.getpid() != 2 or uid == 0:  # kill(-1) is only safe inside bwrap's private pid namespace
        send(channel_out, {"error": f"worker is not alone in a private pid namespace (pid {os.getpid()}, uid {uid})"})
        return 1
    for name in WARM_IMPORTS:
        __import__(name)
    import gc

    gc.freeze()  # a child's garbage collections never walk (and so copy) the worker's own objects

    send(channel_out, {"ready": True, "pid": os.getpid()})
    while True:
        req = recv(channel_in)
        if req is None:
            return 0
        start = time.monotonic()
        try:
            result = handle(req, uid)
        except Exception as exc:  # noqa: BLE001 - reported to the host as infrastructure
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["duration_s"] = time.monotonic() - start
        send(channel_out, result)


if __name__ == "__main__":
    sys.exit(main())
