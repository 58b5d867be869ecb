"""The learner-step loop every stream algorithm shares (RAFT, GRPO, online DPO; SRL next).

An algorithm is one function, ``make_batch(stream, version) -> StepBatch``: which of the stream's
scored groups a step consumes and what the learner trains on. Everything around it is the same for
all of them and lives here: start the run's actors (``stream_run``), resume or evaluate step 0,
train and ship weights, refill the stream while the step is logged, samples as Parquet, metrics,
held-out evaluation every ``stream.eval_every`` steps, checkpoints with the stream's state, the
timeline, the summary, and restarting the run from its last checkpoint when an actor dies for good.

``take_with_signal`` is the shared form of "drop groups that carry no signal and top the step up"
(GRPO's dynamic sampling, online DPO's groups without a pair).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import ray

from halo_ray.config import to_dict
from halo_ray.driver.stream import (
    Stream, Timeline, begin, checkpoint_dir, evaluate_stage, latest_checkpoint, prune_checkpoints,
    samples_table, stream_metrics, stream_run, train_and_sync,
)
from halo_ray.errors import ActorLostError
from halo_ray.io import write_json
from halo_ray.samples import warm_up

log = logging.getLogger(__name__)

MAX_REJECTED_BATCHES = 4
"""A step gives up topping up after rejecting this many batches' worth of groups without signal (a task
the policy always or never solves would otherwise sample forever) and trains on what it has."""


@dataclass
class StepBatch:
    """What one learner step consumes and trains on.

    Attributes:
        taken: the stream groups the step consumed (counted as used, with their staleness).
        rows: their samples (written to ``samples/step_NNNN.parquet``).
        examples: the learner's examples (``halo_ray.objectives.collate`` fields).
        columns: extra per-sample columns of the samples file, aligned with ``rows``.
        metrics: the algorithm's own per-step metrics.
        totals: counts summed over the run (kept in checkpoints and returned in the summary).
        describe: the algorithm's part of the progress line, given the train metrics.
        epochs: passes over ``examples``.
        temperature: the temperature the learner scales logits by (the sampling one for on-policy
            ratios; 1.0 for the model's own distribution).
        wait_s: seconds the driver waited for the groups.
    """

    taken: list
    rows: list[dict]
    examples: list[dict]
    columns: dict[str, list] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    describe: Callable[[dict], str] = lambda train: ""
    epochs: int | None = None
    temperature: float = 1.0
    wait_s: float = 0.0


def take_with_signal(stream: Stream, version: int, signal: Callable[[list], set], enabled: bool = True
                     ) -> tuple[list, int, float]:
    """The step's groups that carry signal: take, reject the rest (counted, replaced), top up, repeat.

    Args:
        stream: the run's stream.
        version: the current policy version.
        signal: the positions, among the given groups, that carry signal.
        enabled: False takes the first full batch as it comes.
    Returns:
        ``(groups, rejected, wait_s)``.
    """
    per_step = stream.buffer.per_step
    kept, wait, rejected = [], 0.0, 0
    while len(kept) < per_step:
        groups, waited = stream.next_groups(version, per_step - len(kept))
        wait += waited
        if not enabled or rejected >= MAX_REJECTED_BATCHES * per_step:
            kept += groups
            break
        live = signal(groups)
        flat = [g for g in groups if g.position not in live]
        stream.buffer.reject(flat)
        rejected += len(flat)
        kept += [g for g in groups if g.position in live]
    return kept, rejected, wait


def run_stream(config, job: str, resume: bool, progress: Callable[[str], None],
               make_batch: Callable[[Stream, int], StepBatch],
               account: Callable[[dict, dict], dict] | None = None) -> dict:
    """Run ``config.stream.num_steps`` learner steps of ``make_batch``'s algorithm; returns the summary.

    An actor that dies for good (a learner rank; a rollout engine whose Ray restarts are spent) ends the
    attempt: every part is shut down and the run starts again from its last checkpoint (step 0 when it
    has none), at most ``checkpoint.max_restarts`` times, then stops with ``ActorLostError`` saying how
    ``--resume`` continues it. Engines and verifier pools that Ray restarts are handled inside an attempt
    (``Stream``, ``RolloutGroup.heal``).

    Args:
        config: a stream job config (model, data, rollout, verifier, objective, learner, stream, eval,
            checkpoint, cluster, logging).
        job: the job's name (run directory default, actor names).
        resume: continue the run in ``logging.run_dir/logging.name`` from its last checkpoint; no
            prompt is skipped or trained on twice.
        progress: receives one line per evaluation and step.
        make_batch: the algorithm.
        account: the summary's ``accounting`` from the stream's counts and the run's totals (default:
            the counts, ``generated = used + stale + filtered + failed``).
    Returns:
        ``{run_dir, stages, accounting, totals, version, staleness, final_checkpoint, faults}`` (also
        ``summary.json``); ``faults`` has the ``restarts`` (step, error, checkpoint resumed from) and
        ``engines_healed``.
    """
    config = named_run(config, job)  # a restart resumes this very directory
    faults: dict = {"restarts": [], "engines_healed": 0}
    while True:
        at = {"step": 0}
        try:
            return _attempt(config, job, resume, progress, make_batch, account, faults, at)
        except ray.exceptions.RayActorError as exc:
            run_dir = Path(config.logging.run_dir) / config.logging.name
            ckpt = latest_checkpoint(run_dir)
            where = f"checkpoint {ckpt.name}" if ckpt else "step 0 (no checkpoint yet)"
            what = actor_error(exc)
            limit = config.checkpoint.max_restarts
            if len(faults["restarts"]) >= limit:
                raise ActorLostError(
                    f"{what} during step {at['step']}; the run has restarted itself {limit} times "
                    f"(checkpoint.max_restarts). Continue it from {where} with --resume "
                    f"(--output {run_dir})") from exc
            faults["restarts"].append({"step": at["step"], "error": what, "resumed_from": ckpt.name if ckpt else None})
            log.warning("%s during step %d: restarting the run from %s", what, at["step"], where)
            progress(f"{what} during step {at['step']}: restarting from {where} "
                     f"(restart {len(faults['restarts'])} of at most {limit})")
            resume = True


def named_run(config, job: str):
    """``config`` with ``logging.name`` filled (``<job>-<time>``) when empty, so that every attempt of the
    run, and a ``--resume``, finds the same directory."""
    if config.logging.name:
        return config
    return dataclasses.replace(config, logging=dataclasses.replace(
        config.logging, name=f"{job}-{time.strftime('%Y%m%d-%H%M%S')}"))


def actor_error(exc: BaseException) -> str:
    """One line for an actor's death: its name (else its class) and why, from Ray's message (a first line,
    ``key: value`` fields, then the cause)."""
    text = str(exc)
    fields = dict(m.groups() for m in re.finditer(r"^\s*(\w+):\s*(\S+)\s*$", text, re.M))
    who = fields.get("name") or fields.get("class_name") or "an actor"
    said = [line.strip() for line in text.splitlines() if line.strip() and not re.match(r"^\s*\w+:\s*\S+\s*$", line)]
    why = (said[1] if len(said) > 1 else said[0]) if said else type(exc).__name__
    return f"{who} died ({why})"


def _attempt(config, job: str, resume: bool, progress: Callable[[str], None], make_batch: Callable[[Stream, int], StepBatch],
             account: Callable[[dict, dict], dict] | None, faults: dict, at: dict) -> dict:
    """One start of the run's parts and its steps until the end (``run_stream``); ``at["step"]`` follows
    the step under way, ``faults`` is carried across attempts."""
    with stream_run(config, job, resume) as (run, problems, heldout, rollout, verifiers, learner):
        try:
            summary = _steps(config, run, problems, heldout, rollout, verifiers, learner, resume, progress,
                             make_batch, account, at)
        finally:
            faults["engines_healed"] += rollout.healed
        summary["faults"] = faults
        write_json(run.path / "summary.json", summary)
        return summary


def _steps(config, run, problems, heldout, rollout, verifiers, learner, resume, progress, make_batch, account,
           at) -> dict:
    """The steps of one attempt, from ``begin``'s start to the end; returns the summary less ``faults``."""
    r, sc = config.rollout, config.stream
    extra = begin(run, config, heldout, rollout, verifiers, learner, resume, progress)
    start, version, stages = extra["next_step"], extra["version"], extra["stages"]
    totals: dict[str, int] = dict(extra.get("totals", {}))

    warm_up()  # before the stream starts: the first step's tables would pay pyarrow's pandas import
    timeline = Timeline()
    stream = Stream(rollout, verifiers, problems, sc, r, config.data.shuffle_seed, extra.get("stream"), timeline)
    wall0 = time.perf_counter()
    for step in range(start, sc.num_steps):
        at["step"] = step + 1
        t_step = time.perf_counter()
        batch = make_batch(stream, version)
        stream.buffer.use(batch.taken, version)
        for key, value in batch.totals.items():
            totals[key] = totals.get(key, 0) + value
        train_kwargs = {"temperature": batch.temperature}
        if batch.epochs is not None:
            train_kwargs["epochs"] = batch.epochs
        train, version = train_and_sync(learner, rollout, timeline, batch.examples, version, step + 1, **train_kwargs)
        window = time.perf_counter() - t_step
        stream.buffer.step_done()
        stream.fill()  # the next step's prompts go out before logging and evaluation

        name = f"step_{step + 1:04d}"
        if batch.rows:
            run.samples(name, samples_table(batch.rows, **batch.columns))
        metrics = stream_metrics(batch.rows, stream, rollout, verifiers, time.perf_counter() - wall0,
                                 batch.wait_s, window)
        metrics.update({"stream/version": version, "stream/groups": len(batch.taken),
                        "train/examples": len(batch.examples), **batch.metrics})
        metrics.update({k if k.startswith("time/") else f"train/{k}": v
                        for k, v in train.items() if k != "steps_log"})
        last = step + 1 == sc.num_steps
        if heldout and (last or (step + 1) % sc.eval_every == 0):
            metrics["eval/pass_at_1"] = evaluate_stage(run, rollout, verifiers, heldout, config, name, stages)
        run.log(step + 1, metrics, stage=name, reward_mean=metrics["verify/reward_mean"])
        held = f", held-out pass@1 {metrics['eval/pass_at_1']:.3f}" if "eval/pass_at_1" in metrics else ""
        progress(f"step {step + 1}/{sc.num_steps}: reward {metrics['verify/reward_mean']:.3f} over "
                 f"{len(batch.taken)} groups, {batch.describe(train)}loss {train.get('loss', float('nan')):.4f}{held}")
        if last or (step + 1) % config.checkpoint.every_steps == 0:
            # Prompts still in flight or waiting are issued again after a resume: they were not trained on.
            learner.save_checkpoint(str(checkpoint_dir(run.path, step + 1)), dict(
                next_step=step + 1, version=version, stages=stages, stream=stream.buffer.checkpoint_state(),
                totals=totals, config=to_dict(config)))
            prune_checkpoints(run.path, config.checkpoint.keep)
        if sc.timeline and (last or (step + 1) % config.checkpoint.every_steps == 0):
            timeline.write(run.path, plot=last)
    stream.abandon()
    counts = dict(stream.buffer.state.counts)
    summary = {"run_dir": str(run.path), "stages": stages, "accounting": account(counts, totals) if account else counts,
               "totals": totals, "version": version, "staleness": stream.buffer.state.staleness,
               "final_checkpoint": str(latest_checkpoint(run.path) or ""), "engines": rollout.stats()}
    return summary
