"""Test-based DPO (seed 002), the parts that sample and verify: preference generation and evaluation.

``preferences``: for each training problem, ``rollout.samples_per_prompt`` (10) responses at
temperature 0.8 with a fixed seed from the rollout actors, each chunk verified in the sandbox as soon
as it is sampled (a chunk an engine or verifier died under is sent again, with the same seed, once the
engines are healed: the stream's ``heal_for_retry``), scored by test pass rate (verdicts kept for the
error taxonomy), then seed 002's pair rule (``halo_ray.pairs``). Writes into the run directory:

    scored.jsonl                one record per response (problem_id, prompt, completion, pass_rate, verdict, ...)
    samples/prefs.parquet       the scored stream batch with token ids and behaviour log-probs
    dpo_preferences.jsonl       one record per pair (also .parquet)
    prefs.json                  counts, verdict mix, timing and settings

``evaluate``: the baseline (``model.path``) and the fine-tuned model on the held-out problems through
the project's benchmark (pass@k, verdicts, compile rate, time per problem), then its paired
comparison (t-test and Wilcoxon per k) and report, under ``<run>/eval/``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable

import ray

from halo_ray.bench.compare import compare_results, load_result
from halo_ray.bench.report import write_report
from halo_ray.bench.run import run_benchmark
from halo_ray.config import dump_yaml
from halo_ray.data.sources import problems_from_spec
from halo_ray.pairs import form_pairs
from halo_ray.driver import RolloutGroup, init, resolve_model, verify
from halo_ray.driver.stream import VerifierGroup, check_capacity, heal_for_retry, submit_scored, verifier_cpus
from halo_ray.errors import ConfigError, DataError
from halo_ray.io import atomic_write, write_json, write_records, write_table
from halo_ray.samples import concat
from halo_ray.sections import BenchmarkConfig, BenchmarkJobConfig, DPOJobConfig, ModelConfig
from halo_ray.selection import verdict_histogram

log = logging.getLogger(__name__)

SCORED_COLUMNS = ("problem_id", "sample_index", "prompt", "completion", "pass_rate", "verdict", "reward", "verify_s")


def run_dir(config: DPOJobConfig) -> Path:
    """The DPO run's directory (``logging.run_dir/logging.name``), shared by its stages."""
    if not config.logging.name:
        raise ConfigError("logging.name: name the DPO run (--output DIR); prefs, train and eval share its directory")
    return Path(config.logging.run_dir) / config.logging.name


def _problems(spec: str, key: str, limit: int = 0) -> list[dict]:
    if not spec:
        raise ConfigError(f"{key}: name the problems (a problems file or a source such as humaneval#train, demo#raft)")
    problems = [p.to_dict() for p in problems_from_spec(spec)]
    ids = [p["id"] for p in problems]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"{key}={spec!r}: problem ids repeat, e.g. {dup[:3]}; pairs are formed per problem id")
    untested = [p["id"] for p in problems if not p.get("tests") and not p.get("test_cases")]
    if untested:
        raise DataError(f"{key}={spec!r}: {len(untested)} problem(s) have no tests to score responses by, "
                        f"e.g. {untested[:3]}")
    return problems[:limit] if limit else problems


def preferences(config: DPOJobConfig, progress: Callable[[str], None] = log.info) -> dict:
    """Sample, verify and pair (seed 002's preference generation); returns the ``prefs.json`` summary.

    Args:
        config: the job config (``configs/dpo.yaml``); data.train names the training problems.
        progress: receives a line per finished chunk and one at the end (the CLI prints them).
    """
    problems = _problems(config.data.train, "data.train", config.dpo.max_problems)
    path = run_dir(config)
    if (path / "dpo_preferences.jsonl").exists():
        raise ConfigError(f"{path} already holds preferences (dpo_preferences.jsonl): choose another --output")
    model = resolve_model(config.model)
    init(config.cluster)
    r = config.rollout
    check_capacity(rollout=r.num_engines * r.num_cpus, verifier=verifier_cpus(config.verifier))
    path.mkdir(parents=True, exist_ok=True)
    with atomic_write(path / "prefs_config.yaml") as fh:
        fh.write(dump_yaml(config))
    by_id = {p["id"]: p for p in problems}
    groups: list = []
    started = time.perf_counter()
    try:
        groups.append(RolloutGroup(model, r, run=path.name))  # named <run>/rollout-0, <run>/verifier-0
        groups.append(VerifierGroup(config.verifier, run=path.name))
        rollout, verifiers = groups
        sampling = dict(n=r.samples_per_prompt, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_new_tokens,
                        seed=r.seed, stop=list(r.stop) or None)
        size, ids = config.dpo.chunk_prompts, list(by_id)
        chunk_ids = [ids[i:i + size] for i in range(0, len(ids), size)]
        refs = submit_scored(rollout, verifiers, by_id, ids, size, **sampling)
        pending = {ref: (i, 1) for i, ref in enumerate(refs)}  # ref -> (chunk, its try)
        chunks, done = [], 0
        while pending:  # take chunks as they finish; all of them are kept
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            index, tries = pending.pop(ref)
            try:
                chunks.append(ray.get(ref))
            except ray.exceptions.RayError as exc:  # an actor died: the chunk is sampled again (same seed)
                log.error("a chunk of %d problems failed (%s); healing the engines and sending it again",
                          len(chunk_ids[index]), type(exc).__name__)
                heal_for_retry(rollout, verifiers, exc, tries)
                (again,) = submit_scored(rollout, verifiers, by_id, chunk_ids[index], size, **sampling)
                pending[again] = (index, tries + 1)
                continue
            done += chunks[-1].num_rows
            progress(f"scored {done} of {len(by_id) * r.samples_per_prompt} responses")
        table = concat(chunks)
    finally:
        for group in groups:
            group.shutdown()
    elapsed = time.perf_counter() - started
    write_table(path / "samples" / "prefs.parquet", table)
    rows = table.to_pylist()
    scored = [{"problem_id": row["prompt_id"], **{k: row.get(k) for k in SCORED_COLUMNS[1:]}} for row in rows]
    write_records(path / "scored.jsonl", scored)
    pairs = form_pairs(scored, config.dpo.min_gap, config.dpo.score, config.dpo.max_pairs_per_problem)
    write_records(path / "dpo_preferences.jsonl", pairs)
    write_records(path / "dpo_preferences.parquet", pairs)
    summary = preference_summary(scored, pairs, config, elapsed)
    write_json(path / "prefs.json", summary)
    progress(f"{summary['pairs']} pairs from {summary['problems_with_pairs']} of {summary['problems']} problems "
             f"({summary['samples']} responses, {elapsed:.1f} s) in {path}")
    return summary


def preference_summary(scored: list[dict], pairs: list[dict], config: DPOJobConfig, elapsed_s: float) -> dict:
    """Counts of a preference run: responses, verdict mix, pass rates, pairs per problem, timing, settings."""
    problems = {row["problem_id"] for row in scored}
    with_pairs = {p["problem_id"] for p in pairs}
    r = config.rollout
    return {
        "problems": len(problems), "samples": len(scored), "pairs": len(pairs),
        "problems_with_pairs": len(with_pairs),
        "pairs_per_problem": len(pairs) / max(len(problems), 1),
        "verdicts": verdict_histogram(scored),
        "pass_rate_mean": sum(row["pass_rate"] or 0.0 for row in scored) / max(len(scored), 1),
        "timing": {"total_s": elapsed_s, "per_problem_s": elapsed_s / max(len(problems), 1)},
        "settings": {"model": config.model.path or "embedded tiny model", "data": config.data.train,
                     "samples_per_prompt": r.samples_per_prompt, "temperature": r.temperature, "top_p": r.top_p,
                     "seed": r.seed, "max_new_tokens": r.max_new_tokens, "min_gap": config.dpo.min_gap,
                     "score": config.dpo.score, "verifier": config.verifier.name, "timeout_s": config.verifier.timeout_s},
    }


def evaluate(config: DPOJobConfig, progress: Callable[[str], None] = log.info) -> dict:
    """Baseline vs fine-tuned on ``data.eval`` through the benchmark, with the paired tests and a report.

    The baseline is ``model.path``; the fine-tuned model is ``dpo.finetuned`` (default ``<run>/final``).
    Both are sampled with the evaluation settings (seed 002: k = 10 at T 0.8, top-p 0.95, seed 42), so the
    comparison is paired problem by problem. Returns ``<run>/eval/summary.json``'s content.
    """
    problems = _problems(config.data.eval, "data.eval")
    path = run_dir(config)
    finetuned = config.dpo.finetuned or str(path / "final")
    if not Path(finetuned).is_dir():
        raise ConfigError(f"dpo.finetuned: {finetuned} is not a model directory; train one first or pass --finetuned DIR")
    baseline = resolve_model(config.model)
    out = path / "eval"
    if (out / "summary.json").exists():
        raise ConfigError(f"{out} already holds an evaluation (summary.json): choose another --output")
    init(config.cluster)
    results = {}
    for name, model in (("baseline", baseline), ("dpo", dataclasses.replace(config.model, path=finetuned))):
        results[name] = _benchmark(config, resolve_model(model), problems, out / f"{name}.json",
                                   out / f"{name}_samples.parquet")
        progress(f"{name}: " + ", ".join(f"pass@{k} {v:.3f}" for k, v in results[name]["pass_at_k"].items())
                 + f", compile rate {results[name]['compile_rate']:.3f}")
    comparison = compare_results([load_result(out / "baseline.json"), load_result(out / "dpo.json")], ["baseline", "dpo"])
    files = write_report(comparison, out / "compare")
    summary = {"run_dir": str(path), "baseline": baseline.path, "finetuned": finetuned, "problems": len(problems),
               "stages": comparison["stages"], "tests": comparison["tests"],
               "time_per_problem_s": {name: res["timing"]["per_problem_s"] for name, res in results.items()},
               "report": str(files["markdown"])}
    write_json(out / "summary.json", summary)
    return summary


def _benchmark(config: DPOJobConfig, model: ModelConfig, problems: list[dict], output: Path, samples: Path) -> dict:
    """One model through ``bench.run_benchmark`` with the evaluation sampling, on its own rollout actors."""
    e = config.eval
    rollout = dataclasses.replace(config.rollout, samples_per_prompt=e.samples, temperature=e.temperature,
                                  top_p=e.top_p, seed=e.seed)
    bench = BenchmarkJobConfig(model=model, rollout=rollout, verifier=config.verifier, cluster=config.cluster,
                               logging=config.logging,
                               benchmark=BenchmarkConfig(problems="", ks=config.dpo.eval_ks, output=str(output),
                                                         save_samples=str(samples)))
    check_capacity(rollout=rollout.num_engines * rollout.num_cpus)
    group = RolloutGroup(model, rollout)
    try:
        def generate(prompts):
            return group.generate(prompts, n=rollout.samples_per_prompt, temperature=rollout.temperature,
                                  top_p=rollout.top_p, max_tokens=rollout.max_new_tokens, seed=rollout.seed,
                                  stop=list(rollout.stop) or None)

        return run_benchmark(bench, problems, generate, lambda records: verify(records, config.verifier))
    finally:
        group.shutdown()


def train(config: DPOJobConfig, progress: Callable[[str], None] = log.info) -> dict:
    """DPO on the run's preference pairs against the frozen reference (seed 002): ``<run>/final``.

    The pairs come from ``<run>/dpo_preferences.jsonl`` (``dpo prefs``); each pair's chosen and
    rejected responses stay in one micro-batch; the loss is ``objective.dpo`` (sigmoid, beta 0.1) with
    the base model as reference (under LoRA the base with the adapter disabled; otherwise a frozen copy).
    One metrics record per optimizer step (loss, reward margins, accuracy of chosen over rejected).
    """
    from transformers import AutoTokenizer

    from halo_ray.actors.learner import LearnerGroup
    from halo_ray.data.schema import validate_file
    from halo_ray.io import read_records
    from halo_ray.pairs import pair_examples
    from halo_ray.objectives.config import ObjectiveConfig
    from halo_ray.runlog import RunLog

    path = run_dir(config)
    prefs = Path(config.dpo.preferences) if config.dpo.preferences else path / "dpo_preferences.jsonl"
    if not prefs.is_file():
        where = "dpo.preferences" if config.dpo.preferences else f"run `halo-ray dpo prefs --output {path}` first"
        raise ConfigError(f"{prefs}: no preference pairs ({where})")
    if (path / "final").exists():
        raise ConfigError(f"{path / 'final'} already holds a trained model: choose another --output")
    _, _, problems = validate_file(prefs, "preferences")
    if problems:
        raise DataError(f"{prefs}: not a preferences file ({len(problems)} bad record(s)):\n" + "\n".join(problems[:10]))
    pairs = read_records(prefs)
    if not pairs:
        raise DataError(f"{prefs}: no pairs (every problem's responses tied): nothing to train on")
    model = resolve_model(config.model)
    examples = [dict(ex, unit=ex["pair_id"]) for ex in
                pair_examples(pairs, AutoTokenizer.from_pretrained(model.path))]
    if config.learner.micro_batch_size < 2:
        raise ConfigError("learner.micro_batch_size: a DPO pair (chosen and rejected) needs 2 sequences per "
                          f"micro-batch, got {config.learner.micro_batch_size}")
    init(config.cluster)
    lc = config.learner
    check_capacity(learner=lc.num_ranks * lc.num_cpus_per_rank)
    run = RunLog(path, config)
    learner = None
    try:
        started = time.perf_counter()
        learner = LearnerGroup(model, lc, ObjectiveConfig(name="dpo", dpo=config.objective), run=path.name)
        metrics = learner.train(examples)  # offline pairs: the model's own distribution, temperature 1
        for record in metrics.pop("steps_log"):
            run.log(record["global_step"], {f"train/{k}": v for k, v in record.items()}, stage="dpo")
        learner.save_checkpoint(str(path / "final"), {"pairs": len(pairs)})
        summary = {"run_dir": str(path), "final": str(path / "final"), "pairs": len(pairs), "preferences": str(prefs),
                   "train": metrics,
                   "seconds": time.perf_counter() - started}
        write_json(path / "train.json", summary)
        progress(f"DPO: {len(pairs)} pairs, {metrics['steps']} steps, loss {metrics['loss']:.4f}, accuracy "
                 f"{metrics.get('rewards/accuracies', float('nan')):.3f}, margin "
                 f"{metrics.get('rewards/margins', float('nan')):.3f} -> {path / 'final'}")
        return summary
    finally:
        run.close()
        if learner is not None:
            learner.shutdown()


def dpo(config: DPOJobConfig, progress: Callable[[str], None] = log.info) -> dict:
    """The whole experiment (``halo_ray.dpo``, ``halo-ray dpo run``): preferences, DPO, evaluation of base
    and tuned model; returns the evaluation summary (the report is ``<run>/eval/compare/report.md``)."""
    if config.dpo.preferences:
        progress(f"using the preference pairs of {config.dpo.preferences} (dpo.preferences)")
    else:
        preferences(config, progress)
    train(config, progress)
    return evaluate(config, progress)
