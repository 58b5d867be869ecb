"""``halo-ray benchmark run|compare`` and ``jobs/benchmark.py`` end to end: the tiny model on a real Ray cluster.

The sampling runs are subprocesses that join the session's cluster (RAY_ADDRESS), as a user's
command or a ``ray job submit`` of the job script would; each one stops its own actors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from halo_ray.verifiers.verdicts import VERDICTS

REPO = Path(__file__).resolve().parents[2]
HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))  # the console script a user runs
CONFIG = str(REPO / "configs" / "benchmark.yaml")
# configs/benchmark.yaml sampling (temperature 0.8, top-p 0.95, seed 42), made small.
SAMPLES, KS, MAX_NEW = 4, "1,4", 24
KEYS = {"model", "problems", "samples", "pass_at_k", "verdicts", "compile_rate", "timing", "by_category", "per_problem"}


def run(cmd: list[str], env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert done.returncode == 0, f"{cmd[:3]} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def by_id(report: dict) -> dict[str, dict]:
    return {row["id"]: row for row in report["per_problem"]}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def bench(ray_session, tiny_model, tmp_path_factory):
    """Four held-out demo problems (int, int, list, str) and one ``halo-ray benchmark run`` of the tiny model."""
    from halo_ray.data import write_problems
    from halo_ray.data.demo import demo_problems

    tmp = tmp_path_factory.mktemp("bench")
    wanted = {"add": None, "mul": None, "head": None, "repeat": None}
    for p in demo_problems():
        op = p.metadata["operation"]
        if p.metadata["stage"] == "heldout" and op in wanted and wanted[op] is None:
            wanted[op] = p
    chosen = list(wanted.values())
    assert all(chosen)
    problems = tmp / "problems.jsonl"
    write_problems(problems, chosen)
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    out, saved = tmp / "first.json", tmp / "first_samples.jsonl"
    done = run([HALO_RAY, "benchmark", "run", "--config", CONFIG, "--model", tiny_model, "--problems", str(problems),
                "--samples", str(SAMPLES), "--k", KS, "--max-new-tokens", str(MAX_NEW),
                "--output", str(out), "--save-samples", str(saved)], env)
    return {"tmp": tmp, "env": env, "problems": problems, "chosen": chosen, "out": out, "saved": saved,
            "stdout": done.stdout, "model": tiny_model}


def test_run_writes_the_results_schema(bench):
    report = json.loads(bench["out"].read_text())
    assert KEYS <= set(report), sorted(KEYS - set(report))
    assert report["model"] == bench["model"]
    assert report["problems"] == 4 and report["samples"] == 4 * SAMPLES
    assert set(report["pass_at_k"]) == {"1", "4"}
    assert all(0.0 <= v <= 1.0 for v in report["pass_at_k"].values())
    assert report["pass_at_k"]["1"] <= report["pass_at_k"]["4"]
    assert set(report["verdicts"]) == set(VERDICTS) and sum(report["verdicts"].values()) == 4 * SAMPLES
    assert 0.0 <= report["compile_rate"] <= 1.0
    assert report["timing"]["generation_s"] > 0 and report["timing"]["verification_s"] > 0
    assert report["timing"]["total_s"] >= report["timing"]["generation_s"]
    assert set(report["by_category"]) == {"int", "list", "str"}
    rows = by_id(report)
    assert set(rows) == {p.id for p in bench["chosen"]}
    for row in rows.values():
        assert row["n"] == SAMPLES and 0 <= row["c"] <= SAMPLES
        assert sum(row["verdicts"].values()) == SAMPLES
    assert sum(r["c"] for r in rows.values()) == report["verdicts"].get("SUCCESS", 0)
    saved = read_jsonl(bench["saved"])
    assert len(saved) == 4 * SAMPLES
    assert sorted({s["sample_index"] for s in saved}) == list(range(SAMPLES))
    assert "pass@1" in bench["stdout"] and f"wrote {bench['out']}" in bench["stdout"]


def test_job_script_with_the_same_seed_repeats_the_run(bench):
    """``jobs/benchmark.py`` as ``ray job submit`` runs it: same config and seed, same samples and c's."""
    out, saved = bench["tmp"] / "job.json", bench["tmp"] / "job_samples.jsonl"
    done = run([sys.executable, str(REPO / "jobs" / "benchmark.py"), "--config", CONFIG,
                "--set", f"model.path={bench['model']}", "--set", f"benchmark.problems={bench['problems']}",
                "--set", f"rollout.samples_per_prompt={SAMPLES}", "--set", f"rollout.max_new_tokens={MAX_NEW}",
                "--set", f"benchmark.ks=[{KS}]", "--set", f"benchmark.output={out}",
                "--set", f"benchmark.save_samples={saved}"], bench["env"])
    assert "4 problems, 16 samples: pass@1" in done.stdout and f"wrote {out}" in done.stdout
    first, again = json.loads(bench["out"].read_text()), json.loads(out.read_text())
    assert {i: r["c"] for i, r in by_id(again).items()} == {i: r["c"] for i, r in by_id(first).items()}
    assert {i: r["verdicts"] for i, r in by_id(again).items()} == {i: r["verdicts"] for i, r in by_id(first).items()}
    key = lambda s: (s["prompt_id"], s["sample_index"])  # noqa: E731
    assert [(key(s), s["completion"]) for s in sorted(read_jsonl(saved), key=key)] == \
        [(key(s), s["completion"]) for s in sorted(read_jsonl(bench["saved"]), key=key)], "seeded sampling"


def test_saved_samples_score_the_same_and_a_right_answer_counts(bench):
    tmp = bench["tmp"]
    out = tmp / "rescored.json"
    run([HALO_RAY, "benchmark", "run", "--config", CONFIG, "--problems", str(bench["problems"]),
         "--samples-file", str(bench["saved"]), "--k", KS, "--output", str(out)])
    first, rescored = json.loads(bench["out"].read_text()), json.loads(out.read_text())
    assert {i: (r["n"], r["c"]) for i, r in by_id(rescored).items()} == \
        {i: (r["n"], r["c"]) for i, r in by_id(first).items()}
    assert rescored["timing"]["generation_s"] is None and rescored["verdicts"] == first["verdicts"]
    # The same file with the reference completion for one problem: scoring sees every success.
    right = bench["chosen"][0]
    fixed = tmp / "fixed_samples.jsonl"
    fixed.write_text("".join(
        json.dumps({**s, "completion": right.metadata["completion"]} if s["prompt_id"] == right.id else s) + "\n"
        for s in read_jsonl(bench["saved"])))
    out2 = tmp / "fixed.json"
    run([HALO_RAY, "benchmark", "run", "--config", CONFIG, "--problems", str(bench["problems"]),
         "--samples-file", str(fixed), "--k", KS, "--output", str(out2)])
    report = json.loads(out2.read_text())
    assert by_id(report)[right.id]["c"] == SAMPLES and by_id(report)[right.id]["pass_at_k"]["1"] == 1.0
    assert report["pass_at_k"]["4"] >= 0.25


def test_compare_writes_report_images(bench):
    tmp = bench["tmp"]
    results = [bench["out"], tmp / "job.json", tmp / "rescored.json"]
    if not all(p.exists() for p in results):
        pytest.skip("needs the earlier runs of this module")
    report_dir = tmp / "report"
    done = run([HALO_RAY, "benchmark", "compare", *map(str, results), "--names", "cli,job,rescored",
                "--output", str(report_dir)])
    for name in ("pass_at_k.png", "verdicts.png"):
        image = report_dir / name
        assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 1000
    comparison = json.loads((report_dir / "compare.json").read_text())
    assert [s["name"] for s in comparison["stages"]] == ["cli", "job", "rescored"]
    md = (report_dir / "report.md").read_text()
    assert "pass_at_k.png" in md and (report_dir / "report.html").stat().st_size > 0
    assert "report.md" in done.stdout
