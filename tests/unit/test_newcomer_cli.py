"""A newcomer's first hour, command by command (issue 16): the SPEC grammar everywhere, one sample
record from generate to verify, validate for every kind, formats by extension, standard benchmark
sets, run manifests, readable output outside a terminal, config checks, --version and clean help.

Every test runs the real ``halo-ray`` entry point (in-process, or as a subprocess where a pipe
matters); none starts Ray.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import halo_ray
import halo_ray.cli as cli
from halo_ray.data.sources import problems_from_spec

HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _start_without_ray():
    """These tests check that a command starts no Ray session: begin from none (an integration test
    earlier in the same pytest process may have left one)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    yield


def _no_ray_session() -> bool:
    ray = sys.modules.get("ray")
    return ray is None or not ray.is_initialized()


def humaneval_samples(path: Path, count: int = 3) -> Path:
    """Sample records as `halo-ray generate` writes them for humaneval#all: one right, one wrong per problem."""
    problems = problems_from_spec("humaneval#all")[:count]
    with path.open("w") as fh:
        for p in problems:
            for index, completion in enumerate([p.metadata["completion"], "    return None\n"]):
                fh.write(json.dumps({"prompt_id": p.id, "sample_index": index, "prompt": p.prompt,
                                     "completion": completion, "token_ids": [1, 2], "tests": p.tests,
                                     "entry_point": p.entry_point, "language": p.language}) + "\n")
    return path


# --- standard benchmark sets beside the seeded splits -------------------------------------------

def test_standard_sets_are_the_published_ones():
    humaneval = problems_from_spec("humaneval#all")
    assert len(humaneval) == 164
    official = problems_from_spec("mbpp#official_test")
    assert len(official) == 500
    assert sorted(p.metadata["task_id"] for p in official) == list(range(11, 511))
    assert len(problems_from_spec("humaneval#test")) == 49  # the seeded split stays what it was


def test_results_and_reports_name_their_subset_and_n(capsys, tmp_path):
    problems = tmp_path / "three.jsonl"
    code, _, err = run(capsys, "data", "prepare", "--dataset", "humaneval#all", "--output", str(problems))
    assert code == 0, err
    problems.write_text("".join(problems.read_text().splitlines(keepends=True)[:3]))
    samples = humaneval_samples(tmp_path / "samples.jsonl")
    results = tmp_path / "results.json"
    code, out, err = run(capsys, "benchmark", "run", "--problems", f"{problems}#all", "--samples-file", str(samples),
                         "--output", str(results), "--k", "1,2")
    assert code == 0, err
    report = json.loads(results.read_text())
    assert report["subset"] == f"{problems}#all" and report["n_problems"] == 3
    assert report["pass_at_k"] == {"1": 0.5, "2": 1.0}
    assert f"on {problems}#all: n=3 problems" in out
    code, out, err = run(capsys, "benchmark", "compare", str(results), str(results), "--names", "a,b",
                         "--output", str(tmp_path / "cmp"))
    assert code == 0, err
    comparison = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    for stage in comparison["stages"]:
        assert stage["subset"] == f"{problems}#all" and stage["problems"] == 3
        low, high = stage["pass_at_k_ci"]["1"]
        assert low <= stage["pass_at_k"]["1"] <= high
    assert "subset" in (tmp_path / "cmp" / "report.md").read_text()


# --- one SPEC grammar ---------------------------------------------------------------------------

def test_spec_works_in_prepare_and_benchmark(capsys, tmp_path):
    out_file = tmp_path / "heldout.jsonl"
    code, out, err = run(capsys, "data", "prepare", "--dataset", "demo#heldout", "--output", str(out_file))
    assert code == 0, err
    assert len(out_file.read_text().splitlines()) == len(problems_from_spec("demo#heldout")) == 232


@pytest.mark.parametrize("argv", [
    ["data", "prepare", "--dataset", "demo:heldout", "--output", "{tmp}/x.jsonl"],
    ["generate", "--prompts", "demo:heldout", "--output", "{tmp}/x.jsonl"],
    ["benchmark", "run", "--problems", "demo:heldout", "--samples-file", "{tmp}/s.jsonl"],
    ["data", "generate", "--prompts", "demo:heldout", "--backend", "openai", "--model", "m", "--output", "{tmp}/x.jsonl"],
])
def test_a_wrong_spec_is_one_clear_error_naming_the_grammar(capsys, tmp_path, argv):
    (tmp_path / "s.jsonl").write_text("")
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert "demo#heldout" in err and "a SPEC is FILE.jsonl, FILE.parquet or SOURCE[:ARG]" in err, err
    assert "Traceback" not in err and _no_ray_session()


def test_unknown_part_lists_the_known_ones(capsys, tmp_path):
    code, _, err = run(capsys, "data", "prepare", "--dataset", "mbpp#official_tset", "--output", str(tmp_path / "x.jsonl"))
    assert code == 2 and "official_test" in err and "all" in err


# --- one record shape: generate -> verify, formats by extension -------------------------------------

def test_generate_output_verifies_as_it_is_and_parquet_by_extension(capsys, tmp_path):
    samples = humaneval_samples(tmp_path / "samples.jsonl")
    out = tmp_path / "results.parquet"
    code, _, err = run(capsys, "verify", "--input", str(samples), "--output", str(out))
    assert code == 0, err
    assert out.read_bytes()[:4] == b"PAR1"
    rows = pq.read_table(out).to_pylist()
    assert [(r["prompt_id"], r["sample_index"], r["verdict"]) for r in rows[:2]] == [
        ("HumanEval/0", 0, "SUCCESS"), ("HumanEval/0", 1, "WRONG_OUTPUT")]
    # and Parquet in: the same samples as Parquet verify the same
    import pyarrow as pa

    as_parquet = tmp_path / "samples.parquet"
    pq.write_table(pa.Table.from_pylist([json.loads(l) for l in samples.read_text().splitlines()]), as_parquet)
    code, _, err = run(capsys, "verify", "--input", str(as_parquet), "--output", str(tmp_path / "again.jsonl"))
    assert code == 0, err
    again = [json.loads(l)["verdict"] for l in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert again == [r["verdict"] for r in rows]


def test_unsupported_output_extension_is_refused_before_any_work(capsys, tmp_path):
    samples = humaneval_samples(tmp_path / "samples.jsonl", count=1)
    code, _, err = run(capsys, "verify", "--input", str(samples), "--output", str(tmp_path / "r.csv"))
    assert code == 2 and "unsupported output extension '.csv'; use .jsonl or .parquet" in err
    assert "verified" not in err


def test_bad_records_are_named_by_file_and_line_before_anything_starts(capsys, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "x"}) + "\n" + json.dumps({"id": "b"}) + "\n")
    code, _, err = run(capsys, "generate", "--prompts", str(prompts), "--output", str(tmp_path / "o.jsonl"))
    assert code == 2 and f"{prompts}:2: needs a string 'prompt'" in err
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"completion": "x"}) + "\n")
    code, _, err = run(capsys, "verify", "--input", str(samples), "--output", str(tmp_path / "o.jsonl"))
    assert code == 2 and f"{samples}:1: a sample record needs 'prompt_id'" in err
    assert _no_ray_session()


# --- data validate knows every kind -----------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("fmt,kind", [("problems", "problems"), ("sft", "sft")])
def test_validate_accepts_what_prepare_writes(capsys, tmp_path, suffix, fmt, kind):
    out = tmp_path / f"data{suffix}"
    code, _, err = run(capsys, "data", "prepare", "--dataset", "demo#sft", "--format", fmt, "--output", str(out))
    assert code == 0, err
    code, text, err = run(capsys, "data", "validate", str(out))
    assert code == 0, text + err
    assert f"{kind} records, all valid" in text


def test_validate_knows_samples_and_preferences(capsys, tmp_path):
    samples = humaneval_samples(tmp_path / "samples.jsonl", count=1)
    code, text, _ = run(capsys, "data", "validate", str(samples))
    assert code == 0 and "2 samples records, all valid" in text
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    code, text, _ = run(capsys, "data", "validate", str(prefs))
    assert code == 0 and "preferences records" in text
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt_id": "a", "completion": "x", "sample_index": -1}) + "\n")
    code, text, _ = run(capsys, "data", "validate", str(bad), "--kind", "samples")
    assert code == 1 and f"{bad}:1: field 'sample_index' must be a whole number" in text


# --- outside a terminal -----------------------------------------------------------------------------

def test_piped_tables_keep_their_columns(tmp_path):
    problems = tmp_path / "p.jsonl"
    rows = [json.dumps(p.to_dict()) for p in problems_from_spec("humaneval#all")[:3]]
    problems.write_text("\n".join(rows) + "\n")
    samples = humaneval_samples(tmp_path / "s.jsonl")
    results = tmp_path / "r.json"
    done = subprocess.run([HALO_RAY, "benchmark", "run", "--problems", str(problems), "--samples-file", str(samples),
                           "--output", str(results)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([HALO_RAY, "benchmark", "compare", str(results), str(results), "--names", "base,tuned",
                           "--output", str(tmp_path / "cmp")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("stage "))
    assert header.split() == ["stage", "model", "subset", "problems", "samples", "pass@1", "compile", "rate",
                              "SUCCESS", "WRONG_OUTPUT", "RUNTIME_ERROR", "TIMEOUT", "SYNTAX_ERROR"]
    assert "…" not in done.stdout and "┃" not in done.stdout
    done = subprocess.run([HALO_RAY, "benchmark", "run", "--problems", str(problems), "--samples-file", str(samples),
                           "--output", str(results), "--json"], capture_output=True, text=True, timeout=120)
    assert json.loads(done.stdout)["n_problems"] == 3


def test_reward_plot_has_whole_cycles_and_starts_at_zero(monkeypatch, tmp_path):
    from halo_ray.bench import report

    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig) or path)
    report.plot_rewards({"run": [(1, 0.8), (2, 0.82), (3, 0.85)]}, tmp_path / "r.png")
    ax = figures[0].axes[0]
    assert ax.get_ylim()[0] == 0
    figures[0].canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_pass_at_k_plot_draws_confidence_bars_and_n(monkeypatch, tmp_path):
    from halo_ray.bench import report

    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig) or path)
    stage = {"name": "a", "subset": "humaneval#all", "problems": 164, "pass_at_k": {"1": 0.5},
             "pass_at_k_ci": {"1": [0.4, 0.6]}, "verdicts": {}}
    report.plot_pass_at_k([stage], tmp_path / "p.png")
    ax = figures[0].axes[0]
    assert "humaneval#all" in ax.get_title() and "n=164" in ax.get_legend().get_texts()[0].get_text()
    assert ax.lines or ax.collections  # the error bars
    assert ax.get_ylim() == (0.0, 1.0)


# --- config, --set, --version, help ------------------------------------------------------------------

def test_config_check_refuses_what_raft_train_refuses(capsys):
    code, _, err = run(capsys, "config", "check", "raft", "--set", "data.train=demo#raft",
                       "--set", "learner.lr_schedule=cosine")
    assert code == 2 and "learner.lr_schedule: 'cosine'" in err
    code, _, err = run(capsys, "config", "check", "raft")
    assert code == 2 and "data.train: required" in err
    code, out, err = run(capsys, "config", "check", "raft", "--set", "data.train=demo#raft")
    assert code == 0 and "train: demo#raft" in out


def test_a_typo_in_set_is_reported_as_coming_from_set(capsys, tmp_path):
    config = tmp_path / "raft.yaml"
    config.write_text("data:\n  train: demo#raft\n")
    code, _, err = run(capsys, "config", "check", "raft", "--config", str(config), "--set", "rollout.temprature=1")
    assert code == 2
    assert err.count("--set rollout.temprature=1: rollout.temprature: unknown key; did you mean 'rollout.temperature'") == 1
    assert f"{config}: rollout" not in err
    config.write_text("data:\n  train: demo#raft\nrollout:\n  temprature: 1\n")
    code, _, err = run(capsys, "config", "check", "raft", "--config", str(config))
    assert code == 2 and f"{config}: rollout.temprature: unknown key" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"halo-ray {halo_ray.__version__}"


def test_help_texts_carry_no_internal_notes():
    def walk(parser, path):
        yield path, parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, path + [name])

    found = [(" ".join(path), m.group(0)) for path, text in walk(cli.build_parser(), [])
             for m in re.finditer(r"\bseed 00\d\b|notes/|\bTODO\b|\bissue \d+", text)]
    assert found == []


# --- run directories -----------------------------------------------------------------------------------

def test_manifest_and_runs_show(capsys, tmp_path):
    from halo_ray.runlog import RunLog
    from halo_ray.sections import LoggingConfig, RaftJobConfig, RolloutConfig

    run_dir = tmp_path / "raft"
    log = RunLog(run_dir, RaftJobConfig(rollout=RolloutConfig(temperature=0.9), logging=LoggingConfig(report_to=())))
    log.log(1, {"train/loss": 1.25}, cycle=1)
    log.close()
    (run_dir / "summary.json").write_text(json.dumps({"stages": [{"name": "initial", "pass_at_1": 0.25}],
                                                      "accounting": {"generated": 16, "used": 4}}))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["halo_ray_version"] == halo_ray.__version__
    assert manifest["config_sha256"] == hashlib.sha256((run_dir / "config.yaml").read_bytes()).hexdigest()
    assert manifest["sampling"]["rollout"]["temperature"] == 0.9
    assert "git_revision" in manifest and len(manifest["starts"]) == 1
    RunLog(run_dir, RaftJobConfig(logging=LoggingConfig(report_to=()))).close()  # a resumed run keeps its first start
    assert len(json.loads((run_dir / "manifest.json").read_text())["starts"]) == 2
    code, out, err = run(capsys, "runs", "show", str(run_dir))
    assert code == 0, err
    assert "job RaftJobConfig" in out and "initial" in out and "generated 16, used 4" in out
    assert re.search(r"train/loss\s+1\.25", out)
    code, _, err = run(capsys, "runs", "show", str(tmp_path))
    assert code == 2 and "not a run directory" in err


# --- progress -----------------------------------------------------------------------------------------

def test_progress_is_log_lines_outside_a_terminal(tmp_path):
    samples = humaneval_samples(tmp_path / "samples.jsonl")
    done = subprocess.run([HALO_RAY, "--log-level", "INFO", "verify", "--input", str(samples), "--output",
                           str(tmp_path / "r.jsonl")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "INFO halo_ray.cli: verified 0/6 programs" in done.stderr
    assert re.search(r"INFO halo_ray\.cli: verified 6/6 programs \(100%, [\d.]+ s\)", done.stderr), done.stderr
    quiet = subprocess.run([HALO_RAY, "verify", "--input", str(samples), "--output", str(tmp_path / "r.jsonl")],
                           capture_output=True, text=True, timeout=120)
    assert "halo_ray.cli" not in quiet.stderr  # the default level keeps logs quiet


def test_a_bad_samples_file_line_is_named(capsys, tmp_path):
    samples = humaneval_samples(tmp_path / "samples.jsonl", count=1)
    with samples.open("a") as fh:
        fh.write("\n" + json.dumps({"prompt_id": "HumanEval/999", "completion": "x"}) + "\n")
    code, _, err = run(capsys, "benchmark", "run", "--problems", "humaneval#all", "--samples-file", str(samples))
    assert code == 2 and f"{samples}:4: prompt_id 'HumanEval/999' is not in the problems file" in err


def test_step_lines_get_the_rate_and_eta(capsys, monkeypatch):
    """A training command's step lines carry the last step's time and the ETA (job logs too: no terminal)."""
    from halo_ray.cli import progress

    clock = iter([100.0, 110.0, 114.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    steps = progress.StepProgress()
    for line in ("resumed runs/r at step 2", "step 2/5: reward 0.5", "step 3/5: reward 0.6"):
        steps(line)
    steps.close()
    assert capsys.readouterr().out.splitlines() == [
        "resumed runs/r at step 2", "step 2/5: reward 0.5 [10.0 s/step, ETA 30 s]",
        "step 3/5: reward 0.6 [4.0 s/step, ETA 8 s]"]
