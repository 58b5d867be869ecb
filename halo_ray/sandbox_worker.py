"""The processes inside one bubblewrap sandbox; standard library only, started by path.

Three kinds of process live in a sandbox, and the program under test only ever runs in the last:

* the **zygote** (pid 1 of the sandbox's pid namespace, ``bwrap --as-pid-1``; no signal from inside
  reaches it, and it reaps orphans): imports the warm modules and never reads a request. It
  forks the judge once at start, then, on the judge's command, forks one **untrusted child** per
  program run, reports the child's exit status, kills the check's children and reaps orphans. Its
  loop is small and speaks in a few bytes, since every page it writes after a fork is copied again.
  Children are therefore forked from a process that never held tests, expected outputs or another
  problem's data.
* the **judge** (forked from the zygote before any request): owns the host channel (length-prefixed
  JSON on its stdin/stdout), holds the tests and expected outputs, runs the tests with pristine
  builtins and modules, and decides the verdict. It never runs a byte of the program. After every
  check it kills every process that is neither the zygote nor its own and wipes scratch
  (``/scratch``, ``/tmp``, ``/dev/shm``).
* the **untrusted child**: drops to the sandbox's unprivileged uid (as root) or stays the
  namespace's only uid (rootless), sets rlimits, joins the check's cgroup when there is one, closes
  every fd but its own, and then runs the program: Python in-process, a compiler or binary by exec.

The call boundary (Python asserts, HumanEval, MBPP, class-based problems, pytest files). The
child executes the program and sends the judge the names it defined at top level. The judge binds
each name in the tests' namespace: a plain value as itself, anything else (functions, classes,
objects) as a ``Remote`` handle. Calling a handle, reading one of its attributes, iterating it,
``len``/``[]``/``in``/``str``/``repr``/``bool`` on it are requests to the child; its answer comes
back as plain data decoded by the judge with limits (frame size, depth, node count): ``None``,
``bool``, ``int``, ``float``, ``str``, ``bytes``, ``bytearray``, ``complex``, ``list``, ``tuple``,
``dict``, ``set``, ``frozenset`` of exact type (a tuple stays a tuple, a bool is not an int; the
child sends subclasses of these, namedtuples and Counters included, as their base type), or a new
handle for anything else. A handle is equal only to itself, so an object whose ``__eq__`` is always
true is a wrong answer. Arguments cross the other way the same way (plain data and handles). An
exception raised by the program reaches the tests as ``RemoteError`` (also an instance of the
builtin exception of that name, except AssertionError and the non-Exception ones); a unit that
fails on it is a RUNTIME_ERROR, a unit whose own assertion fails is WRONG_OUTPUT: the class comes
from where the failure happened, never from the exception's name. Bytes from the child that break
the protocol make the check a RUNTIME_ERROR. Round trips are saved by speculation: the calls that
straight-line tests will make with literal arguments travel with the program, the child answers them
in order right after loading, and the judge uses an answer only while the tests make exactly that
call next (``speculation_plan``; on any difference a fresh child replays the calls used so far).
What stays outside the boundary: helpers that the
tests call and the program defines (HumanEval's ``poly``, ``encode_cyclic``) are the program's
own; in-place mutation of an argument is not seen by the tests.

stdin/stdout cases and compiled languages: the child gets its input (a memfd) and the command, the
judge reads its output and compares it with the expected output, which the child never sees.

pytest files: the judge forks a sub-judge that runs pytest itself (``-p no:cacheprovider
--noconftest -c /dev/null``, plugin autoload off) on the test file; the program's names are bound
into the test module as handles once collection finishes; a check succeeds only if every collected
test passed (skips, errors and zero tests are not success).

Limits: rlimits per process (address space, CPU, file size, open files, processes per uid) and,
where the host could make one, a cgroup per worker that limits memory and processes of the check
as a whole (``run`` for programs, ``compile`` for compilers). Without a cgroup the judge watches the
check's processes (RSS and count, every ``WATCHDOG_S``) and kills them past the limits: weaker, since
a burst between two looks is not seen. Cleaning happens after the verdict is known and before the
next request is read, so it is never charged to a check; a worker whose scratch cannot be proven
empty (or that holds SysV IPC objects) tells the host to replace it.
"""

import builtins
import fcntl
import json
import marshal
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time

SCRATCH_DIRS = ("/scratch", "/tmp")
WIPE_DIRS = ("/scratch", "/tmp", "/dev/shm", "/judge")
# Imported once by the zygote so that checks do not pay for them (`from typing import List` alone
# costs a fresh child about 8 ms). Not `random` (nor `statistics`, which imports it): its at-fork
# reseed would cost every child ~0.15 ms, and programs rarely import it (the tests do, in the judge).
# Nor `shutil` (zlib, bz2, lzma), `hashlib` (libcrypto) or `decimal`/`fractions`: every shared library
# mapped makes every fork and exit dearer (157 mappings -> 105 made a check about 6% cheaper).
WARM_IMPORTS = ("traceback", "warnings", "typing", "math", "re", "collections", "itertools", "functools",
                "heapq", "bisect", "string", "copy")
_HEADER = struct.Struct(">I")
_PAIR = struct.Struct(">ii")
# judge -> zygote: spawn (cgroup name, NUL, the spec in marshal's format; with the child's fds), clean, reap, standby;
# zygote -> judge: pid (with the pid), exit (pid and wait status), and clean and reap as replies
ZYGOTE_SPAWN, ZYGOTE_CLEAN, ZYGOTE_REAP, ZYGOTE_STANDBY, ZYGOTE_PID, ZYGOTE_EXIT = b"S", b"C", b"R", b"B", b"P", b"E"
HOST_MAX_FRAME = 64 << 20  # a request (code, tests, cases) from the host
RPC_MAX_FRAME = 16 << 20  # one answer of the untrusted child
MAX_DEPTH = 64  # nesting of a value crossing the boundary
MAX_NODES = 1_000_000  # values in one answer
MAX_HEX_DIGITS = 1 << 20  # a big int crosses as hex (linear to decode); larger is a protocol error
JUDGE_COMPILE_MAX = 64 << 10  # programs up to this many characters are compiled by the judge (_start_python)
TESTS_CACHE_SIZE = 1024  # compiled tests kept by the judge (a benchmark cycles through a few hundred problems)
# Modules the judge imports (its own pristine copy) when the program bound one to a name the tests
# may use (MBPP tests call `math.isclose` after the solution's `import math`); never one with side
# effects at import.
JUDGE_MODULES = frozenset({"math", "cmath", "re", "collections", "itertools", "functools", "heapq", "bisect",
                           "string", "hashlib", "random", "copy", "fractions", "statistics", "decimal", "typing",
                           "operator", "datetime", "time", "array", "numbers", "textwrap", "unicodedata", "json"})
CLEAN_BUDGET_S = 10.0  # cleaning that takes longer proves nothing: the worker is replaced
WATCHDOG_S = 0.02
JUDGE_GRACE_S = 2.0  # the tests' own code may run this long past the check's limit


class ProtocolError(Exception):
    """Bytes that do not follow the protocol (from the untrusted side: a verdict, never a crash)."""


# ---------------------------------------------------------------- framing


def send(fd, obj):
    data = json.dumps(obj).encode()
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def recv(fd, deadline=None, max_bytes=HOST_MAX_FRAME, decode=None):
    """One message; None on end of file or when ``deadline`` passes; ProtocolError on garbage.

    ``decode``: ``marshal.loads`` for what the judge sends its child (trusted bytes, and a child that never
    touches the JSON decoder copies fewer of the zygote's pages); JSON by default."""
    header = read_exact(fd, _HEADER.size, deadline)
    if header is None:
        return None
    size = _HEADER.unpack(header)[0]
    if size > max_bytes:
        raise ProtocolError(f"a message of {size} bytes (at most {max_bytes})")
    body = read_exact(fd, size, deadline)
    if body is None:
        return None
    return (decode or loads)(body)


def loads(body):
    try:
        return json.loads(body)
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ProtocolError(f"undecodable message ({type(exc).__name__})") from None


def read_exact(fd, n, deadline=None):
    chunks = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class FrameReader:
    """Frames from a hostile fd, read as they come (never blocks past the caller's deadline)."""

    def __init__(self, fd, max_bytes=RPC_MAX_FRAME):
        self.fd, self.max_bytes, self.buf, self.eof = fd, max_bytes, bytearray(), False

    def frame(self):
        """A complete frame's body if buffered, else None; ProtocolError on an oversized header."""
        if len(self.buf) < 4:
            return None
        size = _HEADER.unpack_from(self.buf)[0]
        if size > self.max_bytes:
            raise ProtocolError(f"a frame of {size} bytes (at most {self.max_bytes})")
        if len(self.buf) < 4 + size:
            return None
        body = bytes(self.buf[4:4 + size])
        del self.buf[:4 + size]
        return body

    def feed(self):
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
        self.buf += data
        if len(self.buf) > self.max_bytes + 4:
            raise ProtocolError("the child sent more than one frame's worth of bytes")


# ---------------------------------------------------------------- values across the boundary

_PLAIN = (type(None), bool, int, float, str)


def encode(value, handle, depth=0):
    """Plain data for ``value`` (the child's side; generous: subclasses become their base type)."""
    t = type(value)
    if t in _PLAIN:
        if t is int and value.bit_length() > 4000:
            return ["x", format(value, "x")]
        return value
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply to cross the sandbox boundary")
    d = depth + 1
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return encode(int.__int__(value), handle, d)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return ["l", *[encode(v, handle, d) for v in list.__iter__(value)]]
    if isinstance(value, tuple):
        return ["t", *[encode(v, handle, d) for v in tuple.__iter__(value)]]
    if isinstance(value, dict):
        out = ["d"]
        for k, v in dict.items(value):
            out += [encode(k, handle, d), encode(v, handle, d)]
        return out
    if isinstance(value, frozenset):
        return ["f", *[encode(v, handle, d) for v in frozenset.__iter__(value)]]
    if isinstance(value, set):
        return ["s", *[encode(v, handle, d) for v in set.__iter__(value)]]
    if isinstance(value, bytes):
        return ["b", bytes.hex(value)]
    if isinstance(value, bytearray):
        return ["B", bytearray.hex(value)]
    if isinstance(value, complex):
        return ["c", complex.__complex__(value).real, complex.__complex__(value).imag]
    return handle(value)


class _Budget:
    __slots__ = ("nodes",)

    def __init__(self):
        self.nodes = MAX_NODES


def decode(x, remote, budget=None, depth=0):
    """Exact builtin values from decoded JSON ``x`` (the judge's side; strict; ProtocolError else).

    ``remote(ref_id, type_name)`` makes a handle for ``["r", id, name]``.
    """
    if budget is None:
        budget = _Budget()
    budget.nodes -= 1
    if budget.nodes < 0:
        raise ProtocolError("a value with too many parts")
    t = type(x)
    if t in _PLAIN:
        return x
    if t is not list or not x or type(x[0]) is not str or depth > MAX_DEPTH:
        raise ProtocolError("a malformed value")
    tag, items, d = x[0], x[1:], depth + 1
    try:
        if tag == "l":
            return [decode(v, remote, budget, d) for v in items]
        if tag == "t":
            return tuple(decode(v, remote, budget, d) for v in items)
        if tag == "s":
            return {decode(v, remote, budget, d) for v in items}
        if tag == "f":
            return frozenset(decode(v, remote, budget, d) for v in items)
        if tag == "d":
            if len(items) % 2:
                raise ProtocolError("a malformed dict")
            return {decode(items[i], remote, budget, d): decode(items[i + 1], remote, budget, d)
                    for i in range(0, len(items), 2)}
        if tag in ("b", "B") and len(items) == 1 and type(items[0]) is str:
            data = bytes.fromhex(items[0])
            return data if tag == "b" else bytearray(data)
        if tag == "c" and len(items) == 2 and all(type(v) in (int, float) for v in items):
            return complex(items[0], items[1])
        if tag == "x" and len(items) == 1 and type(items[0]) is str and len(items[0]) <= MAX_HEX_DIGITS:
            return int(items[0], 16)
        if tag == "r" and len(items) == 2 and type(items[0]) is int and type(items[1]) is str:
            return remote(items[0], items[1][:100])
    except TypeError:  # an unhashable set member or dict key
        raise ProtocolError("an unhashable set member or dict key") from None
    except ValueError:
        raise ProtocolError("a malformed value") from None
    raise ProtocolError(f"a value of unknown kind {tag[:20]!r}")


# ---------------------------------------------------------------- the untrusted child


def _limit(res, value):
    resource.setrlimit(res, (value, value))


_PRCTL = []


def _prctl(*args):
    if not _PRCTL:
        import ctypes

        _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
    return _PRCTL[0](*args)


def _trim_heap():
    """Give back to the kernel the heap that importing left free (see ``sandbox.bwrap_argv``)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _set_no_new_privs():
    try:
        _prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    except Exception:  # noqa: BLE001 - best effort; the uid drop and caps are what matter
        pass


def set_undumpable():
    """PR_SET_DUMPABLE 0: a same-uid process can neither ptrace us nor open our /proc fds or memory."""
    if _prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        import ctypes

        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _warm_up():
    """Pay the first-use costs of compiling, running and encoding once in the zygote, not per child
    (a fresh child's first compile with warnings recorded costs ~1 ms; after this, ~0.1 ms)."""
    import warnings

    code = "def g(a, b=2):\n    return [a + i for i in range(b)], {'k': (a, 1.5)}\nclass C:\n    pass\n"
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ns = {"__builtins__": builtins}
        exec(compile(code, "<warm>", "exec"), ns)
    json.loads(json.dumps(encode(ns["g"](1), lambda v: ["r", 0, "x"])))


def child_main(cfg, spec, fds, joined=False):
    """In the forked child (never returns): plumbing, limits, privileges, then the first command.

    ``spec``: the judge's spawn spec in marshal's format (decoded here, so that the zygote never parses it)."""
    try:
        spec = marshal.loads(spec)
        if not joined:
            os.setsid()
            for cg in cfg["cgroups"].get(spec.get("cgroup") or "", ()):
                os.write(cg, b"0")  # join the check's cgroups before anything runs (and before fds move)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # out of the way of 0-4
        cmd_r, res_w, stdin, out_w, err_w = high
        for src, dst in ((stdin, 0), (out_w, 1), (err_w, 2), (cmd_r, 3), (res_w, 4)):
            os.dup2(src, dst)
        os.closerange(5, 1 << 16)
        limits = spec["limits"]
        mb = 1 << 20
        _limit(resource.RLIMIT_AS, int(limits["memory_mb"]) * mb)
        _limit(resource.RLIMIT_CPU, int(limits["timeout"]) + 1)
        _limit(resource.RLIMIT_NPROC, int(limits["max_processes"]))
        _limit(resource.RLIMIT_FSIZE, int(limits["file_mb"]) * mb)
        _limit(resource.RLIMIT_NOFILE, 256)
        _limit(resource.RLIMIT_CORE, 0)
        uid = cfg["uid"]
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        os.chdir(SCRATCH_DIRS[0])
    except BaseException as exc:  # noqa: BLE001 - before the program ran: report and stop
        try:
            os.write(2, f"sandbox child setup failed: {exc!r}\n".encode())
        finally:
            os._exit(127)
    try:
        cmd = recv(3, max_bytes=HOST_MAX_FRAME, decode=marshal.loads)
        if not cmd:
            os._exit(0)
        op = cmd[0]
        if op == "python":
            _serve_python(cmd[1], cmd[2] if len(cmd) > 2 else [])
        elif op == "script":
            _run_script(cmd[1])
        elif op == "exec":
            _, argv, env, files = cmd
            for path, text in files.items():
                with open(path, "wb") as fh:
                    fh.write(text.encode())
            os.execve(argv[0], argv, env)
    except BaseException:  # noqa: BLE001 - the program's own error, on its stderr
        try:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(1)
    os._exit(0)


def compile_program(code):
    """(code object, had SyntaxWarning); raises what ``compile`` raises on a bad program."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = compile(code, "<solution>", "exec")
    return obj, any(issubclass(w.category, SyntaxWarning) for w in caught)


COMPILE_ERRORS = (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError)


def syntax_detail(exc):
    line = getattr(exc, "lineno", None)
    return f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}" + (f" (line {line})" if line else "")


def _compile(code):
    """In the child: (code object, had SyntaxWarning), or sends the syntax error on fd 4 and exits."""
    try:
        return compile_program(code)
    except COMPILE_ERRORS as exc:
        send(4, ["syntax", syntax_detail(exc)])
        os._exit(0)


def _one_line(exc):
    name = type(exc).__name__
    try:  # the exception object comes from the program: its __str__ may itself fail
        text = str(exc).strip().splitlines()
    except BaseException:  # noqa: BLE001
        return name
    return f"{name}: {text[0]}"[:300] if text and text[0] else name


def _serve_python(code, plan=()):
    """The child's side of the call boundary: run the program, answer the planned calls, then the
    judge's requests. ``code``: the program's source, or its code object when the judge compiled it."""
    obj, warned = _compile(code) if type(code) is str else (code, False)
    table, next_id = {}, [0]

    def handle(value):
        next_id[0] += 1
        table[next_id[0]] = value
        return ["r", next_id[0], type(value).__name__]

    def arg(x):
        if type(x) is list and x and x[0] == "r" and len(x) == 2:
            return table[x[1]]
        if type(x) is list and x and x[0] == "n" and len(x) == 2:
            return getattr(builtins, x[1])
        if type(x) is list and x:
            tag, items = x[0], x[1:]
            conv = [arg(v) for v in items] if tag not in ("b", "B", "x", "c") else items
            return {"l": list, "t": tuple, "s": set, "f": frozenset}.get(tag, lambda v: v)(conv) if tag in "ltsf" else (
                dict(zip(conv[::2], conv[1::2])) if tag == "d" else bytes.fromhex(items[0]) if tag == "b" else
                bytearray.fromhex(items[0]) if tag == "B" else complex(*items) if tag == "c" else int(items[0], 16))
        return x

    def exc_reply(exc):
        return ["exc", type(exc).__name__[:100], _one_line(exc)]

    namespace = {"__name__": "__solution__", "__builtins__": builtins}
    try:
        exec(obj, namespace)
    except BaseException as exc:  # noqa: BLE001 - the program's failure is a result
        send(4, exc_reply(exc))
        os._exit(0)
    names = {}
    for name, value in list(namespace.items()):
        if name.startswith("__") or type(value).__name__ == "module":
            if type(value).__name__ == "module" and not name.startswith("__"):
                names[name] = ["m", getattr(value, "__name__", "")]
            continue
        small = type(value) in _PLAIN or (isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) < 1000)
        try:
            names[name] = encode(value, handle) if small else handle(value)
        except Exception:  # noqa: BLE001
            names[name] = handle(value)
    send(4, ["loaded", warned, names])
    for name, args, kwargs in plan:
        try:
            result = namespace[name](*[arg(a) for a in args], **{k: arg(v) for k, v in kwargs.items()})
            reply = ["ok", encode(result, handle)]
        except BaseException as exc:  # noqa: BLE001
            reply = exc_reply(exc)
        send(4, reply)
    ops = {"len": len, "repr": repr, "str": str, "bool": bool, "iter": list}
    while True:
        req = recv(3, max_bytes=HOST_MAX_FRAME, decode=marshal.loads)
        if req is None:
            os._exit(0)
        try:
            op, target = req[0], table[req[1]]
            if op == "call":
                result = target(*[arg(a) for a in req[2]], **{k: arg(v) for k, v in req[3].items()})
            elif op == "getattr":
                result = getattr(target, req[2])
            elif op == "setattr":
                result = setattr(target, req[2], arg(req[3]))
            elif op == "getitem":
                result = target[arg(req[2])]
            elif op == "contains":
                result = arg(req[2]) in target
            else:
                result = ops[op](target)
            reply = ["ok", encode(result, handle)]
        except BaseException as exc:  # noqa: BLE001 - raised by the program (or a bad request)
            reply = exc_reply(exc)
        send(4, reply)


def _run_script(code):
    """stdin/stdout mode: the program as ``__main__``; a clean ``sys.exit`` is a normal end."""
    obj, _ = _compile(code)
    send(4, ["compiled"])
    try:
        exec(obj, {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    sys.stdout.flush()
    os._exit(0)


# ---------------------------------------------------------------- the zygote


def _standby_main(cfg, link):
    """A child forked ahead of its check (off the check's critical path): session and ``run`` cgroup
    joined, it waits for the judge's fds and spec, then goes on as ``child_main``."""
    try:
        os.setsid()
        for cg in cfg["cgroups"].get("run", ()):
            os.write(cg, b"0")
        data, fds, _, _ = socket.recv_fds(link, 1 << 16, 8)
    except BaseException:  # noqa: BLE001
        os._exit(127)
    if not data or len(fds) != 5:
        os._exit(0)
    link.close()
    child_main(cfg, data, fds, joined=True)


def zygote_main(cfg, sock):
    """Serve the judge: spawn children, report their exits, kill them and reap orphans for a clean.

    The zygote's messages are a few bytes (``ZYGOTE_*``), never JSON: every page the zygote writes after a
    fork is copied once more, so its loop is kept small; the cleaning itself (``clean``) runs in the
    judge. One child of the ``run`` cgroup is kept forked ahead (the standby) once the judge says the
    check is clean, so that the next check does not wait for the fork; it never outlives a clean.
    """
    children = {}  # pid -> pidfd
    standby = None  # (pid, pidfd, link)

    def fork_standby():
        link, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            sock.close()
            link.close()
            _standby_main(cfg, theirs)
        theirs.close()
        return pid, os.pidfd_open(pid), link

    def drop_standby():
        nonlocal standby
        if standby is not None:
            pid, pidfd, link = standby
            link.close()
            os.close(pidfd)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            standby = None

    def reap():
        while True:  # our children and the orphans (we are pid 1)
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    return
            except ChildProcessError:
                return

    standby = fork_standby()
    while True:
        watched = [sock, *children.values(), *([standby[1]] if standby else [])]
        ready, _, _ = select.select(watched, [], [])
        for fd in ready:
            if fd is sock:
                try:
                    data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 8)
                except OSError:
                    return 0
                if not data:
                    return 0
                op = data[:1]
                if op == ZYGOTE_SPAWN:
                    cgroup, _, spec = data[1:].partition(b"\0")
                    handed = False
                    if standby is not None and cgroup == b"run":
                        pid, pidfd, link = standby
                        try:
                            socket.send_fds(link, [spec], fds)
                            handed = True
                        except OSError:
                            pass
                        if handed:
                            link.close()
                            standby = None
                            children[pid] = pidfd
                        else:
                            drop_standby()
                    if not handed:
                        pid = os.fork()
                        if pid == 0:
                            sock.close()
                            child_main(cfg, spec, fds)
                        children[pid] = os.pidfd_open(pid)
                    for f in fds:
                        os.close(f)
                    sock.send(ZYGOTE_PID + _PAIR.pack(pid, 0))
                elif op == ZYGOTE_CLEAN:
                    for pid, pidfd in children.items():  # the check's own children first: the scan finds none
                        try:
                            os.kill(pid, signal.SIGKILL)
                            if select.select([pidfd], [], [], CLEAN_BUDGET_S)[0]:  # else the scan reports it
                                os.waitpid(pid, 0)
                        except (ProcessLookupError, ChildProcessError):
                            pass
                        os.close(pidfd)
                    children.clear()
                    drop_standby()
                    reap()
                    sock.send(ZYGOTE_CLEAN)
                elif op == ZYGOTE_REAP:
                    reap()
                    sock.send(ZYGOTE_REAP)
                elif op == ZYGOTE_STANDBY and standby is None and not children:
                    standby = fork_standby()  # while the judge answers the host
            elif standby is not None and fd == standby[1]:
                drop_standby()  # died before its check (killed by a program, as an ordinary user)
            else:
                pid = next((p for p, f in children.items() if f == fd), None)
                if pid is None:  # closed by a clean handled in this same round
                    continue
                os.close(children.pop(pid))
                try:
                    _, status = os.waitpid(pid, 0)
                except ChildProcessError:
                    status = -1
                sock.send(ZYGOTE_EXIT + _PAIR.pack(pid, status))


# ---------------------------------------------------------------- cleaning after a check (in the judge)


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None, None
    fields = data[data.rfind(b")") + 2:].split()
    return int(fields[1]), fields[0]


def kill_untrusted(deadline, reap_orphans):
    """In the judge: SIGKILL every process but pid 1 (the zygote) and the judge's own subtree; True when
    none is left. ``reap_orphans()`` has the zygote (pid 1) reap the killed processes that were its."""
    me = os.getpid()
    while time.monotonic() < deadline:
        parents = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                ppid, state = _ppid(int(name))
                if ppid is not None:
                    parents[int(name)] = (ppid, state)
        victims = []
        for pid, (ppid, state) in parents.items():
            if pid in (1, me):
                continue
            p, trusted = pid, False
            for _ in range(64):
                if p == me:
                    trusted = True
                    break
                if p not in parents or p in (0, 1):
                    break
                p = parents[p][0]
            if not trusted:
                victims.append(pid)
        if not victims:
            return True
        for pid in victims:  # zombies are reaped too: they count for pids.max
            if parents[pid][1] != b"Z":
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        time.sleep(0.0005)  # they die asynchronously
        reap_orphans()
    return False


def wipe(top, keep, deadline):
    """Empty directory ``top`` whatever its entries' permissions, depth or links; keeps ``keep`` paths.

    Depth-independent: a subdirectory is renamed up to ``top`` before it is emptied, so at most two
    directories are open at a time. Returns False when ``deadline`` passes first.
    """
    tfd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        pending = os.listdir(tfd)
        tag = os.urandom(4).hex()
        count = 0
        while pending:
            if time.monotonic() > deadline:
                return False
            name = pending.pop()
            path = f"{top}/{name}"
            if path in keep:
                continue
            if any(k.startswith(path + "/") for k in keep):
                if not wipe(path, keep, deadline):
                    return False
                continue
            try:
                st = os.lstat(name, dir_fd=tfd)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=tfd)
                continue
            try:
                os.rmdir(name, dir_fd=tfd)
                continue
            except OSError:
                pass
            os.chmod(name, 0o700, dir_fd=tfd)
            dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=tfd)
            try:
                for sub in os.listdir(dfd):
                    if time.monotonic() > deadline:
                        return False
                    if not stat.S_ISDIR(os.lstat(sub, dir_fd=dfd).st_mode):
                        os.unlink(sub, dir_fd=dfd)
                        continue
                    os.chmod(sub, 0o700, dir_fd=dfd)
                    while True:
                        count += 1
                        new = f".halo-wipe-{tag}-{count}"
                        try:
                            os.rename(sub, new, src_dir_fd=dfd, dst_dir_fd=tfd)
                            break
                        except FileExistsError:
                            continue
                        except OSError as exc:
                            if exc.errno in (39,):  # ENOTEMPTY: the name is taken by a full directory
                                continue
                            raise
                    pending.append(new)
            finally:
                os.close(dfd)
            os.rmdir(name, dir_fd=tfd)
        return True
    finally:
        os.close(tfd)


def clean(cfg, zygote):
    """In the judge, after the zygote killed the check's children: kill what the check left running, empty
    scratch; (True, "") only when provably clean."""
    deadline = time.monotonic() + CLEAN_BUDGET_S
    if not kill_untrusted(deadline, zygote.reap):
        return False, "processes of the check could not be killed"
    keep = set(cfg["keep"])
    for top in WIPE_DIRS:
        if not os.path.isdir(top):
            continue
        try:
            if not wipe(top, keep, deadline):
                return False, f"cleaning {top} took longer than {CLEAN_BUDGET_S:.0f}s"
        except OSError as exc:
            return False, f"cleaning {top} failed: {exc}"
        left = [e for e in os.listdir(top) if f"{top}/{e}" not in keep and not any(
            k.startswith(f"{top}/{e}/") for k in keep)]
        if left:
            return False, f"{top} is not empty after cleaning"
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as fh:
                if len(fh.read().splitlines()) > 1:
                    return False, f"the check left SysV {kind} objects"
        except OSError:
            pass
    return True, ""


# ---------------------------------------------------------------- the judge


class Zygote:
    """The judge's client of the zygote (the ``ZYGOTE_*`` messages)."""

    def __init__(self, sock):
        self.sock = sock
        self.exits = {}

    def _read(self):
        msg = self.sock.recv(64)
        if msg[:1] == ZYGOTE_EXIT and len(msg) == 1 + _PAIR.size:
            pid, status = _PAIR.unpack(msg[1:])
            self.exits[pid] = status
            return None
        if not msg:
            raise RuntimeError("the zygote is gone")
        return msg

    def _reply(self, kind):
        while True:
            msg = self._read()
            if msg is not None and msg[:1] == kind:
                return msg

    def spawn(self, spec, fds):
        cgroup = (spec.get("cgroup") or "").encode()
        socket.send_fds(self.sock, [ZYGOTE_SPAWN + cgroup + b"\0" + marshal.dumps(spec)], fds)
        return _PAIR.unpack(self._reply(ZYGOTE_PID)[1:])[0]

    def kill_children(self):
        """The zygote kills the check's children (its own) and reaps; the rest is ``clean``'s."""
        self.sock.send(ZYGOTE_CLEAN)
        self._reply(ZYGOTE_CLEAN)
        self.exits.clear()

    def reap(self):
        self.sock.send(ZYGOTE_REAP)
        self._reply(ZYGOTE_REAP)

    def standby(self):
        self.sock.send(ZYGOTE_STANDBY)

    def poll_exits(self):
        while select.select([self.sock], [], [], 0)[0]:
            if self._read() is not None:
                raise RuntimeError("the zygote broke its protocol")


class CheckTimeout(BaseException):
    """The check ran out of time (BaseException: the tests' ``except Exception`` does not hide it)."""


class RemoteError(Exception):
    """An exception raised by the program under test (its type name and message, as plain text)."""

    def __init__(self, type_name, message):
        super().__init__(message)
        self.type_name, self.message = type_name, message


class ChildGone(RemoteError):
    """The program's process ended, was killed, or broke the protocol."""


_REMOTE_CLASSES = {}


def remote_error(type_name, message):
    """A RemoteError that is also the builtin exception of that name (tests may catch ValueError)."""
    base = getattr(builtins, type_name, None) if type_name.isidentifier() else None
    if not (isinstance(base, type) and issubclass(base, Exception)) or issubclass(base, (AssertionError, RemoteError)):
        return RemoteError(type_name, message)
    cls = _REMOTE_CLASSES.get(base)
    if cls is None:
        cls = _REMOTE_CLASSES[base] = type(f"Remote{type_name}", (RemoteError, base), {"__str__": lambda s: s.message})
    try:
        return cls(type_name, message)
    except Exception:  # noqa: BLE001 - a builtin with an unusual constructor
        return RemoteError(type_name, message)


class Child:
    """One untrusted child as the judge sees it: pipes, pid, deadline, the frames it sends."""

    def __init__(self, judge, spec, stdin=b"", capture=False):
        self.judge, self.deadline, self.capture = judge, judge.deadline, capture
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()
        if stdin:
            in_fd = os.memfd_create("stdin")
            os.write(in_fd, stdin)
            os.lseek(in_fd, 0, os.SEEK_SET)
        else:
            in_fd = os.open("/dev/null", os.O_RDONLY)
        if capture:
            self.out_r, out_w = os.pipe()
            self.err_r, err_w = os.pipe()
        else:
            self.out_r = self.err_r = None
            out_w = os.open("/dev/null", os.O_WRONLY)
            err_w = os.dup(out_w)
        child_fds = [cmd_r, res_w, in_fd, out_w, err_w]
        self.start = time.monotonic()
        try:
            self.pid = judge.zygote.spawn(spec, child_fds)
        finally:
            for fd in child_fds:
                os.close(fd)
        os.set_blocking(self.cmd_w, False)
        for fd in (self.res_r, self.out_r, self.err_r):
            if fd is not None:
                os.set_blocking(fd, False)
        self.reader = FrameReader(self.res_r)
        self.cap = judge.limits["max_output"]
        self.outputs = {fd: bytearray() for fd in (self.out_r, self.err_r) if fd is not None}  # still open
        self._captured = {fd: bytearray() for fd in self.outputs}
        self.status = None
        self.timed_out = False
        self.dead = None  # why the child can no longer answer
        self.watchdog = judge.watchdog
        self.next_watch = self.start + 0.05

    # -- lifetime
    def _exited(self):
        if self.status is None:
            self.judge.zygote.poll_exits()
            self.status = self.judge.zygote.exits.get(self.pid)
        return self.status is not None

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self):
        self.kill()
        for fd in (self.cmd_w, self.res_r, self.out_r, self.err_r):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # -- waiting
    def _wait(self, want_frame):
        """Pump fds until a frame arrives (``want_frame``) or the child ends; returns the frame or None."""
        while True:
            if want_frame:
                body = self.reader.frame()
                if body is not None:
                    return body
                if self.reader.eof:
                    return None
            now = time.monotonic()
            if now >= self.deadline:
                self.timed_out = True
                self.dead = "the program timed out"
                self.kill()
                raise CheckTimeout()
            if self.watchdog and now >= self.next_watch:
                self.next_watch = now + WATCHDOG_S
                why = self.judge.over_limits()
                if why:
                    self.dead = why
                    self.kill()
                    return None
            fds = [self.judge.zygote.sock, *self.outputs]
            if want_frame or not self.reader.eof:
                fds.append(self.res_r)
            wait = min(self.deadline - now, WATCHDOG_S if self.watchdog else 3600.0)
            ready, _, _ = select.select(fds, [], [], max(0.0, wait))
            for fd in ready:
                if fd == self.res_r:
                    self.reader.feed()
                elif fd in self.outputs:
                    self._drain(fd)
            if self.judge.zygote.sock in ready and self._exited():
                self._drain_all()
                self._feed_all()
                if want_frame:
                    return self.reader.frame()
                return None
            if not want_frame and not self.outputs and self.reader.eof:
                return None

    def _drain(self, fd):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            del self.outputs[fd]
            return
        got = self._captured[fd]
        if len(got) < self.cap:
            got += data[: self.cap - len(got)]

    def _drain_all(self):
        for fd in list(self.outputs):
            for _ in range(64):
                if fd not in self.outputs or not select.select([fd], [], [], 0)[0]:
                    break
                self._drain(fd)

    def _feed_all(self):
        for _ in range(64):
            if self.reader.eof or not select.select([self.res_r], [], [], 0)[0]:
                return
            self.reader.feed()

    def captured(self, fd):
        return bytes(self._captured.get(fd, b""))

    def send(self, msg):
        """``msg`` (lists, dicts and plain values) to the child, in marshal's format (see ``recv``)."""
        data = marshal.dumps(msg)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            now = time.monotonic()
            if now >= self.deadline:
                self.timed_out = True
                self.kill()
                raise CheckTimeout()
            if not select.select([], [self.cmd_w], [], self.deadline - now)[1]:
                continue
            try:
                view = view[os.write(self.cmd_w, view):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise ChildGone("ChildGone", "the program closed its end of the judge's channel") from None

    def message(self):
        """The child's next message (decoded JSON); ChildGone when it ends or breaks the protocol."""
        try:
            body = self._wait(True)
        except ProtocolError as exc:
            self.dead = f"the program broke the judge's protocol: {exc}"
            self.kill()
            raise ChildGone("ChildGone", self.dead) from None
        if body is None:
            raise ChildGone("ChildGone", self.dead or self.end_reason())
        try:
            msg = loads(body)
        except ProtocolError as exc:
            self.dead = f"the program broke the judge's protocol: {exc}"
            self.kill()
            raise ChildGone("ChildGone", self.dead) from None
        if type(msg) is not list or not msg or type(msg[0]) is not str:
            self.dead = "the program broke the judge's protocol: not a message"
            self.kill()
            raise ChildGone("ChildGone", self.dead)
        return msg

    def wait_exit(self):
        """Run to the end (stdio mode): output drained, exit status known; raises CheckTimeout."""
        while not self._exited():
            self._wait(False)
            if self.dead:
                break
            if self._exited():
                break
        self._drain_all()

    def end_reason(self):
        end = time.monotonic() + 0.5
        while not self._exited() and time.monotonic() < end:  # the pipe closed: the exit report follows
            select.select([self.judge.zygote.sock], [], [], 0.05)
        st = self.status
        if st is None:
            return "the program stopped answering"
        if os.WIFSIGNALED(st):
            sig = os.WTERMSIG(st)
            if sig == signal.SIGXCPU:
                return "the program used up its CPU time"
            if sig == signal.SIGKILL and self.judge.cgroup_oom():
                return "the check exceeded its memory limit"
            return f"the program was killed by {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ else f"the program was killed by signal {sig}"
        return f"the program exited with status {os.WEXITSTATUS(st)} before the tests finished"


class Remote:
    """A handle on an object of the program (see the module doc for what crosses)."""

    __slots__ = ("_judge", "_id", "_type", "__weakref__")

    def __init__(self, judge, ref_id, type_name):
        object.__setattr__(self, "_judge", judge)
        object.__setattr__(self, "_id", ref_id)
        object.__setattr__(self, "_type", type_name)

    def _ask(self, op, *args):
        return self._judge.ask([op, self._id, *args])

    def __call__(self, *args, **kwargs):
        enc = self._judge.encode_arg
        return self._judge.call(self, [enc(a) for a in args], {str(k): enc(v) for k, v in kwargs.items()})

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", name)

    def __setattr__(self, name, value):
        self._ask("setattr", str(name), self._judge.encode_arg(value))

    def __iter__(self):
        return iter(self._ask("iter"))

    def __len__(self):
        n = self._ask("len")
        if type(n) is not int:
            raise TypeError("len() of a program object is not an int")
        return n

    def __getitem__(self, key):
        return self._ask("getitem", self._judge.encode_arg(key))

    def __contains__(self, item):
        return self._ask("contains", self._judge.encode_arg(item)) is True

    def __bool__(self):
        return self._ask("bool") is True

    def __str__(self):
        s = self._ask("str")
        return s if type(s) is str else "<program object>"

    def __repr__(self):
        s = self._ask("repr")
        return s if type(s) is str else f"<program {self._type}>"

    def __eq__(self, other):
        return other is self

    def __ne__(self, other):
        return other is not self

    def __hash__(self):
        return hash((Remote, self._id))


class Judge:
    """Everything the judge does for one request."""

    def __init__(self, cfg, zygote, req):
        self.cfg, self.zygote, self.req = cfg, zygote, req
        self.limits = req["limits"]
        self.deadline = time.monotonic() + float(self.limits["timeout"])
        self.watchdog = not cfg["cgroups"].get("run")
        self.child = None
        self.program = None  # what the child loads: the source, or the code object compiled here
        self.remotes = {}
        self.names = {}
        self.plan, self.plan_keys, self.plan_pos = [], [], 0

    def set_plan(self, plan):
        """The speculated calls of the request (``speculation_plan``, made by the host: trusted)."""
        ok = type(plan) is list and all(type(e) is list and len(e) == 3 and type(e[0]) is str and type(e[1]) is list
                                        and type(e[2]) is dict for e in plan)
        self.plan = plan if ok else []
        self.plan_keys = [json.dumps(entry) for entry in self.plan]
        self.plan_pos = 0

    def call(self, remote, args, kwargs):
        """A call of the program: answered from the plan while the tests follow it, else over RPC."""
        if self.plan_pos < len(self.plan):
            name = self.plan[self.plan_pos][0]
            if self.names.get(name) is remote and json.dumps([name, args, kwargs]) == self.plan_keys[self.plan_pos]:
                self.plan_pos += 1
                return self.answer(self.child.message())
            self.diverge()
        return self.ask(["call", remote._id, args, kwargs])

    def diverge(self):
        """The tests left the plan: a fresh child replays the calls used so far, then answers live."""
        used = self.plan[:self.plan_pos]
        self.plan, self.plan_keys, self.plan_pos = [], [], 0
        if self.child.dead or self.child.timed_out:
            return  # no second chance: the next request reports why the child is gone
        self.child.close()
        child = self.child = Child(self, {"cgroup": "run", "limits": self.limits})
        child.send(["python", self.program, used])
        msg = child.message()
        if msg[0] != "loaded":
            child.dead = "the program did not load again when its calls were replayed"
            raise ChildGone("ChildGone", child.dead)
        for _ in used:
            child.message()

    def cgroup_oom(self):
        fd = self.cfg["oom_fds"].get("run")
        return fd is not None and _oom_count(fd) > self.cfg["oom_seen"].get("run", 0)

    def over_limits(self):
        """The watchdog (no cgroup): total RSS and process count of the check, else None."""
        me, total, count = os.getpid(), 0, 0
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in (1, me, os.getppid()):
                continue
            try:
                with open(f"/proc/{name}/statm", "rb") as fh:
                    total += int(fh.read().split()[1]) * 4096
                count += 1
            except (OSError, ValueError, IndexError):
                continue
        if total > int(self.limits["memory_mb"]) << 20:
            return f"the check exceeded its memory limit ({total >> 20} MiB, watchdog)"
        if count > int(self.limits["max_processes"]):
            return f"the check exceeded its process limit ({count}, watchdog)"
        return None

    # -- values
    def remote(self, ref_id, type_name):
        r = self.remotes.get(ref_id)
        if r is None:
            r = self.remotes[ref_id] = Remote(self, ref_id, type_name)
        return r

    def encode_arg(self, value, depth=0):
        if isinstance(value, Remote):
            if value._judge is not self:
                raise TypeError("a handle of another check")
            return ["r", value._id]
        if depth > MAX_DEPTH:
            raise ValueError("argument nested too deeply")
        name = getattr(value, "__name__", None)
        if type(name) is str and callable(value) and getattr(builtins, name, None) is value:
            return ["n", name]  # a builtin type or function (``isinstance(x, int)`` in the program)

        def refuse(v):
            raise TypeError(f"a {type(v).__name__} cannot be passed to the program (only plain data and its own objects)")

        if type(value) in (list, tuple, dict, set, frozenset):
            t = type(value)
            if t is dict:
                out = ["d"]
                for k, v in value.items():
                    out += [self.encode_arg(k, depth + 1), self.encode_arg(v, depth + 1)]
                return out
            return [{list: "l", tuple: "t", set: "s", frozenset: "f"}[t], *[self.encode_arg(v, depth + 1) for v in value]]
        return encode(value, refuse, depth)

    def ask(self, msg):
        if self.plan_pos < len(self.plan):
            self.diverge()
        child = self.child
        if child.dead:
            raise ChildGone("ChildGone", child.dead)
        child.send(msg)
        return self.answer(child.message())

    def answer(self, reply):
        child = self.child
        if reply[0] == "ok" and len(reply) == 2:
            try:
                return decode(reply[1], self.remote)
            except ProtocolError as exc:
                child.dead = f"the program broke the judge's protocol: {exc}"
                child.kill()
                raise ChildGone("ChildGone", child.dead) from None
        if reply[0] == "exc" and len(reply) == 3 and all(type(v) is str for v in reply[1:]):
            raise remote_error(reply[1][:100], reply[2][:300])
        child.dead = "the program broke the judge's protocol: an unknown answer"
        child.kill()
        raise ChildGone("ChildGone", child.dead)


def _oom_count(fd):
    """OOM kills so far in a cgroup (v1 ``memory.oom_control`` or v2 ``memory.events``, read by fd)."""
    try:
        for line in os.pread(fd, 4096, 0).decode().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


_tests_cache = {}


def compiled_tests(source):
    code = _tests_cache.get(source)
    if code is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = compile(source, "<tests>", "exec")
        if len(_tests_cache) >= TESTS_CACHE_SIZE:
            _tests_cache.pop(next(iter(_tests_cache)))
        _tests_cache[source] = code
    return code


def _classify(exc):
    """(verdict, detail) of a failed unit, by where the failure happened."""
    if isinstance(exc, CheckTimeout):
        return "TIMEOUT", None
    if isinstance(exc, RemoteError):
        return "RUNTIME_ERROR", exc.message
    if isinstance(exc, NameError):  # the tests use a name the program should have defined
        return "RUNTIME_ERROR", _one_line(exc)
    return "WRONG_OUTPUT", _one_line(exc)


def _bind_names(judge, names):
    out = {}
    if type(names) is not dict:
        raise ProtocolError("names are not a mapping")
    for name, value in names.items():
        if not name.isidentifier():
            continue
        if type(value) is list and len(value) == 2 and value[0] == "m" and type(value[1]) is str:
            if value[1] not in sys.modules and value[1] not in JUDGE_MODULES:
                continue
            try:  # a standard module the program imported: the judge's own, pristine copy
                import importlib

                out[name] = importlib.import_module(value[1])
            except BaseException:  # noqa: BLE001
                pass
            continue
        out[name] = decode(value, judge.remote)
    return out



# ---------------------------------------------------------------- speculation

PLAN_MAX_CALLS = 256
_STOP_EXPR = ("Lambda", "ListComp", "SetComp", "DictComp", "GeneratorExp", "BoolOp", "IfExp", "Dict", "Await",
              "Yield", "YieldFrom", "NamedExpr", "Starred")


class _Stop(Exception):
    pass


def speculation_plan(tests, entry, call_check, hooks, tree=None):
    """The calls of the program that straight-line tests will make, in order, with literal arguments.

    The child runs them right after loading and streams the answers, so that the tests do not wait
    for a round trip per call. The plan is a prefix of what the tests do: it stops at the first
    statement or expression whose control flow or arguments it cannot know (loops, conditions,
    comprehensions, a call with a computed argument). The judge uses an answer only while the tests
    make exactly the planned calls; at the first difference it starts a fresh child and replays the
    calls used so far (see ``Judge.diverge``), so a deterministic program is judged exactly as
    without the plan. Made by the host (``halo_ray.verifiers.python``, which caches it per tests);
    ``tree``: the tests already parsed (``ast.parse(tests)``), else they are parsed here.
    """
    import ast

    plan = []
    try:
        if tree is None:
            tree = ast.parse(tests)
        stored, defined, imported, free = set(), set(), set(), set()
        for n in ast.walk(tree):  # one walk (each walk of a HumanEval test file costs about 1 ms)
            if isinstance(n, ast.Name):
                (free if isinstance(n.ctx, ast.Load) else stored).add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                imported.update((a.asname or a.name).split(".")[0] for a in n.names)
        targets = {n: n for n in free - stored - defined - imported - set(dir(builtins)) - set(hooks)}
        check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)

        def expr(node, names):
            kind = type(node).__name__
            if kind in _STOP_EXPR or (kind == "Compare" and len(node.ops) > 1):
                if any(isinstance(n, ast.Call) for n in ast.walk(node)):
                    raise _Stop
                return
            if isinstance(node, ast.Call):
                expr(node.func, names)
                if isinstance(node.func, ast.Name) and node.func.id in names:
                    if any(k.arg is None for k in node.keywords):
                        raise _Stop
                    try:
                        args = [ast.literal_eval(a) for a in node.args]
                        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
                    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                        raise _Stop from None
                    plan.append((names[node.func.id], args, kwargs))
                    if len(plan) > PLAN_MAX_CALLS:
                        raise _Stop
                    return
                for child in [*node.args, *(k.value for k in node.keywords)]:
                    expr(child, names)
                return
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    expr(child, names)

        def body(stmts, names, top):
            for st in stmts:
                if isinstance(st, ast.Assert):
                    expr(st.test, names)
                    if st.msg is not None and any(isinstance(n, ast.Call) for n in ast.walk(st.msg)):
                        raise _Stop
                elif isinstance(st, (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                    for child in ast.iter_child_nodes(st):
                        if isinstance(child, ast.expr):
                            expr(child, names)
                elif isinstance(st, ast.Try) and not st.finalbody:
                    body(st.body, names, top)
                    body(st.orelse, names, top)  # the pass hook; a handler means the plan is left
                elif isinstance(st, (ast.Import, ast.ImportFrom, ast.Pass)):
                    continue
                elif top and st is check:
                    continue
                else:
                    raise _Stop

        body(tree.body, targets, True)
        if check is not None and call_check and entry and check.args.args:
            param = check.args.args[0].arg
            inner = {n: n for n in targets if n != param}
            inner[param] = entry
            if param in stored:
                raise _Stop
            body(check.body, inner, False)
        elif check is not None:
            raise _Stop  # check() called by the tests themselves: where is not known here
    except _Stop:
        pass
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        plan = []
    def refuse(value):
        raise _Stop

    encoded = []
    for name, args, kwargs in plan:  # arguments as they cross the boundary
        try:
            encoded.append([name, [encode(a, refuse) for a in args], {k: encode(v, refuse) for k, v in kwargs.items()}])
        except (_Stop, ValueError, RecursionError):
            break
    return encoded


def _start_python(judge, units):
    """Spawn the child and load the program; (names, warned) or a final result dict.

    A program of at most ``JUDGE_COMPILE_MAX`` characters is compiled here and crosses as a code object
    (compiling runs none of it; the child then neither parses nor copies the parser's pages, and a
    syntax error needs no child); a longer one is compiled in the child, under its limits."""
    code, warned = judge.req["code"], False
    if type(code) is str and len(code) <= JUDGE_COMPILE_MAX:
        try:
            code, warned = compile_program(code)
        except COMPILE_ERRORS as exc:
            return {"verdict": "SYNTAX_ERROR", "passed": 0, "total": units, "detail": syntax_detail(exc), "warnings": False}
        except Exception:  # noqa: BLE001 - a compiler fault: the child compiles it, under its limits, as before
            pass
    judge.program = code
    child = judge.child = Child(judge, {"cgroup": "run", "limits": judge.limits})
    child.send(["python", code, judge.plan])
    try:
        msg = child.message()
    except ChildGone as exc:
        return {"verdict": "RUNTIME_ERROR", "passed": 0, "total": units, "detail": exc.message, "warnings": False}
    if msg[0] == "syntax" and len(msg) == 2 and type(msg[1]) is str:
        return {"verdict": "SYNTAX_ERROR", "passed": 0, "total": units, "detail": msg[1], "warnings": False}
    if msg[0] == "exc" and len(msg) == 3:
        return {"verdict": "RUNTIME_ERROR", "passed": 0, "total": units, "detail": str(msg[2]), "warnings": False}
    if msg[0] != "loaded" or len(msg) != 3:
        return {"verdict": "RUNTIME_ERROR", "passed": 0, "total": units, "warnings": False,
                "detail": "the program broke the judge's protocol"}
    try:
        names = _bind_names(judge, msg[2])
    except ProtocolError as exc:
        return {"verdict": "RUNTIME_ERROR", "passed": 0, "total": units, "warnings": False,
                "detail": f"the program broke the judge's protocol: {exc}"}
    judge.names = names
    return names, warned or msg[1] is True


def judge_python(judge):
    req = judge.req
    units = int(req["units"])
    judge.set_plan(req.get("plan") or [])
    started = _start_python(judge, units)
    if isinstance(started, dict):
        return started
    names, warned = started
    passed, failures = [0], []

    def on_pass():
        passed[0] += 1

    def on_fail(exc):
        failures.append(_classify(exc))

    test_ns = {"__name__": "__tests__", "__builtins__": builtins, **names,
               req["pass_hook"]: on_pass, req["fail_hook"]: on_fail}
    try:
        exec(compiled_tests(req["tests"]), test_ns)
        entry = req.get("entry_point")
        if entry and req.get("call_check") and callable(test_ns.get("check")):
            test_ns["check"](test_ns[entry] if entry in test_ns else names[entry])
    except BaseException as exc:  # noqa: BLE001
        failures.append(_classify(exc))
    child = judge.child
    out = {"passed": min(passed[0], units), "total": units, "warnings": warned}
    if child.timed_out or any(v == "TIMEOUT" for v, _ in failures):
        return dict(out, verdict="TIMEOUT", detail=f"timed out after {float(judge.limits['timeout']):.1f}s")
    if failures:
        verdict, detail = failures[0]
        return dict(out, verdict=verdict, detail=detail or verdict)
    return dict(out, passed=units, verdict="SUCCESS", detail="")


def run_program(judge, cmd, stdin=b"", cgroup="run", limits=None):
    """One stdin/stdout run: (child, messages) with its output captured; CheckTimeout is caught."""
    saved = judge.limits, judge.deadline
    if limits is not None:
        judge.limits = limits
        judge.deadline = time.monotonic() + float(limits["timeout"])
    child = judge.child = Child(judge, {"cgroup": cgroup, "limits": judge.limits}, stdin=stdin, capture=True)
    messages = []
    try:
        child.send(cmd)
        child.wait_exit()
    except CheckTimeout:
        pass
    except ChildGone:
        pass
    try:
        child._feed_all()
        while True:
            body = child.reader.frame()
            if body is None:
                break
            messages.append(loads(body))
    except ProtocolError:
        messages.append(["garbage"])
    child.duration = time.monotonic() - child.start
    child.close()
    if limits is not None:
        judge.limits, judge.deadline = saved
    return child, messages


def _first_line(data):
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


def _describe(child):
    if child.dead:
        return child.dead
    st = child.status
    if st is not None and os.WIFEXITED(st):
        return f"program exited with status {os.WEXITSTATUS(st)}"
    return child.end_reason().replace("the program", "program")


def run_cases(judge, cases, make_cmd):
    """Run the program once per case; the first failure decides the verdict."""
    passed, first = 0, None
    for case in cases or [None]:
        stdin = (case or {}).get("input", "").encode()
        child, messages = run_program(judge, make_cmd(), stdin=stdin, limits=judge.limits)
        syntax = [m for m in messages if type(m) is list and m and m[0] == "syntax" and len(m) == 2]
        if syntax:
            return {"verdict": "SYNTAX_ERROR", "passed": 0, "total": len(cases), "detail": str(syntax[0][1])}
        if child.timed_out or (child.status is not None and os.WIFSIGNALED(child.status)
                               and os.WTERMSIG(child.status) == signal.SIGXCPU):
            outcome = ("TIMEOUT", f"timed out after {child.duration:.1f}s")
        elif child.dead or child.status != 0:
            outcome = ("RUNTIME_ERROR", _first_line(child.captured(child.err_r)) or _describe(child))
        elif case is not None and not same_output(child.captured(child.out_r), case.get("output", "")):
            got = child.captured(child.out_r)
            outcome = ("WRONG_OUTPUT", f"wrong output for input {stdin[:60]!r}: got {got[:60]!r}")
        else:
            passed += 1
            continue
        first = first or outcome
    total = len(cases)
    if first:
        return {"verdict": first[0], "passed": passed, "total": total, "detail": first[1]}
    return {"verdict": "SUCCESS", "passed": passed, "total": total, "detail": ""}


def judge_native(judge):
    req = judge.req
    comp = req["compile"]
    climits = dict(judge.limits, timeout=comp["timeout"], memory_mb=comp["memory_mb"], max_processes=comp["max_processes"])
    child, _ = run_program(judge, ["exec", comp["argv"], req["env"], {comp["source"]: req["code"]}],
                           cgroup="compile", limits=climits)
    text = (child.captured(child.err_r) + child.captured(child.out_r)).decode("utf-8", "replace")
    if child.timed_out or child.status != 0:
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        errors = [x for x in lines if "error" in x.lower()] or lines
        detail = errors[0] if errors else f"compiler {_describe(child)}"
        if child.timed_out or child.dead or (child.status is not None and os.WIFSIGNALED(child.status)):
            detail = f"compilation exceeded its limits ({'timed out' if child.timed_out else _describe(child)}): {detail}"
        return {"verdict": "SYNTAX_ERROR", "passed": 0, "total": len(req["cases"]), "detail": detail[:300],
                "warnings": False}
    warn = any(marker in text for marker in comp["warning_markers"])
    out = run_cases(judge, req["cases"], lambda: ["exec", req["run"], req["env"], {}])
    return dict(out, warnings=warn)


def judge_pytest(judge):
    """pytest in a forked sub-judge (trusted); the program's names are handles in the test module."""
    import pytest  # noqa: F401 - imported once by the judge, not charged to the check

    judge.deadline = time.monotonic() + float(judge.limits["timeout"])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            result = _pytest_subjudge(judge)
        except BaseException as exc:  # noqa: BLE001
            result = {"verdict": "RUNTIME_ERROR", "passed": 0, "total": 0, "warnings": False,
                      "detail": f"pytest failed: {_one_line(exc)}"}
        if judge.child is not None:
            judge.child.close()
        send(w, result)
        os._exit(0)
    os.close(w)
    result = recv(r, time.monotonic() + float(judge.limits["timeout"]) + 60.0)
    os.close(r)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    return result or {"verdict": "TIMEOUT", "passed": 0, "total": 0, "warnings": False, "detail": "pytest did not finish"}


def _pytest_subjudge(judge):
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import tempfile

    import pytest

    folder = tempfile.mkdtemp(prefix="halo-judge-", dir="/judge")
    path = os.path.join(folder, "test_solution.py")
    with open(path, "w") as fh:
        fh.write(judge.req["tests"])
    state = {"n": 0, "passed": 0, "failures": [], "loaded": None}

    class Collector:
        def pytest_collection_finish(self, session):
            state["n"] = len(session.items)
            started = _start_python(judge, state["n"])
            if isinstance(started, dict):
                state["loaded"] = started
                session.shouldstop = "the program did not load"
                return
            names, state["warned"] = started
            for item in session.items:
                module = getattr(item, "module", None)
                if module is not None:
                    for name, value in names.items():
                        module.__dict__.setdefault(name, value)

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(self, item, call):
            outcome = yield
            report = outcome.get_result()
            if report.when == "call" and report.passed:
                state["passed"] += 1
            elif report.failed:
                exc = call.excinfo.value if call.excinfo is not None else Exception("failed")
                state["failures"].append(_classify(exc))

    code = pytest.main(["-q", "-p", "no:cacheprovider", "--noconftest", "-c", "/dev/null", "--rootdir", folder,
                        "-p", "no:randomly", path], plugins=[Collector()])
    if state["loaded"] is not None:
        return state["loaded"]
    n = state["n"]
    out = {"passed": min(state["passed"], n), "total": n, "warnings": bool(state.get("warned"))}
    child = judge.child
    if child is not None and child.timed_out or any(v == "TIMEOUT" for v, _ in state["failures"]):
        return dict(out, verdict="TIMEOUT", detail=f"timed out after {float(judge.limits['timeout']):.1f}s")
    if state["failures"]:
        verdict, detail = state["failures"][0]
        return dict(out, verdict=verdict, detail=detail or verdict)
    if n == 0 or state["passed"] < n or int(code) != 0:
        return dict(out, verdict="WRONG_OUTPUT" if n else "RUNTIME_ERROR",
                    detail=f"{state['passed']} of {n} tests passed (pytest exit status {int(code)})")
    return dict(out, verdict="SUCCESS", detail="")


def handle(cfg, zygote, req):
    judge = Judge(cfg, zygote, req)
    kind = req["kind"]

    def on_alarm(signum, frame):
        raise CheckTimeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    budget = float(req["limits"]["timeout"]) + JUDGE_GRACE_S
    if kind == "native":
        budget += float(req["compile"]["timeout"]) + len(req["cases"] or [None]) * float(req["limits"]["timeout"])
    elif kind == "python_stdio":
        budget += len(req["cases"] or [None]) * float(req["limits"]["timeout"])
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        if kind == "python":
            result = judge_python(judge)
        elif kind == "pytest":
            result = judge_pytest(judge)
        elif kind == "python_stdio":
            result = dict(run_cases(judge, req["cases"], lambda: ["script", req["code"]]), warnings=False)
        elif kind == "native":
            result = judge_native(judge)
        else:
            raise ValueError(f"unknown request kind {kind!r}")
    except CheckTimeout:
        result = {"verdict": "TIMEOUT", "passed": 0, "total": int(req.get("units") or 0), "warnings": False,
                  "detail": "the check ran past its time limit"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if judge.child is not None:
            judge.child.close()
    return result


def judge_main(cfg, sock, channel_in, channel_out):
    zygote = Zygote(sock)
    send(channel_out, {"ready": True, "pid": os.getpid(), "cgroup": bool(cfg["cgroups"].get("run"))})
    while True:
        try:
            req = recv(channel_in)
        except ProtocolError:
            return 1
        if req is None:
            return 0
        start = time.monotonic()
        try:
            result = handle(cfg, zygote, req)
        except Exception as exc:  # noqa: BLE001 - a fault of the verifier, reported as such
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["duration_s"] = time.monotonic() - start
        for kind, fd in cfg["oom_fds"].items():
            cfg["oom_seen"][kind] = _oom_count(fd)
        clean_start = time.monotonic()
        try:
            zygote.kill_children()
            ok, why = clean(cfg, zygote)
        except (OSError, RuntimeError, ValueError) as exc:
            ok, why = False, f"the zygote failed: {exc}"
        result["clean_s"] = time.monotonic() - clean_start  # outside the check's clock (diagnostics)
        if ok:
            zygote.standby()  # forked while the host reads the verdict
        else:
            result["replace_worker"] = why
        send(channel_out, result)
        if not ok:
            return 0


def main():
    cfg = json.loads(sys.argv[1])
    cfg["cgroups"] = {k: [int(fd) for fd in v] for k, v in cfg.get("cgroups", {}).items()}
    cfg["oom_fds"] = {k: int(v) for k, v in cfg.get("oom_fds", {}).items()}
    cfg["oom_seen"] = {k: _oom_count(fd) for k, fd in cfg["oom_fds"].items()}
    channel_in, channel_out = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    if os.getpid() != 1 or cfg["uid"] == 0:  # kill by pid is only safe as init of bwrap's private pid namespace
        send(channel_out, {"error": f"worker is not alone in a private pid namespace (pid {os.getpid()})"})
        return 1
    try:
        set_undumpable()
        _set_no_new_privs()  # inherited by every process forked from here: no child pays for ctypes
    except OSError as exc:
        send(channel_out, {"error": str(exc)})
        return 1
    for name in WARM_IMPORTS:
        __import__(name)
    import gc

    _warm_up()
    _trim_heap()

    zsock, jsock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    judge_pid = os.fork()
    if judge_pid == 0:
        zsock.close()
        return judge_main(cfg, jsock, channel_in, channel_out)
    jsock.close()
    for fd in (channel_in, channel_out):
        os.close(fd)
    gc.freeze()  # a child's garbage collections never walk (and so copy) the zygote's own objects
    return zygote_main(cfg, zsock)


if __name__ == "__main__":
    sys.exit(main())
