"""Streaming RAFT and SFT, top to bottom (seeds 000, 001).

RAFT cycle: the rollout engines sample ``samples_per_prompt`` completions for the cycle's prompts in
chunks; each chunk's ref goes straight to a verifier pool, so verification overlaps sampling; the
driver keeps the best samples (``halo_ray.selection.select``), the learner ranks train on them, and the new
weights go to the engines by ref. With ``raft.max_staleness`` >= 1 the next cycle is sampled while the
learner trains (its samples are one policy version old). After each cycle: samples as Parquet,
metrics, held-out pass@1, and a checkpoint with the data position and RNG state.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import ray

from halo_ray.config import to_dict
from halo_ray.data.sources import problems_from_spec
from halo_ray.driver import RolloutGroup, init, resolve_model
from halo_ray.driver.stream import (
    VerifierGroup, check_capacity, checkpoint_dir, evaluate, idle_fraction, latest_checkpoint, prune_checkpoints,
    stage_summary, submit_scored, verifier_cpus,
)
from halo_ray.errors import ConfigError
from halo_ray.io import write_json
from halo_ray.selection import cycle_prompts, select, verdict_histogram
from halo_ray.runlog import RunLog, run_path
from halo_ray.samples import concat
from halo_ray.sections import RaftJobConfig, SFTJobConfig

log = logging.getLogger(__name__)


def _learner_group(model, learner, objective, total_steps=None, run=""):
    from halo_ray.actors.learner import LearnerGroup

    return LearnerGroup(model, learner, objective, total_steps=total_steps, run=run)


def raft(config: RaftJobConfig, resume: bool = False, progress: Callable[[str], None] = log.info) -> dict:
    """Run streaming RAFT; returns a summary (run directory, stages, sample accounting).

    Args:
        config: the job config (``configs/raft.yaml`` mirrors it).
        resume: continue the run in ``logging.run_dir/logging.name`` from its last checkpoint;
            no prompt is skipped or trained on twice.
        progress: receives one line per evaluation and cycle (the CLI prints them).
    """
    if resume and not config.logging.name:
        raise ConfigError("--resume needs the run's name (logging.name) to find its checkpoints")
    if not config.data.train:
        raise ConfigError("data.train: name the RAFT prompts (a problems file or a source such as demo#raft)")
    if config.learner.lr_schedule == "cosine":
        raise ConfigError("learner.lr_schedule: 'cosine' needs a known number of steps; RAFT trains on what each "
                          "cycle keeps, so use 'constant' (with learner.warmup_steps)")
    init(config.cluster)
    model = resolve_model(config.model)
    problems = {p.id: p.to_dict() for p in problems_from_spec(config.data.train)}
    heldout = [p.to_dict() for p in problems_from_spec(config.data.eval)] if config.data.eval else []
    r = config.rollout
    check_capacity(rollout=r.num_engines * r.num_cpus, verifier=verifier_cpus(config.verifier),
                   learner=config.learner.num_ranks * config.learner.num_cpus_per_rank)
    run = RunLog(run_path(config.logging.run_dir, config.logging.name, "raft", resume), config,
                 config.logging.tensorboard)
    groups = []  # shut down whatever started, also when a cycle fails
    try:
        groups.append(RolloutGroup(model, r, run=run.path.name))
        groups.append(VerifierGroup(config.verifier, run=run.path.name))
        groups.append(_learner_group(model, config.learner, config.objective, run=run.path.name))
        return _raft_loop(config, resume, run, problems, heldout, *groups, progress=progress)
    finally:
        run.close()
        for group in groups:
            group.shutdown()


def _raft_loop(config: RaftJobConfig, resume: bool, run: RunLog, problems: dict, heldout: list,
               rollout: RolloutGroup, verifiers: VerifierGroup, learner, progress: Callable[[str], None]) -> dict:
    r, cfg = config.rollout, config.raft
    start, version, stages, totals = 0, 0, [], dict(generated=0, kept=0, filtered=0, stale=0, failed=0)
    ckpt = latest_checkpoint(run.path) if resume else None
    if ckpt is not None:
        extra = learner.load_checkpoint(str(ckpt))
        start, version, stages, totals = extra["next_cycle"], extra["version"], extra["stages"], extra["totals"]
        rollout.update_weights(learner.rollout_weights_ref(), version)
        progress(f"resumed {run.path} at cycle {start + 1} (policy version {version})")
    elif resume:
        log.warning("no checkpoint in %s: starting from cycle 0", run.path)
    if heldout and start == 0:
        results, _ = evaluate(rollout, verifiers, heldout, config.eval, r.max_new_tokens, "initial")
        write_json(run.path / "eval" / "initial.json", results)
        stages.append(stage_summary(results))
        run.log(0, {"eval/pass_at_1": results["pass_at_k"]["1"]}, stage="initial")
        progress(f"initial: held-out pass@1 {results['pass_at_k']['1']:.3f}")

    def sample_cycle(cycle: int) -> tuple[list, float]:
        """Refs to the cycle's scored chunks, and when they were submitted."""
        ids = cycle_prompts(list(problems), cycle, cfg.prompts_per_cycle, config.data.shuffle_seed)
        return submit_scored(rollout, verifiers, problems, ids, cfg.chunk_prompts, n=r.samples_per_prompt,
                             temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_new_tokens,
                             seed=r.seed + cycle, stop=list(r.stop) or None), time.perf_counter()

    wall0, learner_busy = time.perf_counter(), 0.0
    pending, submitted = sample_cycle(start) if start < cfg.num_cycles else ([], 0.0)
    for cycle in range(start, cfg.num_cycles):
        t0 = time.perf_counter()
        scored = concat(ray.get(pending))
        t_sampled = time.perf_counter()
        window = t_sampled - submitted  # sampling + verification of this cycle, overlapped with other work
        prefetch = cfg.max_staleness >= 1 and cycle + 1 < cfg.num_cycles
        if prefetch:  # sample the next cycle while the learner trains on this one
            pending, submitted = sample_cycle(cycle + 1)
        rows = scored.to_pylist()
        kept, counts = select(rows, cfg, version)
        examples = [{"prompt_token_ids": k["prompt_token_ids"], "token_ids": k["token_ids"]} for k in kept]
        train_metrics = learner.train(examples) if examples else {}
        version += 1
        rollout.update_weights(learner.rollout_weights_ref(), version)
        t_trained = time.perf_counter()
        learner_busy += t_trained - t_sampled
        if not prefetch and cycle + 1 < cfg.num_cycles:
            pending, submitted = sample_cycle(cycle + 1)

        run.samples(f"cycle_{cycle:04d}", scored)
        for key in totals:
            totals[key] += counts[key]
        tokens = sum(len(x["token_ids"]) for x in rows)
        metrics = {
            "rollout/samples": len(rows), "rollout/tokens": tokens,
            "rollout/samples_per_s": len(rows) / max(window, 1e-9),
            "rollout/tokens_per_s": tokens / max(window, 1e-9),
            "stream/wait_s": t_sampled - t0,  # how long the driver waited for samples (0: fully overlapped)
            "verify/reward_mean": sum(x["reward"] for x in rows) / max(len(rows), 1),
            "verify/pass_fraction": sum(x["verdict"] == "SUCCESS" for x in rows) / max(len(rows), 1),
            "stream/kept_fraction": counts["kept"] / max(len(rows), 1),
            "stream/stale": counts["stale"], "stream/failed": counts["failed"], "stream/fallback": counts["fallback"],
            "train/examples": len(examples), "train/seconds": t_trained - t_sampled,
            **{f"train/{k}": v for k, v in train_metrics.items()},
            **{f"verify/verdict/{k}": v for k, v in verdict_histogram(rows).items()},
        }
        wall = time.perf_counter() - wall0
        rollout_busy = sum(s["busy_s"] for s in rollout.stats())
        metrics["stream/idle/rollout"] = idle_fraction(rollout_busy, wall, len(rollout.actors))
        metrics["stream/idle/verifier"] = idle_fraction(verifiers.busy_s(), wall)
        metrics["stream/idle/learner"] = idle_fraction(learner_busy, wall)
        if heldout:
            results, _ = evaluate(rollout, verifiers, heldout, config.eval, r.max_new_tokens, f"cycle_{cycle + 1}")
            write_json(run.path / "eval" / f"cycle_{cycle + 1}.json", results)
            stages.append(stage_summary(results))
            metrics["eval/pass_at_1"] = results["pass_at_k"]["1"]
        run.log(cycle + 1, metrics, cycle=cycle + 1, reward_mean=metrics["verify/reward_mean"], counts=counts)
        held = f", held-out pass@1 {metrics['eval/pass_at_1']:.3f}" if heldout else ""
        progress(f"cycle {cycle + 1}/{cfg.num_cycles}: reward {metrics['verify/reward_mean']:.3f}, kept {counts['kept']} "
                 f"of {len(rows)}, loss {train_metrics.get('loss', float('nan')):.4f}{held}")
        last = cycle + 1 == cfg.num_cycles
        if last or (cycle + 1) % config.checkpoint.every_cycles == 0:
            # A prefetched next cycle is sampled again after a resume: it was not trained on.
            learner.save_checkpoint(str(checkpoint_dir(run.path, cycle + 1)), dict(
                next_cycle=cycle + 1, version=version, stages=stages, totals=totals,
                config=to_dict(config)))
            prune_checkpoints(run.path, config.checkpoint.keep)

    summary = {"run_dir": str(run.path), "stages": stages, "accounting": totals, "version": version,
               "final_checkpoint": str(latest_checkpoint(run.path) or "")}
    write_json(run.path / "summary.json", summary)
    return summary


def sft_examples(problems: list[dict], tokenizer) -> list[dict]:
    """Prompt/completion token ids from problems with reference solutions.

    The completion is ``metadata.completion`` when present, else the solution with the prompt
    removed (HumanEval style), else the whole solution. Prompt and completion are tokenized
    separately (``objectives.tokenize_pair``) so the training tokens match generation.
    """
    from halo_ray.objectives import tokenize_pair

    out = []
    for p in problems:
        meta = p.get("metadata") or {}
        solution = meta.get("canonical_solution")
        completion = meta.get("completion")
        if completion is None and solution:
            completion = solution[len(p["prompt"]):] if solution.startswith(p["prompt"]) else solution
        if completion:
            out.append(tokenize_pair(tokenizer, p["prompt"], completion))
    return out


def sft(config: SFTJobConfig) -> dict:
    """Supervised fine-tuning on reference solutions; writes ``<run>/final`` (HF format) and returns a summary."""
    from transformers import AutoTokenizer

    if not config.data.train:
        raise ConfigError("data.train: name the SFT problems (with reference solutions), e.g. demo#sft")
    problems = [p.to_dict() for p in problems_from_spec(config.data.train)]  # bad data fails before anything starts
    model = resolve_model(config.model)
    examples = sft_examples(problems, AutoTokenizer.from_pretrained(model.path))
    if not examples:
        raise ConfigError(f"data.train={config.data.train!r}: no problem carries a reference solution to train on")
    path = run_path(config.logging.run_dir, config.logging.name, "sft")
    init(config.cluster)
    lc = config.learner
    steps = lc.epochs * math.ceil(len(examples) / (lc.micro_batch_size * lc.grad_accum * lc.num_ranks))
    check_capacity(learner=lc.num_ranks * lc.num_cpus_per_rank)
    run = RunLog(path, config, config.logging.tensorboard)
    learner = None
    try:
        learner = _learner_group(model, lc, config.objective, total_steps=steps, run=path.name)
        started = time.perf_counter()
        metrics = learner.train(examples)
        run.log(1, {f"train/{k}": v for k, v in metrics.items()}, stage="sft")
        final = run.path / "final"
        learner.save_checkpoint(str(final), {"examples": len(examples)})
        summary = {"run_dir": str(run.path), "final": str(final), "examples": len(examples),
                   "train": metrics, "seconds": time.perf_counter() - started}
        write_json(run.path / "summary.json", summary)
        return summary
    finally:
        run.close()
        if learner is not None:
            learner.shutdown()
