"""Every verifier on passing, failing, hanging and crashing programs, in the real sandbox.

Needs bubblewrap and root (the sandbox drops programs to their own uid); compilers are real.
"""

from __future__ import annotations

import json
import subprocess
import os
import shutil
import sys
from dataclasses import replace

import pytest

from halo_ray.errors import ConfigError, DataError, SandboxError
from halo_ray.verifiers import VERIFIERS, Verifier, VerifierConfig, extract_code, verify_batch
from halo_ray.verifiers.pool import plan_request

pytestmark = pytest.mark.skipif(not shutil.which("bwrap") or os.geteuid() != 0,
                                reason="the sandbox needs bubblewrap (apt-get install bubblewrap) and root")

CFG = VerifierConfig(workers=2, timeout_s=1.0, compile_memory_mb=2048)
ADD_TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\n"
C_DOUBLE = '#include <stdio.h>\nint main(void){int a; if (scanf("%d", &a) != 1) return 1; printf("%d\\n", 2*a); return 0;}\n'
C_CASES = [{"input": "3\n", "output": "6\n"}, {"input": "5", "output": "10"}]


@pytest.fixture(scope="module")
def verifier():
    with Verifier(CFG) as v:
        yield v


def one(pool, **record):
    return pool.verify([{"id": "r", **record}])[0]


# ----------------------------------------------------------------------------- python asserts


@pytest.mark.parametrize("code,verdict,pass_rate", [
    ("def add(a, b):\n    return a + b\n", "SUCCESS", 1.0),
    ("def add(a, b):\n    return a * b\n", "WRONG_OUTPUT", 1 / 3),  # only add(0, 0) == 0 holds
    ("def add(a, b):\n    while True:\n        pass\n", "TIMEOUT", 0.0),
    ("def add(a, b):\n    return a + undefined\n", "RUNTIME_ERROR", 0.0),
    ("def add(a, b)\n    return a + b\n", "SYNTAX_ERROR", 0.0),
    ("import ctypes\ndef add(a, b):\n    return ctypes.string_at(0)\n", "RUNTIME_ERROR", 0.0),  # segfault
])
def test_python_asserts(verifier, code, verdict, pass_rate):
    out = one(verifier, code=code, tests=ADD_TESTS)
    assert out["verdict"] == verdict, out
    assert out["pass_rate"] == pytest.approx(pass_rate)
    assert out["reward"] == pytest.approx(pass_rate)  # auto: pass_rate for Python, so a crash or a hang earns 0
    assert out["reward_components"] == {"pass_rate": out["reward"]}
    assert (out["tests_passed"], out["tests_total"]) == (round(pass_rate * 3), 3)


@pytest.mark.parametrize("padding", [0, 70_000])  # compiled by the judge; past JUDGE_COMPILE_MAX, by the child
def test_both_compile_paths_give_the_same_verdicts(verifier, padding):
    from halo_ray.sandbox_worker import JUDGE_COMPILE_MAX

    pad = "#" + "x" * padding + "\n" if padding else ""
    assert (len(pad) > JUDGE_COMPILE_MAX) == bool(padding)
    ok = one(verifier, code=pad + "def add(a, b):\n    return a + b\n", tests=ADD_TESTS)
    assert ok["verdict"] == "SUCCESS" and not ok["warnings"], ok
    warned = one(verifier, code=pad + "def add(a, b):\n    assert (a, 'always true')\n    return a + b\n", tests=ADD_TESTS)
    assert warned["verdict"] == "SUCCESS" and warned["warnings"], warned  # the SyntaxWarning is seen either way
    bad = one(verifier, code=pad + "def add(a, b)\n    return a + b\n", tests=ADD_TESTS)
    assert bad["verdict"] == "SYNTAX_ERROR" and bad["detail"].startswith("SyntaxError:"), bad
    crash = one(verifier, code=pad + "def add(a, b):\n    return a + undefined\n", tests=ADD_TESTS)
    assert crash["verdict"] == "RUNTIME_ERROR" and "NameError" in crash["detail"], crash


@pytest.mark.parametrize("scheme,rewards", [
    ("pass_rate", {"crash": 0.0, "wrong": 1 / 3, "timeout": 0.0, "ok": 1.0, "none": 0.0}),
    ("pass_fail", {"crash": 0.0, "wrong": 0.0, "timeout": 0.0, "ok": 1.0, "none": 0.0}),
    ("graduated", {"crash": 0.5, "wrong": 0.7, "timeout": 0.5, "ok": 1.0, "none": 0.5}),
])
def test_python_rewards_under_each_scheme(scheme, rewards):
    # The same checks scored under each scheme; only graduated (chosen explicitly) pays a crash its tier.
    records = {"crash": "def add(a, b):\n    return a + undefined\n", "wrong": "def add(a, b):\n    return a * b\n",
               "timeout": "def add(a, b):\n    while True:\n        pass\n", "ok": "def add(a, b):\n    return a + b\n"}
    batch = [{"id": k, "code": c, "tests": ADD_TESTS} for k, c in records.items()]
    batch.append({"id": "none", "code": "def add(a, b):\n    return a + b\n"})  # nothing to check
    out = verify_batch(batch, VerifierConfig(workers=2, timeout_s=1.0, reward=scheme))
    assert {r["id"]: r["reward"] for r in out} == pytest.approx(rewards)
    assert [r["verdict"] for r in out] == ["RUNTIME_ERROR", "WRONG_OUTPUT", "TIMEOUT", "SUCCESS", "UNTESTED"]
    assert all(sum(r["reward_components"].values()) == r["reward"] for r in out), out


def test_output_fields_and_order(verifier):
    records = [{"id": i, "code": f"def add(a, b):\n    return a + b + {i % 2}\n", "tests": ADD_TESTS} for i in range(6)]
    out = verifier.verify(records)
    assert [r["id"] for r in out] == list(range(6))
    assert [r["verdict"] for r in out] == ["SUCCESS", "WRONG_OUTPUT"] * 3
    assert set(out[0]) == {"id", "verdict", "reward", "pass_rate", "tests_passed", "tests_total", "duration_s", "detail",
                           "reward_components", "warnings"}
    assert out[1]["detail"].startswith("AssertionError")


def test_humaneval_convention(verifier):
    tests = "METADATA = {}\n\ndef check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
    good = one(verifier, verifier="humaneval", code="def sq(x):\n    return x * x\n", tests=tests, entry_point="sq")
    bad = one(verifier, verifier="humaneval", code="def sq(x):\n    return 4\n", tests=tests, entry_point="sq")
    assert (good["verdict"], good["pass_rate"]) == ("SUCCESS", 1.0)
    assert (bad["verdict"], bad["pass_rate"]) == ("WRONG_OUTPUT", 0.5)
    with pytest.raises(DataError, match="entry_point"):
        one(verifier, verifier="humaneval", code="x = 1", tests=tests)


def test_mbpp_records_from_the_dataset(verifier):
    from importlib import resources

    with (resources.files("halo_ray.data") / "files" / "mbpp.jsonl").open() as fh:  # shipped in the package
        problems = [json.loads(next(fh)) for _ in range(3)]
    records = [{"id": p["task_id"], "verifier": "mbpp", "code": p["code"], "test_list": p["test_list"],
                "test_setup_code": p["test_setup_code"]} for p in problems]
    broken = [dict(r, id=f"{r['id']}-broken", code=r["code"] + "\n" + "\n".join(
        f"def {name}(*a, **k):\n    return None" for name in _defined(r["code"]))) for r in records]
    out = verifier.verify(records + broken)
    assert [r["verdict"] for r in out[:3]] == ["SUCCESS"] * 3
    assert all(r["verdict"] == "WRONG_OUTPUT" and r["pass_rate"] == 0.0 for r in out[3:]), out[3:]


def _defined(code):
    import ast

    return [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]


def test_pytest_files(verifier):
    tests = "def test_a():\n    assert sq(2) == 4\n\ndef test_b():\n    assert sq(3) == 9\n"
    good = one(verifier, verifier="pytest", code="def sq(x):\n    return x * x\n", tests=tests)
    half = one(verifier, verifier="pytest", code="def sq(x):\n    return 4\n", tests=tests)
    assert (good["verdict"], good["pass_rate"]) == ("SUCCESS", 1.0)
    assert (half["verdict"], half["pass_rate"]) == ("WRONG_OUTPUT", 0.5)


@pytest.mark.parametrize("code,verdict", [
    ("print(2 * int(input()))", "SUCCESS"),
    ("print(3 * int(input()))", "WRONG_OUTPUT"),
    ("import sys\nprint(2 * int(input()))\nsys.exit(0)", "SUCCESS"),  # a clean exit is a normal end
    ("raise ValueError('boom')", "RUNTIME_ERROR"),
    ("while True:\n    pass", "TIMEOUT"),
])
def test_python_stdio(verifier, code, verdict):
    out = one(verifier, code=code, test_cases=C_CASES)
    assert out["verdict"] == verdict, out


# ----------------------------------------------------------------------------- C / C++ (seed 000 rewards)


@pytest.mark.parametrize("name,language", [("gcc", "c"), ("clang", "c"), ("g++", "cpp"), ("clang++", "cpp")])
def test_graduated_rewards(verifier, name, language):
    impl = VERIFIERS.get(name)()
    if impl.available():
        pytest.skip(impl.available())
    ok = C_DOUBLE if language == "c" else C_DOUBLE.replace("stdio.h", "cstdio")
    warn = ok.replace("int a;", "int a; int unused;")
    cases = {
        "syntax": (ok.replace("int main(void){", "int main(void){{"), C_CASES, "SYNTAX_ERROR", 0.0, False),
        "warnings only": (warn, [], "RUNTIME_ERROR", 0.3, True),  # no input: scanf fails, exit status 1
        "clean only": (ok, [], "RUNTIME_ERROR", 0.5, False),  # no input: scanf fails, exit status 1
        "wrong": (ok.replace("2*a", "3*a"), C_CASES, "WRONG_OUTPUT", 0.7, False),
        "correct": (ok, C_CASES, "SUCCESS", 1.0, False),
        "correct with warnings": (warn, C_CASES, "SUCCESS", 1.0, True),
        "crash": (ok.replace("return 0;", "int *p = 0; return *p;"), C_CASES, "RUNTIME_ERROR", 0.5, False),
        "hang": (ok.replace("return 0;", "volatile int spin = 1; while (spin) { } return 0;"), C_CASES[:1], "TIMEOUT", 0.5, False),
    }
    records = [{"id": k, "verifier": name, "language": language, "code": c, "test_cases": t}
               for k, (c, t, *_rest) in cases.items()]
    for record, (key, (_c, _t, verdict, reward, warnings)) in zip(verifier.verify(records), cases.items()):
        assert (record["verdict"], record["reward"], record["warnings"]) == (verdict, reward, warnings), (key, record)
        assert sum(record["reward_components"].values()) == record["reward"], (key, record)
        assert set(record["reward_components"]) == {"compile", "run", "correct"}


def test_a_clean_run_with_nothing_to_check_is_untested(verifier):
    # Not SUCCESS: nothing was checked. Graduated (auto for C) pays the compile tier, as seed 000's
    # compile-only verification does; pass_rate and pass_fail pay nothing.
    code = '#include <stdio.h>\nint main(void){puts("hi"); return 0;}\n'
    clean = one(verifier, language="c", code=code)
    warned = one(verifier, language="c", code=code.replace("{", "{int unused;", 1))
    assert (clean["verdict"], clean["reward"], clean["warnings"]) == ("UNTESTED", 0.5, False)
    assert (warned["verdict"], warned["reward"], warned["warnings"]) == ("UNTESTED", 0.3, True)
    assert (clean["pass_rate"], clean["tests_total"]) == (0.0, 0)
    strict = verify_batch([{"id": 1, "language": "c", "code": code}], VerifierConfig(workers=1, reward="pass_fail"))
    assert (strict[0]["verdict"], strict[0]["reward"]) == ("UNTESTED", 0.0)


@pytest.mark.parametrize("name,language,ok,bad", [
    ("rust", "rust", "use std::io::*;\nfn main(){let mut s=String::new();stdin().read_line(&mut s).unwrap();"
                     "let n:i64=s.trim().parse().unwrap();println!(\"{}\",n*2);}",
     "fn main(){ let x: i32 = \"a\"; }"),
    ("go", "go", "package main\nimport \"fmt\"\nfunc main(){var n int\nfmt.Scan(&n)\nfmt.Println(n*2)}",
     "package main\nfunc main(){ x := 1 }"),
])
def test_rust_and_go(verifier, name, language, ok, bad):
    reason = VERIFIERS.get(name)().available()
    if reason:
        pytest.skip(f"{name} verifier unavailable: {reason}")
    out = verifier.verify([{"id": 1, "language": language, "code": ok, "test_cases": C_CASES},
                           {"id": 2, "language": language, "code": ok.replace("2", "3"), "test_cases": C_CASES},
                           {"id": 3, "language": language, "code": bad, "test_cases": C_CASES}])
    assert [r["verdict"] for r in out] == ["SUCCESS", "WRONG_OUTPUT", "SYNTAX_ERROR"], out


# ----------------------------------------------------------------------------- registry, extraction, cache, infra


@pytest.mark.parametrize("name", VERIFIERS.names())
def test_every_registered_verifier_builds_and_plans(name):
    impl = VERIFIERS.get(name)()
    assert VERIFIERS.doc(name)
    if impl.available():
        pytest.skip(f"{name}: {impl.available()}")
    record = {"id": 1, "code": "def f():\n    return 1\n", "tests": "def test_f():\n    assert f() == 1\n",
              "entry_point": "f", "test_cases": [{"input": "", "output": "1"}]}
    if name == "humaneval":
        record["tests"] = "def check(c):\n    assert c() == 1\n"
    if getattr(impl, "in_process", False):  # scored in process by the pool (srl_trace): no sandbox request
        assert impl.plan({**record, "teacher_trace": "t"}, CFG) == {"in_process": True}
        with pytest.raises(DataError):
            impl.plan(record, CFG)
        return
    plan = impl.plan(record, CFG)
    assert plan["kind"] in ("python", "pytest", "python_stdio", "native")


def test_config_reads_the_registry():
    from halo_ray.config import from_dict

    assert from_dict(VerifierConfig, {"name": "g++"}).name == "g++"
    with pytest.raises(ConfigError, match="did you mean 'gcc'"):
        from_dict(VerifierConfig, {"name": "gcx"})
    with pytest.raises(ConfigError, match="unknown verifier 'nope'"):
        one_record_plan = {"id": 1, "code": "", "verifier": "nope"}
        plan_request(one_record_plan, CFG)
    with pytest.raises(ConfigError, match="verifier.reward: unknown reward scheme 'passrate'; did you mean 'pass_rate'"):
        Verifier(replace(CFG, reward="passrate"))  # built in Python, unvalidated: refused before a sandbox starts


def test_extract_code_from_markdown():
    text = "Here:\n```python\ndef f():\n    return 1\n```\nand C:\n```c\nint main(){}\n```\n"
    assert extract_code(text, "python") == "def f():\n    return 1\n"
    assert extract_code(text, "c") == "int main(){}\n"
    assert extract_code("```\nx = 1\n", "python") == "x = 1\n"  # cut at max tokens
    assert extract_code("x = 1", "python") == "x = 1"


def test_markdown_completion_verifies(verifier):
    out = one(verifier, code="Sure!\n```python\ndef add(a, b):\n    return a + b\n```\n", tests=ADD_TESTS)
    assert out["verdict"] == "SUCCESS"


def test_cache_runs_each_distinct_request_once(verifier):
    code = "import time\ndef add(a, b):\n    time.sleep(0.3)\n    return a + b\n"
    first = verifier.verify([{"id": i, "code": code, "tests": "assert add(1, 2) == 3"} for i in range(4)])
    assert len({r["duration_s"] for r in first}) == 1 and first[0]["verdict"] == "SUCCESS"
    again = one(verifier, code=code, tests="assert add(1, 2) == 3")
    assert again["duration_s"] == first[0]["duration_s"]
    changed = one(verifier, code=code, tests="assert add(1, 2) == 3", verifier="mbpp")
    assert changed["duration_s"] != first[0]["duration_s"]  # verifier is part of the key
    record = {"id": 1, "code": code, "tests": "assert add(1, 2) == 3"}
    keys = {scheme: Verifier.cache_key(plan_request(record, replace(CFG, reward=scheme)))
            for scheme in ("auto", "graduated", "pass_rate", "pass_fail")}
    assert keys["auto"] == keys["pass_rate"] and len(set(keys.values())) == 3  # so is the scheme it resolves to


def test_a_dead_sandbox_is_retried_as_infrastructure(verifier):
    workers = [verifier._idle.get() for _ in range(verifier.workers)]
    for w in workers:
        w.proc.kill()
        w.proc.wait()
        verifier._idle.put(w)
    out = verifier.verify([{"id": i, "code": f"def add(a, b):\n    return a + b + {i} * 0\n", "tests": ADD_TESTS}
                           for i in range(2)])
    assert [r["verdict"] for r in out] == ["SUCCESS", "SUCCESS"]


def test_missing_bubblewrap_is_a_sandbox_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        verify_batch([{"id": 1, "code": "x = 1"}], CFG)


def test_verify_batch_is_local():
    # A fresh interpreter: other tests in this process may already have imported torch or ray.
    code = (
        "import sys, json\n"
        "from halo_ray.verifiers import verify_batch\n"
        "from halo_ray.sections import VerifierConfig\n"  # the old home re-exports it
        f"out = verify_batch([{{'id': 'a', 'code': 'def add(a, b):\\n    return a + b\\n', 'tests': {ADD_TESTS!r}}}],\n"
        "                   VerifierConfig(timeout_s=2.0))\n"
        "print(json.dumps([out[0]['verdict'], 'ray' in sys.modules, 'torch' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["SUCCESS", False, False]


def test_cli_verify(tmp_path, monkeypatch, capsys):
    import halo_ray.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["verify"])  # other commands are not under test here
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "b", "code": "def add(a, b):\n    return 0\n", "tests": ADD_TESTS, "x": 1}) + "\n"
                   + json.dumps({"id": "a", "language": "c", "code": C_DOUBLE, "test_cases": C_CASES}) + "\n")
    dst = tmp_path / "out.jsonl"
    assert cli.main(["verify", "--input", str(src), "--output", str(dst), "--workers", "1", "--timeout", "2"]) == 0
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [(r["id"], r["verdict"]) for r in rows] == [("b", "WRONG_OUTPUT"), ("a", "SUCCESS")]
    src.write_text('{"id": 1, "code": "x"}\n{"id": 2, "language": "cobol", "code": "x"}\n')
    assert cli.main(["verify", "--input", str(src), "--output", str(tmp_path / "o2.jsonl")]) == 2
    assert f"{src}:2: unknown language 'cobol'" in capsys.readouterr().err
    assert not (tmp_path / "o2.jsonl").exists()


def test_binds_below_tmp_stay_visible_over_the_scratch_tmpfs(tmp_path):
    # A checkout (and its venv) under /tmp: the tmpfs on /tmp must come first, the binds on top of it.
    from halo_ray.sandbox import bwrap_argv

    argv = bwrap_argv(62001, [str(tmp_path)], 64)
    tmpfs = max(i for i, a in enumerate(argv) if a == "--tmpfs" and argv[i + 1] == "/tmp")
    bind = next(i for i, a in enumerate(argv) if a == "--ro-bind" and argv[i + 1] == str(tmp_path))
    assert tmpfs < bind


def test_an_interpreter_started_through_an_unbound_folder_still_runs_checks(tmp_path, monkeypatch):
    # `../.venv/bin/python bench.py` from a subfolder: sys.executable names a folder the sandbox does not
    # bind (here a temporary one, which is a tmpfs in there); the worker failed to start ("execvp").
    unbound = tmp_path / "elsewhere"
    unbound.mkdir()
    detour = str(unbound) + "/.." * len(unbound.parts[1:]) + os.path.abspath(sys.executable)
    assert os.path.samefile(detour, sys.executable)
    monkeypatch.setattr(sys, "executable", detour)
    with Verifier(replace(CFG, workers=1)) as v:
        assert one(v, code="def add(a, b):\n    return a + b\n", tests=ADD_TESTS)["verdict"] == "SUCCESS"
