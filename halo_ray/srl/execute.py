"""Execute an SRL action: rewrite the task's files with ast-grep, then run the task's tests in the sandbox.

The rewrite is pure (``apply_action``, on the host: ast-grep only parses). The rewritten files, the
checks and a small harness go to the project's verifier as one Python record: inside the bubblewrap
sandbox the harness writes the repository into its scratch space and the task's ``tests.py``
asserts run against it, calling ``node`` or ``javac``/``java`` there for JavaScript and Java. So an
action's replacement text only ever runs sandboxed, and ``pass_rate`` counts the task's assertions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from halo_ray.verifiers.config import VerifierConfig
from halo_ray.verifiers.verdicts import NOT_APPLIED, SUCCESS
from halo_ray.srl.actions import apply_action
from halo_ray.srl.tasks import Task
from halo_ray.srl.trace import Action

# JVM and V8 reserve far more address space than they use, and the JVM starts a dozen threads:
# the python verifier's defaults (1 GiB, 32 processes) are too tight for them (measured).
SANDBOX = VerifierConfig(name="python", timeout_s=60.0, memory_mb=4096, max_processes=64, extract_code=False)
JVM_FLAGS = ("-Xshare:auto", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1")

# Check runners: each reads a nonce from stdin first, runs the check, then prints the nonce, so that a
# rewritten program that exits early with status 0 does not pass. (A guard that raises the bar: code in
# the same process could still find the value; the sandbox's limits are what hold.)
NODE_RUNNER = ("const n = require('fs').readFileSync(0, 'utf8'); require(require('path').resolve(process.argv[1]));"
               " process.stdout.write('\\n' + n + '\\n');")
JAVA_RUNNER = """\
public class SrlRunner {
    public static void main(String[] args) throws Throwable {
        String nonce = new String(System.in.readAllBytes()).trim();
        try {
            Class.forName(args[0]).getMethod("main", String[].class).invoke(null, (Object) new String[0]);
        } catch (java.lang.reflect.InvocationTargetException e) {
            throw e.getCause();
        }
        System.out.println();
        System.out.println(nonce);
    }
}
"""

_HARNESS = '''\
import json as _json, os as _os, secrets as _secrets, subprocess as _subprocess, sys as _sys, tempfile as _tempfile
_ROOT = _tempfile.mkdtemp(prefix="srl-")
for _path, _text in _json.loads({files!r}).items():
    _full = _os.path.join(_ROOT, _path)
    _os.makedirs(_os.path.dirname(_full), exist_ok=True)
    with open(_full, "w") as _fh:
        _fh.write(_text)
_sys.path.insert(0, _ROOT)
_os.chdir(_ROOT)
_REPO = {repo!r}
_JVM = {jvm!r}
_COMPILED = {{}}


def _read(path):
    """The rewritten text of a repository file."""
    return _REPO[path]


def _module(name):
    """A module of the rewritten repository, imported here in the program's process: the tests (which
    run in the sandbox's judge, never importing the repository themselves) call it through handles."""
    import importlib

    return importlib.import_module(name)


def _run(*argv, nonce=None):
    """Run a check; with ``nonce``, it passes only if it also prints the nonce it was given on stdin at the end."""
    done = _subprocess.run(list(argv), cwd=_ROOT, capture_output=True, text=True, timeout={timeout},
                           input=nonce or "")
    ok = done.returncode == 0 and (nonce is None or done.stdout.rstrip().endswith(nonce))
    if not ok:
        _sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
    return ok


def _node(script):
    # The runner reads the nonce before the check (and the code under test) loads, and prints it only
    # after the check returned: a process.exit(0) in the code under test cannot pass.
    return _run("node", "-e", {node_runner!r}, script, nonce=_secrets.token_hex(16))


def _java(main_class):
    if "ok" not in _COMPILED:
        sources = sorted(p for p in _json.loads({files!r}) if p.endswith(".java"))
        _COMPILED["ok"] = _run("javac", *("-J" + f for f in _JVM), "-d", "classes", *sources)
    return _COMPILED["ok"] and _run("java", *_JVM, "-cp", "classes", "SrlRunner", main_class,
                                    nonce=_secrets.token_hex(16))
'''


@dataclass(frozen=True)
class Execution:
    """What executing one action gave: ``success`` (applied and every test passed) and the ``env_report``."""

    success: bool
    env_report: dict


def program(task: Task, files: dict[str, str], timeout_s: float) -> str:
    """The sandbox program: writes ``files`` (the rewritten repository) and the task's checks, defines the helpers."""
    tree = {**files, **{f"checks/{path}": text for path, text in task.checks.items()}}
    if task.language == "java":
        tree["checks/SrlRunner.java"] = JAVA_RUNNER
    return _HARNESS.format(files=json.dumps(tree), repo=files, jvm=list(JVM_FLAGS), timeout=float(timeout_s),
                           node_runner=NODE_RUNNER)


def execution_record(task: Task, files: dict[str, str], record_id: str, cfg: VerifierConfig = SANDBOX) -> dict:
    """The record ``verify_batch`` takes, shaped like ``halo_ray.bench.score.verify_record``'s."""
    return {"id": record_id, "language": "python", "verifier": "python",
            "code": program(task, files, cfg.timeout_s), "tests": task.tests, "entry_point": None}


def execute_many(pairs: Sequence[tuple[Task, Action]], cfg: VerifierConfig = SANDBOX) -> list[Execution]:
    """Execute each ``(task, action)``: rewrite, then run the task's tests in one sandbox pool.

    An action that ast-grep rejects or that matches nothing is not run (``success`` False,
    ``verdict`` NOT_APPLIED in the report).

    Returns:
        One ``Execution`` per pair, in order; ``env_report`` has ``applied``, ``matches``, ``changed``,
        ``errors``, ``diff`` (from ``apply_action``) and ``verdict``, ``pass_rate``, ``detail``, ``duration_s``.
    """
    from halo_ray.verifiers import verify_batch  # the sandbox pool: imported only when something runs

    reports, records = [], []
    for i, (task, action) in enumerate(pairs):
        files, report = apply_action(action, task.files)
        applied = report.pop("ok")
        report = {"task": task.id, "applied": applied, **report, "verdict": NOT_APPLIED, "pass_rate": 0.0,
                  "detail": "; ".join(report["errors"]) or ("" if applied else "the pattern matched nothing in scope"),
                  "duration_s": 0.0}
        reports.append(report)
        if applied:
            records.append(execution_record(task, files, f"{i}:{task.id}", cfg))
    results = {r["id"]: r for r in verify_batch(records, cfg)} if records else {}
    out = []
    for i, ((task, _), report) in enumerate(zip(pairs, reports)):
        result = results.get(f"{i}:{task.id}")
        if result is not None:
            report.update(verdict=result["verdict"], pass_rate=result["pass_rate"], detail=result["detail"],
                          duration_s=result["duration_s"])
        out.append(Execution(success=report["verdict"] == SUCCESS, env_report=report))
    return out


def execute(task: Task, action: Action, cfg: VerifierConfig = SANDBOX) -> Execution:
    """Execute one action on one task (``execute_many`` of one pair)."""
    return execute_many([(task, action)], cfg)[0]


def execute_original(tasks: Sequence[Task], cfg: VerifierConfig = SANDBOX) -> list[dict]:
    """The verifier results of the untouched repositories (every built-in task should fail them)."""
    from halo_ray.verifiers import verify_batch

    return verify_batch([execution_record(t, t.files, t.id, cfg) for t in tasks], cfg)
