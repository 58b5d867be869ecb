"""Paired tests on crafted results, the report's pictures, and the ``halo-ray benchmark`` commands."""

import json
import math
from statistics import fmean, stdev

import pytest

from halo_ray import cli
from halo_ray.bench import compare_results, load_result, paired_test, reward_curves, score_results, write_report
from halo_ray.errors import DataError

BASE = [0.1, 0.4, 0.0, 0.5, 0.3, 0.2]
TUNED = [0.2, 0.6, 0.05, 0.8, 0.45, 0.2]  # differences 0.1, 0.2, 0.05, 0.3, 0.15, 0


def result_file(path, scores, verdicts, pass10=None):
    per_problem = [{"id": f"P/{i}", "n": 10, "c": round(s * 10), "pass_at_k": {"1": s, "10": (pass10 or scores)[i]}}
                   for i, s in enumerate(scores)]
    data = {"model": path.stem, "problems": len(scores), "samples": 10 * len(scores),
            "pass_at_k": {"1": fmean(scores), "10": fmean(pass10 or scores)}, "verdicts": verdicts,
            "compile_rate": 1 - verdicts["SYNTAX_ERROR"] / sum(verdicts.values()), "per_problem": per_problem}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def two_files(tmp_path):
    a = result_file(tmp_path / "base.json", BASE, {"SUCCESS": 15, "WRONG_OUTPUT": 20, "RUNTIME_ERROR": 10,
                                                    "TIMEOUT": 5, "SYNTAX_ERROR": 10})
    b = result_file(tmp_path / "raft.json", TUNED, {"SUCCESS": 23, "WRONG_OUTPUT": 20, "RUNTIME_ERROR": 8,
                                                     "TIMEOUT": 2, "SYNTAX_ERROR": 7}, pass10=BASE)
    return a, b


def test_paired_t_matches_the_hand_formula():
    d = [b - a for a, b in zip(BASE, TUNED)]
    n = len(d)
    t_hand = fmean(d) / (stdev(d) / math.sqrt(n))
    out = paired_test(BASE, TUNED)
    assert out["t"] == pytest.approx(t_hand, rel=1e-12)
    assert out["mean_diff"] == pytest.approx(0.8 / 6)
    assert 0 < out["p_t"] < 0.05
    # 95% CI: mean +- t(0.975, 5) * sd / sqrt(n), t(0.975, 5) = 2.5706 (tables)
    half = 2.570582 * stdev(d) / math.sqrt(n)
    assert out["ci_low"] == pytest.approx(fmean(d) - half, abs=1e-6)
    assert out["ci_high"] == pytest.approx(fmean(d) + half, abs=1e-6)
    # Wilcoxon drops the zero difference; ranks of |d| 0.05..0.3 are 1..5, all positive: W- = 0
    assert out["wilcoxon_w"] == 0.0 and out["p_wilcoxon"] < 0.1
    assert out["note"] == ""


def test_degenerate_differences_do_not_crash():
    same = paired_test(BASE, BASE)
    assert same["p_t"] == 1.0 and same["p_wilcoxon"] == 1.0 and same["t"] == 0.0
    assert "all per-problem differences are zero" in same["note"]
    shifted = paired_test(BASE, [s + 0.1 for s in BASE[:3]] + [s + 0.1 for s in BASE[3:]])
    assert shifted["t"] is None and "zero variance" in shifted["note"]
    assert shifted["mean_diff"] == pytest.approx(0.1)
    one = paired_test([0.1], [0.5])
    assert one["p_t"] is None and "at least 2" in one["note"]


def test_compare_results_pairs_by_problem_id(two_files, tmp_path):
    a, b = (load_result(p) for p in two_files)
    b["per_problem"] = list(reversed(b["per_problem"]))[:-1] + [{"id": "extra", "n": 1, "c": 0,
                                                                 "pass_at_k": {"1": 0.0, "10": 0.0}}]
    out = compare_results([a, b], ["base", "raft"])
    at1, at10 = out["tests"]
    assert (at1["k"], at10["k"]) == ("1", "10")
    assert at1["n"] == 5 and at1["only_baseline"] == 1 and at1["only_stage"] == 1  # P/0 dropped, 'extra' unpaired
    d = [TUNED[i] - BASE[i] for i in range(1, 6)]
    assert at1["t"] == pytest.approx(fmean(d) / (stdev(d) / math.sqrt(5)))
    assert at10["p_t"] == 1.0  # the tuned file's pass@10 equals the baseline's
    with pytest.raises(DataError, match="names repeat"):
        compare_results([a, b], ["x", "x"])


def test_load_result_names_what_is_missing(tmp_path):
    (tmp_path / "bad.json").write_text('{"model": "m"}')
    with pytest.raises(DataError, match="missing problems, samples, pass_at_k"):
        load_result(tmp_path / "bad.json")


def test_report_pictures_exist_and_are_pngs(two_files, tmp_path):
    run = tmp_path / "runs" / "raft"
    run.mkdir(parents=True)
    lines = [{"cycle": c, "step": s, "reward_mean": 0.2 + 0.1 * c + 0.01 * s} for c in range(3) for s in range(2)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"cycle\": 3, \"rew")
    curves = reward_curves([run])
    assert curves == {"raft": [(0, pytest.approx(0.205)), (1, pytest.approx(0.305)), (2, pytest.approx(0.405))]}
    comparison = compare_results([load_result(p) for p in two_files], ["base", "raft"])
    files = write_report(comparison, tmp_path / "report", curves)
    for kind in ("pass_at_k", "verdicts", "rewards"):
        data = files[kind].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, kind
    md = files["markdown"].read_text()
    assert "![pass@k per stage](pass_at_k.png)" in md and "![reward per cycle](rewards.png)" in md
    assert "| raft vs base | pass@1 | 6 |" in md
    page = files["html"].read_text()
    assert page.count("src='data:image/png;base64,") == 3
    assert json.loads(files["json"].read_text())["tests"][0]["t"] == pytest.approx(comparison["tests"][0]["t"])


@pytest.fixture
def bench_cli(monkeypatch):
    assert "bench" in cli.COMMAND_MODULES
    # other command groups are written concurrently; this test exercises only ours
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["bench"])
    return cli.main


def test_compare_command_writes_report_and_prints_table(bench_cli, two_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps cells to the terminal width
    assert bench_cli(["benchmark", "compare", *map(str, two_files), "--output", str(tmp_path / "out"),
                      "--names", "base,raft"]) == 0
    printed = capsys.readouterr().out
    assert "raft vs base" in printed and "pass@1" in printed
    assert (tmp_path / "out" / "verdicts.png").stat().st_size > 2000
    assert (tmp_path / "out" / "report.html").is_file()


def test_compare_command_reports_user_errors(bench_cli, two_files, tmp_path, capsys):
    assert bench_cli(["benchmark", "compare", str(two_files[0]), str(tmp_path / "missing.json"),
                      "--output", str(tmp_path / "out")]) == 2
    assert "missing.json: results file not found" in capsys.readouterr().err


def test_run_command_checks_ks_against_samples(bench_cli, tmp_path, capsys):
    assert bench_cli(["benchmark", "run", "--problems", "p.jsonl", "--samples", "5", "--k", "1,10"]) == 2
    assert "above rollout.samples_per_prompt=5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_cli(["benchmark", "run", "--k", "1,x"])
    assert "comma-separated" in capsys.readouterr().err


def test_score_results_output_is_accepted_by_compare(tmp_path):
    timing = {"generation_s": None, "verification_s": 0.0, "total_s": 0.0}
    reports = [score_results([{"id": "a"}, {"id": "b"}], {"a": [{"verdict": va}] * 2, "b": [{"verdict": vb}] * 2},
                             [1], model=name, timing=timing)
               for name, va, vb in (("x", "SUCCESS", "TIMEOUT"), ("y", "SUCCESS", "SUCCESS"))]
    for name, report in zip("xy", reports):
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    out = compare_results([load_result(tmp_path / "x.json"), load_result(tmp_path / "y.json")], ["x", "y"])
    assert out["tests"][0]["mean_diff"] == pytest.approx(0.5)


def test_run_command_scores_a_samples_file_through_the_real_verifier(bench_cli, tmp_path, capsys):
    from halo_ray.data import load_source, write_problems

    problems = [p for p in load_source("humaneval") if p.id in ("HumanEval/0", "HumanEval/2")]
    write_problems(tmp_path / "problems.jsonl", problems)
    samples = [{"prompt_id": p.id, "completion": text} for p in problems
               for text in (p.metadata["completion"], "    return None\n", "    return (\n")]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    out = tmp_path / "results.json"
    assert bench_cli(["benchmark", "run", "--problems", str(tmp_path / "problems.jsonl"), "--samples-file",
                      str(tmp_path / "samples.jsonl"), "--k", "1,3", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(r["id"], r["n"], r["c"]) for r in report["per_problem"]] == [("HumanEval/0", 3, 1), ("HumanEval/2", 3, 1)]
    assert report["pass_at_k"] == pytest.approx({"1": 1 / 3, "3": 1.0})
    assert report["verdicts"]["SYNTAX_ERROR"] == 2 and report["verdicts"]["WRONG_OUTPUT"] == 2
    assert report["compile_rate"] == pytest.approx(4 / 6)
    assert "pass@1" in capsys.readouterr().out


def test_stage_curve_picture_is_written(tmp_path):
    from halo_ray.bench.report import plot_stage_curve

    stages = [{"name": "sft", "pass_at_1": 0.5}, {"name": "raft_cycle_1", "pass_at_1": 0.6}]
    out = plot_stage_curve(stages, tmp_path / "stages.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 2000
