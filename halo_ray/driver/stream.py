"""The stream's driver side, shared by every algorithm's loop: ``Stream`` keeps rollouts in flight
up to ``max_staleness`` policy versions ahead and hands learner steps their groups as chunks finish
(``ray.wait``); plus the verifier handle, the retry rule of a failed chunk and checkpoints on disk.
Held-out evaluation (``driver/evaluation.py``) and the timeline (``driver/timeline.py``) live in their
own modules and are re-exported here.

``submit_scored`` chains rollout refs into verifier refs, so verification of a chunk starts as soon
as that chunk is sampled, without the driver touching the data.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
from pathlib import Path

import ray

from halo_ray.driver import ROLLOUT_TRIES, RolloutGroup, placement, worth_retrying
# Held-out evaluation and the timeline live in their own modules; imported from here as before.
from halo_ray.driver.evaluation import evaluate, evaluate_stage, per_problem_pass1, stage_summary  # noqa: F401
from halo_ray.driver.timeline import Timeline
from halo_ray.errors import ConfigError
from halo_ray.sections import RolloutConfig, StreamConfig
from halo_ray.stream import StreamBuffer, StreamState, group_rows, prompt_at
from halo_ray.verifiers import SUCCESS, VERDICTS, VerifierConfig

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^step_(\d{4,})$")


class VerifierGroup:
    """VerifierPool actors sized from ``verifier.workers`` (0: one worker per CPU of this machine)."""

    def __init__(self, verifier: VerifierConfig, run: str = ""):
        from halo_ray.actors.verifier import start_pools

        self.pools = start_pools(verifier, num_pools=1, cpus_per_pool=float(verifier_cpus(verifier)), run=run)

    def score(self, rollout_ref, problems: dict, index: int = 0, columns: tuple[str, ...] | None = None):
        """A ref to the ``ScoredBatch`` of a ``RolloutBatch`` ref (runs once the rollout is done); only
        ``columns`` of it cross to the caller when given."""
        return self.pools[index % len(self.pools)].score.remote(rollout_ref, problems, columns)

    def busy_s(self) -> float:
        return sum(s["busy_s"] for s in ray.get([p.stats.remote() for p in self.pools]))

    def check(self) -> None:
        """Wait for pools Ray is restarting; raises ``ActorDiedError`` for one gone for good."""
        ray.get([p.stats.remote() for p in self.pools])

    def shutdown(self) -> None:
        for pool in self.pools:
            ray.kill(pool)


def verifier_cpus(verifier: VerifierConfig) -> int:
    from halo_ray.verifiers import available_cpus

    return verifier.workers or available_cpus()


def check_capacity(**needs: float) -> None:
    """Fail fast with the numbers when the run's actors cannot all be placed (Ray would wait forever)."""
    have = ray.cluster_resources().get("CPU", 0.0)
    if sum(needs.values()) > have:
        parts = ", ".join(f"{name} {cpus:g}" for name, cpus in needs.items())
        raise ConfigError(f"the run needs {sum(needs.values()):g} CPUs ({parts}) but the Ray cluster has {have:g}: "
                          "lower rollout.num_engines, rollout.num_cpus, verifier.workers or learner.num_ranks, "
                          "or give a local session more logical CPUs (cluster.num_cpus)")


def submit_scored(rollout: RolloutGroup, verifiers: VerifierGroup, problems: dict[str, dict], ids: list[str],
                  chunk_size: int, columns: tuple[str, ...] | None = None, **sampling) -> list:
    """Sample and verify ``ids`` in chunks; returns refs to ``ScoredBatch`` tables (only ``columns`` when
    given), one per chunk."""
    prompts = [{"prompt_id": pid, "prompt": problems[pid]["prompt"]} for pid in ids]
    refs = rollout.submit(prompts, chunk_size=chunk_size, **sampling)
    out = []
    for i, ref in enumerate(refs):
        chunk = prompts[i * chunk_size:(i + 1) * chunk_size] if chunk_size else None
        mine = {p["prompt_id"]: problems[p["prompt_id"]] for p in chunk} if chunk else problems
        out.append(verifiers.score(ref, mine, i, columns))
    return out


def heal_for_retry(rollout: RolloutGroup, verifiers: VerifierGroup, exc: BaseException, tries: int) -> None:
    """Ready the actors to take a failed chunk again: engines Ray restarted healed with the latest weights
    (``RolloutGroup.heal``), verifier pools up. The one retry rule of the stream, its evaluation and DPO's
    preference generation.

    Args:
        rollout, verifiers: the run's handles.
        exc: the chunk's error.
        tries: how many times the chunk (or a prompt in it) has failed, this time included.
    Raises:
        exc: when retrying would only repeat it (no actor died and no engine needed healing), or after
            ``ROLLOUT_TRIES`` failures (a prompt that crashes the engine every time).
        ray.exceptions.ActorDiedError: an engine or verifier pool is gone for good.
    """
    healed = rollout.heal()
    verifiers.check()
    if not worth_retrying(exc, healed):
        log.error("no actor died and no engine needed healing: the chunk's error is the run's")
        raise exc
    if tries >= ROLLOUT_TRIES:
        log.error("a chunk failed %d times: giving up", tries)
        raise exc


def checkpoint_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:04d}"


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint of a run (checkpoints are renamed into place when complete)."""
    folder = run / "checkpoints"
    found = sorted((int(m.group(1)), p) for p in folder.glob("step_*") if (m := CHECKPOINT_RE.match(p.name)))
    return found[-1][1] if found else None


def prune_checkpoints(run: Path, keep: int) -> None:
    folder = run / "checkpoints"
    found = sorted((int(m.group(1)), p) for p in folder.glob("step_*") if (m := CHECKPOINT_RE.match(p.name)))
    for _, path in found[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def idle_fraction(busy_s: float, wall_s: float, workers: int = 1) -> float:
    return max(0.0, 1.0 - busy_s / max(wall_s * workers, 1e-9))


class Stream:
    """Rollouts in flight up to ``max_staleness`` versions ahead; scored groups handed out per step.

    Args:
        rollout, verifiers: the run's handles.
        problems: problem dicts by id (the training prompts).
        cfg: the stream section.
        rollout_cfg: sampling settings.
        seed: the data order's seed (``data.shuffle_seed``).
        state: a checkpoint's stream state (``StreamBuffer.checkpoint_state``) to resume from.
        timeline: where spans go.
    """

    def __init__(self, rollout: RolloutGroup, verifiers: VerifierGroup, problems: dict[str, dict], cfg: StreamConfig,
                 rollout_cfg: RolloutConfig, seed: int, state: dict | None = None, timeline: Timeline | None = None):
        self.rollout, self.verifiers, self.problems = rollout, verifiers, problems
        self.cfg, self.r, self.seed = cfg, rollout_cfg, seed
        self.ids = sorted(problems)
        per_step = cfg.prompts_per_step or len(self.ids)
        self.buffer = StreamBuffer(per_step, cfg.max_staleness, cfg.num_steps,
                                   StreamState.from_dict(state) if state else None)
        self.pending: dict = {}  # scored ref -> (positions by prompt id, submitted at)
        self.tries: dict[int, int] = {}  # position -> chunks of it that failed
        self.timeline = timeline or Timeline()
        self._chunk = 0

    def fill(self) -> None:
        """Issue chunks while the staleness bound allows."""
        while True:
            positions = self.buffer.issue(self.cfg.chunk_prompts)
            if not positions:
                return
            by_pid: dict[str, int] = {}
            for pos in positions:
                pid = prompt_at(self.ids, pos, self.seed)
                if pid in by_pid:  # a chunk across an epoch boundary holds a prompt twice: send it later
                    self.buffer.lost([pos])
                    continue
                by_pid[pid] = pos
            prompts = [{"prompt_id": pid, "prompt": self.problems[pid]["prompt"], "seed_key": f"{pid}@{pos}"}
                       for pid, pos in by_pid.items()]
            r = self.r
            (ref,) = self.rollout.submit(prompts, chunk_size=len(prompts), n=r.samples_per_prompt,
                                         temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_new_tokens,
                                         seed=r.seed, stop=list(r.stop) or None, index=self._chunk)
            scored = self.verifiers.score(ref, {pid: self.problems[pid] for pid in by_pid}, self._chunk)
            self.pending[scored] = (by_pid, time.perf_counter())
            self._chunk += 1

    def next_groups(self, version: int, need: int | None = None):
        """The next learner step's groups (``halo_ray.stream.Group``, rows as dicts), waiting as needed;
        ``need`` groups (default ``prompts_per_step``: a top-up after the algorithm rejected some).

        Returns ``(groups, wait_s)``: how long the driver waited for them.
        """
        started = time.perf_counter()
        while True:
            self.fill()
            self._drain()  # everything already scored joins the buffer, so a step takes the oldest positions
            groups = self.buffer.take(version, need)
            if groups is not None:
                end = time.perf_counter()
                if end - started > 1e-3:
                    self.timeline.add("driver", "wait for samples", started, end)
                return groups, end - started
            if not self.pending:
                self.fill()  # chunks that failed while draining are issued again here
            if not self.pending:
                raise RuntimeError("the stream has nothing in flight and too few groups for a step "
                                   f"(ready {len(self.buffer.ready)}, budget {self.buffer.budget()})")
            done, _ = ray.wait(list(self.pending), num_returns=1)
            self._receive(done[0])

    def _drain(self) -> None:
        if self.pending:
            done, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
            for ref in done:
                self._receive(ref)

    def _receive(self, ref) -> None:
        by_pid, submitted = self.pending.pop(ref)
        now = time.perf_counter()
        try:
            table = ray.get(ref)
        except ray.exceptions.RayError as exc:  # an actor died: the chunk's prompts are issued again
            self._failed(list(by_pid.values()), exc)
            return
        rows = table.to_pylist()
        gen = max((x["generate_s"] for x in rows), default=0.0)
        ver = sum(x["verify_s"] for x in rows)
        self.timeline.add("rollout", f"sample {len(by_pid)} prompts", submitted, submitted + gen)
        self.timeline.add("verifier", f"verify {len(rows)} samples", max(submitted + gen, now - ver), now)
        groups, failed = group_rows(rows, by_pid, now)
        for g in groups:
            self.buffer.add(g, failed[g.position])

    def _failed(self, positions: list[int], exc: BaseException) -> None:
        """A chunk failed: its positions are issued again once the engines hold the latest weights and the
        verifier pools are up. A failure that no actor's death explains (nothing died, nothing to heal), or
        a position that failed ``ROLLOUT_TRIES`` times, ends the run with the error."""
        log.error("a chunk of %d prompts failed (%s); issuing them again", len(positions),
                  str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        for pos in positions:
            self.tries[pos] = self.tries.get(pos, 0) + 1
        self.buffer.lost(positions)
        heal_for_retry(self.rollout, self.verifiers, exc, max(self.tries[p] for p in positions))

    def abandon(self) -> None:
        """Forget what is still in flight (the run is over)."""
        self.pending.clear()


@contextlib.contextmanager
def stream_run(config, job: str, resume: bool):
    """Start a stream job's parts and shut them down however the run ends.

    Validates ``config`` (any job config with model, data, rollout, verifier, objective, learner,
    cluster and logging sections), reads the training and held-out problems before anything starts,
    checks that the actors fit, claims the run directory and starts the rollout engines, verifier
    pools and learner ranks. Yields ``(run, problems, heldout, rollout, verifiers, learner)``.
    """
    from halo_ray.config import validated
    from halo_ray.data.sources import problems_from_spec
    from halo_ray.driver import init, resolve_model
    from halo_ray.runlog import RunLog, run_path

    config = validated(config)
    if resume and not config.logging.name:
        raise ConfigError("--resume needs the run's name (logging.name) to find its checkpoints")
    if not config.data.train:
        raise ConfigError(f"data.train: name the {job} prompts (a problems file or a source such as demo#raft)")
    problems = {p.id: p.to_dict() for p in problems_from_spec(config.data.train)}
    heldout = [p.to_dict() for p in problems_from_spec(config.data.eval)] if config.data.eval else []
    init(config.cluster)
    model = resolve_model(config.model)
    r = config.rollout
    check_capacity(rollout=r.num_engines * r.num_cpus, verifier=verifier_cpus(config.verifier),
                   learner=config.learner.num_ranks * config.learner.num_cpus_per_rank)
    path = run_path(config.logging.run_dir, config.logging.name, job, resume)
    # Steps after the checkpoint ``begin`` resumes from are done again: what they logged goes first.
    ckpt = latest_checkpoint(path) if resume else None
    run = RunLog(path, config, first_step=int(CHECKPOINT_RE.match(ckpt.name).group(1)) + 1 if ckpt else 0)
    parts = []  # shut down whatever started, also when a step fails
    try:
        from halo_ray.actors.learner import LearnerGroup

        name = run.path.name  # actors are named <run>/rollout-0, <run>/verifier-0, <run>/learner-0
        plan = placement(r, config.learner, config.cluster)  # engines and learner ranks on their bundles
        start_learner = lambda: LearnerGroup(model, config.learner, config.objective, run=name, plan=plan)  # noqa: E731
        learner = None
        if plan.colocated:  # the engines join the learner's placement group, one beside each rank: it starts first
            parts.append(learner := start_learner())
        group = learner.placement_group if learner is not None else None
        parts.append(rollout := RolloutGroup(model, r, run=name, plan=plan, group=group))
        parts.append(verifiers := VerifierGroup(config.verifier, run=name))
        if learner is None:
            parts.append(learner := start_learner())
        yield run, problems, heldout, rollout, verifiers, learner
    finally:
        run.close()
        for part in reversed(parts):  # the last started first: a colocated learner's group outlives the engines
            part.shutdown()


def begin(run, config, heldout: list, rollout, verifiers, learner, resume: bool, progress) -> dict:
    """Where a stream loop starts: a checkpoint's ``extra`` (learner restored, engines on its weights) when
    resuming, else a fresh state after the step-0 evaluation. Always has ``next_step``, ``version``,
    ``stages`` and ``stream`` (None: a fresh stream)."""
    ckpt = latest_checkpoint(run.path) if resume else None
    if ckpt is not None:
        extra = learner.load_checkpoint(str(ckpt))
        rollout.sync_weights(learner, extra["version"])
        progress(f"resumed {run.path} at step {extra['next_step'] + 1} (policy version {extra['version']})")
        return extra
    if resume:
        log.warning("no checkpoint in %s: starting from step 0", run.path)
    extra = {"next_step": 0, "version": 0, "stages": [], "stream": None}
    if heldout:
        pass1 = evaluate_stage(run, rollout, verifiers, heldout, config, "step_0000", extra["stages"])
        run.log(0, {"eval/pass_at_1": pass1}, stage="step_0000")
        progress(f"step 0: held-out pass@1 {pass1:.3f}")
    return extra


def stream_metrics(rows: list[dict], stream: "Stream", rollout, verifiers, wall_s: float, wait_s: float,
                   window_s: float) -> dict:
    """The per-step metrics every algorithm logs: rollout, reward, verdicts, stream accounting and
    staleness, and each actor's idle fraction."""
    from halo_ray.selection import verdict_histogram

    tokens = sum(len(x["token_ids"]) for x in rows)
    n = max(len(rows), 1)
    rewards = sorted(x["reward"] for x in rows) or [0.0]
    state = stream.buffer.state
    out = {
        "rollout/samples": len(rows), "rollout/tokens": tokens, "rollout/completion_len": tokens / n,
        "rollout/truncated_fraction": sum(x["finish_reason"] == "length" for x in rows) / n,
        "verify/reward_mean": sum(rewards) / n, "verify/reward_min": rewards[0], "verify/reward_max": rewards[-1],
        "verify/reward_median": rewards[len(rewards) // 2],
        "verify/pass_fraction": sum(x["verdict"] == SUCCESS for x in rows) / n,
        "stream/wait_s": wait_s, "stream/samples_per_s": len(rows) / max(window_s, 1e-9),
        **{f"stream/{k}": v for k, v in state.counts.items()},
        "stream/stale_groups": state.stale_groups, "stream/filtered_groups": state.filtered_groups,
        **{f"stream/staleness/{k}": v for k, v in state.staleness.items()},
        **{f"verify/verdict/{k}": 0 for k in VERDICTS},
        **{f"verify/verdict/{k}": v for k, v in verdict_histogram(rows).items()},
    }
    for i, st in enumerate(rollout.stats()):
        out[f"stream/idle/rollout-{i}"] = idle_fraction(st["busy_s"], wall_s)
    out["stream/idle/verifier"] = idle_fraction(verifiers.busy_s(), wall_s)
    out["stream/idle/learner"] = idle_fraction(stream.timeline.busy("learner"), wall_s)
    return out


def train_and_sync(learner, rollout, timeline: "Timeline", examples: list[dict], version: int, step: int,
                   **train_kwargs) -> tuple[dict, int]:
    """Train on ``examples`` and ship the new weights (nothing is shipped when nothing was trained).
    Colocated engines (``cluster.colocate``) sleep from before the step until the new weights are in.

    Returns ``(train_metrics, version)``; the metrics include ``time/train_s`` and ``time/sync_s`` (and
    ``time/sleep_wake_s`` when colocated).
    """
    if not examples:
        return {"time/train_s": 0.0, "time/sync_s": 0.0}, version
    t0 = time.perf_counter()
    if rollout.colocated:  # the engines give the GPU to the learner ranks beside them until the weights are in
        rollout.sleep()
    t1 = time.perf_counter()
    try:
        metrics = learner.train(examples, **train_kwargs)
        t2 = time.perf_counter()
        timeline.add("learner", f"train step {step}", t1, t2)
        version += 1
        rollout.sync_weights(learner, version)
        t3 = time.perf_counter()
        timeline.add("sync", f"weights v{version}", t2, t3)
    finally:
        if rollout.colocated:
            rollout.wake_up()
    metrics.update({"time/train_s": t2 - t1, "time/sync_s": t3 - t2})
    if rollout.colocated:
        t4 = time.perf_counter()
        timeline.add("engines asleep", f"step {step}", t0, t4)
        metrics["time/sleep_wake_s"] = (t1 - t0) + (t4 - t3)
    return metrics, version


def samples_table(rows: list[dict], **columns: list) -> "object":
    """A step's samples as a ``ScoredBatch`` plus extra columns (``kept``, ``advantage``...) for Parquet."""
    import pyarrow as pa

    from halo_ray.samples import SCORED_SCHEMA

    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in SCORED_SCHEMA} for r in rows], schema=SCORED_SCHEMA)
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values))
    return table
