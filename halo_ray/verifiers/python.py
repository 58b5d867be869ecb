"""Python verifiers: asserts (HumanEval convention), MBPP, pytest files, stdin/stdout cases.

Assert-based tests are split into units before they are sent: every top-level statement that
contains an ``assert`` (in the module or in the body of ``check``) runs in its own try block and
reports pass or fail, so ``pass_rate`` is the fraction of individual assertions passed and one
failing assertion does not hide the others.
"""

from __future__ import annotations

import ast
import functools
import secrets
from typing import TYPE_CHECKING

from halo_ray.errors import DataError
from halo_ray.verifiers.base import VERIFIERS, record_cases, record_code

if TYPE_CHECKING:
    from halo_ray.verifiers.config import VerifierConfig


# Names of the hooks the rewritten tests call (in the judge, which the program never reaches); random per
# process so that they cannot collide with a name of the tests.
PASS_HOOK = f"__halo_pass_{secrets.token_hex(6)}"
FAIL_HOOK = f"__halo_fail_{secrets.token_hex(6)}"


def split_units(tests: str, where: str) -> tuple[str, int, bool, ast.Module]:
    """Rewrite ``tests`` so that each assertion statement reports its own outcome.

    Returns ``(source, units, defines_check_uncalled, tree)``; the rewritten source calls ``PASS_HOOK``
    and ``FAIL_HOOK``, ``tree`` is its syntax tree (read it, never change it: it is cached). Raises
    DataError when the tests do not parse (the tests are input data). Cached: a prompt's tests are
    rewritten once, not once per sample.
    """
    try:
        return _split_units(tests)
    except SyntaxError as exc:
        raise DataError(f"{where}: tests do not parse: {exc.msg} (line {exc.lineno})") from None


@functools.lru_cache(maxsize=4096)
def _split_units(tests: str) -> tuple[str, int, bool, ast.Module]:
    tree = ast.parse(tests, "<tests>")
    pass_hook, fail_hook = PASS_HOOK, FAIL_HOOK
    units = 0

    def wrap(body: list[ast.stmt]) -> list[ast.stmt]:
        nonlocal units
        out = []
        for stmt in body:
            defines = isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if defines or not _has_assert(stmt):
                out.append(stmt)
                continue
            units += 1
            handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name="__halo_exc",
                                        body=[ast.Expr(ast.Call(ast.Name(fail_hook, ast.Load()),
                                                                [ast.Name("__halo_exc", ast.Load())], []))])
            out.append(ast.Try(body=[stmt], handlers=[handler], finalbody=[],
                               orelse=[ast.Expr(ast.Call(ast.Name(pass_hook, ast.Load()), [], []))]))
        return out

    tree.body = wrap(tree.body)
    check = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            node.body = wrap(node.body)
            check = node
    # The name appears once when only the definition has it: no call, and no walk of the whole tree.
    called = tests.count("check") > 1 and any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "check"
        for stmt in tree.body if stmt is not check for n in ast.walk(stmt))
    if tests.strip() and not units:
        units = 1  # no assertion to split: the tests as a whole are one unit
    # ast.unparse needs no source locations (fix_missing_locations was 40% of the planning time).
    return ast.unparse(tree), units, check is not None and not called, tree


@functools.lru_cache(maxsize=4096)
def _plan(tests: str, entry: str | None, call_check: bool) -> list:
    """The calls the judge may speculate for these (original) tests (``sandbox_worker.speculation_plan``
    on the rewritten tree that ``split_units`` cached)."""
    from halo_ray.sandbox_worker import speculation_plan

    source, _, _, tree = _split_units(tests)
    return speculation_plan(source, entry, call_check, (PASS_HOOK, FAIL_HOOK), tree=tree)


def _has_assert(stmt: ast.AST) -> bool:
    """Whether ``stmt`` holds an ``assert``: only statement bodies are searched (no expression can)."""
    if isinstance(stmt, ast.Assert):
        return True
    return any(_has_assert(child) for field in ("body", "orelse", "finalbody", "handlers", "cases")
               for child in getattr(stmt, field, None) or ())


def tests_text(record: dict, *keys: str) -> str:
    """The first present key of ``keys`` as test source; a list of statements is joined by lines."""
    for key in keys:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "\n".join(value)
        if isinstance(value, str):
            return value
        raise DataError(f"record {record.get('id')!r}: {key!r} must be a string or a list of strings")
    return ""


class PythonTestsVerifier:
    """Python run against assert tests (HumanEval's check(entry_point) convention included), or stdin/stdout cases."""

    language = "python"
    test_keys: tuple[str, ...] = ("tests",)

    def default_reward(self, record: dict) -> str:
        """The scheme ``verifier.reward: auto`` means here: a Python program has no compile tier to earn."""
        return "pass_rate"

    def available(self) -> str | None:
        return None

    def binds(self) -> list[str]:
        return []

    def setup(self, record: dict) -> str:
        return ""

    def plan(self, record: dict, cfg: VerifierConfig) -> dict:
        """The sandbox request for ``record`` (without limits)."""
        code = record_code(record, cfg, "python")
        tests = tests_text(record, *self.test_keys)
        if not tests and record.get("test_cases"):
            return {"kind": "python_stdio", "code": code, "cases": record_cases(record)}
        setup = self.setup(record)
        source, units, uncalled, _ = split_units(setup + tests, f"record {record.get('id')!r}")
        entry = record.get("entry_point") or None
        call_check = bool(entry) and uncalled
        return {"kind": "python", "code": code, "tests": source, "units": units, "entry_point": entry,
                "call_check": call_check, "pass_hook": PASS_HOOK, "fail_hook": FAIL_HOOK,
                "plan": _plan(setup + tests, entry, call_check)}


VERIFIERS.register("python")(PythonTestsVerifier)


@VERIFIERS.register("humaneval")
class HumanEvalVerifier(PythonTestsVerifier):
    """HumanEval: prompt + completion as code, tests defining check(candidate), called on entry_point."""

    def plan(self, record: dict, cfg: VerifierConfig) -> dict:
        if not record.get("entry_point") or "def check" not in str(record.get("tests", "")):
            raise DataError(f"record {record.get('id')!r}: humaneval needs 'entry_point' and 'tests' defining check()")
        return super().plan(record, cfg)


@VERIFIERS.register("mbpp")
class MBPPVerifier(PythonTestsVerifier):
    """MBPP: 'tests' or MBPP's own 'test_list' of asserts, after its 'test_setup_code'."""

    test_keys = ("tests", "test_list")

    def setup(self, record: dict) -> str:
        setup = record.get("test_setup_code") or ""
        return setup + "\n" if setup else ""


@VERIFIERS.register("pytest")
class PytestVerifier(PythonTestsVerifier):
    """A pytest file as tests; the code is importable as module 'solution' (star-imported for you)."""

    def plan(self, record: dict, cfg: VerifierConfig) -> dict:
        tests = tests_text(record, "tests")
        if not tests:
            raise DataError(f"record {record.get('id')!r}: the pytest verifier needs 'tests' (a pytest file)")
        return {"kind": "pytest", "code": record_code(record, cfg, "python"), "tests": tests}
