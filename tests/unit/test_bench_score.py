"""Building programs from problem + completion, results.json scoring, and run_benchmark end to end."""

import json
from pathlib import Path

import pyarrow as pa
import pytest

from halo_ray.bench import VERDICTS, build_program, run_benchmark, score_results, verify_record
from halo_ray.config import load_config
from halo_ray.data import load_source
from halo_ray.errors import DataError
from halo_ray.sections import BenchmarkJobConfig

HUMANEVAL = {p.id: p for p in load_source("humaneval")}


def run_in_process(record: dict) -> dict:
    """Verdict of trusted test code, run in this process (HumanEval's check convention)."""
    try:
        compile(record["code"], "program", "exec")
    except SyntaxError:
        return {"id": record["id"], "verdict": "SYNTAX_ERROR", "reward": 0.0}
    scope: dict = {}
    try:
        exec(record["code"], scope)
        exec(record["tests"], scope)
        if record.get("entry_point") and "check" in scope:
            scope["check"](scope[record["entry_point"]])
    except AssertionError:
        return {"id": record["id"], "verdict": "WRONG_OUTPUT", "reward": 0.7}
    except Exception:
        return {"id": record["id"], "verdict": "RUNTIME_ERROR", "reward": 0.5}
    return {"id": record["id"], "verdict": "SUCCESS", "reward": 1.0}


@pytest.mark.parametrize("pid", ["HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/38"])
def test_canonical_body_continues_the_prompt_and_passes(pid):
    problem = HUMANEVAL[pid].to_dict()
    code = build_program(problem, problem["metadata"]["completion"])
    assert code == problem["prompt"] + problem["metadata"]["completion"]
    assert run_in_process({**verify_record(problem, problem["metadata"]["completion"], "x")})["verdict"] == "SUCCESS"


@pytest.mark.parametrize("pid", ["HumanEval/0", "HumanEval/10", "HumanEval/38"])
def test_fenced_full_definition_keeps_prompt_imports_and_helpers(pid):
    # HumanEval/10 and /38 define helper functions before the entry point; /0 imports typing.List.
    problem = HUMANEVAL[pid].to_dict()
    prompt, entry = problem["prompt"], problem["entry_point"]
    start = prompt.index(f"def {entry}(")
    full_def = prompt[start:] + problem["metadata"]["completion"]
    completion = f"Here is my solution:\n```python\n{full_def}```\nIt works because..."
    code = build_program(problem, completion)
    assert code == prompt[:start] + full_def
    assert code.count(f"def {entry}(") == 1
    assert run_in_process(verify_record(problem, completion, "x"))["verdict"] == "SUCCESS"


def test_program_without_entry_point_is_the_completion_alone():
    mbpp = {"id": "mbpp/2", "prompt": "Write a function to add.\nassert add(1, 2) == 3\n", "tests": "assert add(1, 2) == 3"}
    assert build_program(mbpp, "def add(a, b):\n    return a + b\n") == "def add(a, b):\n    return a + b\n"
    stdin = {"id": "p", "prompt": "Read two ints, print the sum.", "test_cases": [{"input": "1 2", "output": "3"}]}
    record = verify_record(stdin, "```python\nprint(sum(map(int, input().split())))\n", "p#0")  # unclosed fence
    assert record == {"id": "p#0", "language": "python", "code": "print(sum(map(int, input().split())))\n",
                      "entry_point": None, "test_cases": [{"input": "1 2", "output": "3"}]}


def test_brace_languages_detect_a_full_definition():
    problem = {"id": "c", "language": "c", "entry_point": "add", "prompt": "#include <stdio.h>\nint add(int a, int b) {\n"}
    assert build_program(problem, "  return a + b;\n}\n") == problem["prompt"] + "  return a + b;\n}\n"
    full = "int add(int a, int b) { return a + b; }\n"
    assert build_program(problem, full) == "#include <stdio.h>\n" + full


def results(*verdicts):
    reward = {"SUCCESS": 1.0, "WRONG_OUTPUT": 0.7, "RUNTIME_ERROR": 0.5, "TIMEOUT": 0.5, "SYNTAX_ERROR": 0.0}
    return [{"id": f"s{i}", "verdict": v, "reward": reward[v]} for i, v in enumerate(verdicts)]


def check_schema(report: dict, ks: list[int]) -> None:
    keys = {"model", "problems", "samples", "ks", "pass_at_k", "verdicts", "compile_rate", "reward_mean",
            "timing", "by_category", "per_problem", "settings"}
    assert set(report) - {"subset", "n_problems"} == keys  # run_benchmark adds these two
    assert isinstance(report["model"], str) and isinstance(report["problems"], int)
    assert set(report["pass_at_k"]) == {str(k) for k in ks}
    assert all(0.0 <= v <= 1.0 for v in report["pass_at_k"].values())
    assert list(report["verdicts"])[:len(VERDICTS)] == list(VERDICTS)  # every verdict, then unknown ones
    assert sum(report["verdicts"].values()) == report["samples"]
    assert set(report["timing"]) == {"generation_s", "verification_s", "total_s", "per_problem_s"}
    assert len(report["per_problem"]) == report["problems"]
    for row in report["per_problem"]:
        assert {"id", "n", "c", "pass_at_k", "verdicts", "reward_mean", "category"} <= set(row)
        assert 0 <= row["c"] <= row["n"] and set(row["pass_at_k"]) == {str(k) for k in ks}
    assert json.loads(json.dumps(report)) == report  # plain JSON, nothing lost


def test_score_results_structure_and_numbers():
    problems = [{"id": "a", "metadata": {"category": "strings"}}, {"id": "b", "source": "mbpp"},
                {"id": "c", "metadata": {"category": "strings"}}]
    grouped = {
        "a": results("SUCCESS", "SUCCESS", "WRONG_OUTPUT", "SYNTAX_ERROR"),
        # every sample compiles and none passes: halo-forge would have counted this a pass
        "b": results("WRONG_OUTPUT", "RUNTIME_ERROR", "TIMEOUT", "WRONG_OUTPUT"),
        "c": results("SUCCESS", "SYNTAX_ERROR", "SYNTAX_ERROR", "SYNTAX_ERROR"),
    }
    report = score_results(problems, grouped, [1, 2], model="m",
                           timing={"generation_s": 4.0, "verification_s": 1.0, "total_s": 6.0})
    check_schema(report, [1, 2])
    assert report["problems"] == 3 and report["samples"] == 12
    # pass@1 = c/n per problem; pass@2 = 1 - C(n-c,2)/C(4,2): a 1-1/6, b 0, c 1-3/6
    assert report["pass_at_k"]["1"] == pytest.approx((0.5 + 0 + 0.25) / 3)
    assert report["pass_at_k"]["2"] == pytest.approx((5 / 6 + 0 + 0.5) / 3)
    assert report["verdicts"] == {"SUCCESS": 3, "WRONG_OUTPUT": 3, "RUNTIME_ERROR": 1, "TIMEOUT": 1, "SYNTAX_ERROR": 4,
                                  "UNTESTED": 0, "FAILED": 0}
    assert report["compile_rate"] == pytest.approx(8 / 12)
    assert report["timing"]["per_problem_s"] == pytest.approx(2.0)
    assert [(r["id"], r["n"], r["c"]) for r in report["per_problem"]] == [("a", 4, 2), ("b", 4, 0), ("c", 4, 1)]
    assert report["per_problem"][1]["pass_at_k"] == {"1": 0.0, "2": 0.0}
    assert set(report["by_category"]) == {"strings", "mbpp"}
    strings = report["by_category"]["strings"]
    assert strings["problems"] == 2 and strings["samples"] == 8
    assert strings["pass_at_k"]["1"] == pytest.approx((0.5 + 0.25) / 2)
    assert strings["compile_rate"] == pytest.approx(4 / 8)


def test_no_categories_means_no_breakdown_and_unknown_verdicts_are_kept():
    report = score_results([{"id": "a"}], {"a": [{"verdict": "SUCCESS"}, {"verdict": "SANDBOX_ERROR"}]}, [1],
                           model="m", timing={"generation_s": None, "verification_s": 0.1, "total_s": 0.2})
    assert report["by_category"] == {}
    assert report["verdicts"]["SANDBOX_ERROR"] == 1 and report["samples"] == 2
    assert report["reward_mean"] is None


def test_score_results_rejects_what_it_cannot_score():
    timing = {"generation_s": None, "verification_s": 0.0, "total_s": 0.0}
    with pytest.raises(DataError, match="'a': pass@k: k must be in 1..n=2"):
        score_results([{"id": "a"}], {"a": results("SUCCESS", "SUCCESS")}, [1, 10], model="m", timing=timing)
    with pytest.raises(DataError, match=r"1 problem\(s\) have no samples, e.g. \['b'\]"):
        score_results([{"id": "a"}, {"id": "b"}], {"a": results("SUCCESS")}, [1], model="m", timing=timing)
    with pytest.raises(DataError, match="not in the problems file"):
        score_results([{"id": "a"}], {"a": results("SUCCESS"), "z": results("SUCCESS")}, [1], model="m", timing=timing)


def bench_config(tmp_path, *extra):
    return load_config(BenchmarkJobConfig, overrides=[
        "rollout.samples_per_prompt=4", "benchmark.ks=[1,2,4]", f"benchmark.output={tmp_path / 'results.json'}",
        f"benchmark.save_samples={tmp_path / 'scored.jsonl'}", *extra])


def humaneval_completions(pid):
    """Two correct completions (a body; a fenced full definition), one wrong, one that does not parse."""
    p = HUMANEVAL[pid]
    start = p.prompt.index(f"def {p.entry_point}(")
    full = p.prompt[start:] + p.metadata["completion"]
    return [p.metadata["completion"], f"```python\n{full}```", "    return None\n", "    return (\n"]


def test_run_benchmark_generates_verifies_scores_and_writes(tmp_path):
    pids = ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    seen_prompts = []

    def generate(prompts):
        seen_prompts.extend(prompts)
        return pa.Table.from_pylist([{"prompt_id": p["prompt_id"], "sample_index": i, "completion": text}
                                     for p in prompts for i, text in enumerate(humaneval_completions(p["prompt_id"]))])

    def verify(records):
        return [run_in_process(r) for r in records]

    config = bench_config(tmp_path)
    report = run_benchmark(config, [HUMANEVAL[pid] for pid in pids], generate, verify)
    assert seen_prompts == [{"prompt_id": pid, "prompt": HUMANEVAL[pid].prompt} for pid in pids]
    check_schema(report, [1, 2, 4])
    assert [(r["id"], r["n"], r["c"]) for r in report["per_problem"]] == [(pid, 4, 2) for pid in pids]
    assert report["pass_at_k"] == pytest.approx({"1": 0.5, "2": 5 / 6, "4": 1.0})
    assert report["verdicts"] == {"SUCCESS": 6, "WRONG_OUTPUT": 3, "RUNTIME_ERROR": 0, "TIMEOUT": 0, "SYNTAX_ERROR": 3,
                                  "UNTESTED": 0, "FAILED": 0}
    assert report["compile_rate"] == pytest.approx(0.75)
    assert report["by_category"]["humaneval"]["problems"] == 3
    assert report["timing"]["generation_s"] >= 0 and report["settings"]["samples_per_prompt"] == 4
    assert json.loads((tmp_path / "results.json").read_text()) == report
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [(s["prompt_id"], s["sample_index"], s["verdict"]) for s in scored[:4]] == [
        ("HumanEval/0", 0, "SUCCESS"), ("HumanEval/0", 1, "SUCCESS"),
        ("HumanEval/0", 2, "WRONG_OUTPUT"), ("HumanEval/0", 3, "SYNTAX_ERROR")]


def test_run_benchmark_scores_given_samples_without_generating(tmp_path):
    samples = [{"id": "HumanEval/0", "completion": text} for text in humaneval_completions("HumanEval/0")[::-1]]
    config = bench_config(tmp_path, "benchmark.samples_file=given.jsonl")
    report = run_benchmark(config, [HUMANEVAL["HumanEval/0"]], None,
                           lambda records: [run_in_process(r) for r in records], samples=samples)
    assert report["timing"]["generation_s"] is None
    assert report["per_problem"][0]["c"] == 2 and report["settings"]["samples_file"] == "given.jsonl"


def test_run_benchmark_rejects_bad_samples(tmp_path):
    config = bench_config(tmp_path)
    verify = lambda records: [run_in_process(r) for r in records]  # noqa: E731
    problem = HUMANEVAL["HumanEval/0"]
    with pytest.raises(DataError, match="record 2: prompt_id 'nope' is not in the problems file"):
        run_benchmark(config, [problem], None, verify,
                      samples=[{"prompt_id": "HumanEval/0", "completion": ""}, {"prompt_id": "nope", "completion": ""}])
    with pytest.raises(DataError, match="record 2: sample 0 of 'HumanEval/0' appears twice"):
        run_benchmark(config, [problem], None, verify, samples=[
            {"prompt_id": "HumanEval/0", "sample_index": 0, "completion": ""},
            {"prompt_id": "HumanEval/0", "sample_index": 0, "completion": ""}])
    with pytest.raises(DataError, match="verifier returned no result for 4"):
        run_benchmark(config, [problem], None, lambda records: [],
                      samples=[{"id": "HumanEval/0", "completion": ""}] * 4)


def test_benchmark_yaml_loads_with_seed_002_settings():
    config = load_config(BenchmarkJobConfig, Path(__file__).parents[2] / "configs" / "benchmark.yaml")
    r = config.rollout
    assert (r.samples_per_prompt, r.temperature, r.top_p, r.seed) == (10, 0.8, 0.95, 42)
    assert config.benchmark.ks == (1, 10)


def test_importing_bench_stays_light():
    import subprocess
    import sys

    code = ("import sys, halo_ray.bench, halo_ray.cli.bench; "
            "print(sorted(m for m in ('ray', 'torch', 'vllm', 'scipy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
