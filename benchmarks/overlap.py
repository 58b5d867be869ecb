"""How well the stream overlaps sampling, verification and training: its own scheduling against the
ideal pipeline and against the same run at ``max_staleness: 0``.

Stand-in stages with set costs replace the engine, the verifier and the learner (Ray actors that
sleep; the engine batches the requests of its calls in flight as ``RolloutEngine`` does, one step at
a time under its own ``StepLock``, so a weight update waits for the current step only),
while everything else is the real thing: ``halo_ray.driver.stream.Stream`` with its ``StreamBuffer``,
the same refs chained from engine to verifier, ``ray.wait`` on scored chunks, the same loop shape as
``halo_ray.driver.raft``. Two cost profiles: balanced (each stage the same seconds per step) and
unbalanced (sampling twice as slow as the rest).

``ideal`` is the best any scheduler could do with these stages: the slowest stage's total plus one
step of each other stage (fill and drain). ``async_over_ideal`` = async wall / ideal;
``speedup_over_sync`` = sync wall / async wall.

    python benchmarks/overlap.py [--steps 8] [--prompts 8] [--chunk 2] [--stage-s 0.4] [--staleness 2] [--json]

The last line is one JSON object with ``async_over_ideal`` and ``speedup_over_sync`` (balanced case)
and every case's figures.
"""

from __future__ import annotations

import argparse
import json
import time

import ray
from machine import describe  # benchmarks/machine.py (scripts run from their folder)

from halo_ray.driver.stream import Stream, Timeline
from halo_ray.samples import SCORED_SCHEMA
from halo_ray.sections import RolloutConfig, StreamConfig
from halo_ray.timing import StepLock

SAMPLES = 4  # samples per prompt
STEP_S = 0.01  # one engine step (a decode step of the batch): what a weight update waits for at most


@ray.remote(concurrency_groups={"control": 1})  # as RolloutActor: updates never queue behind generate calls
class SleepEngine:
    """Samples ``per_prompt_s`` seconds of work per prompt, as a continuous-batching engine does.

    As in ``RolloutEngine``, a call enqueues its requests and then loops engine steps under the
    engine's ``StepLock`` until they are finished; one step (``STEP_S``) advances every request in
    the engine, whichever call's thread runs it, sharing the step's work evenly among them (so
    calls in flight together finish together, and no call starves while others step).
    """

    def __init__(self, per_prompt_s: float, sync_s: float):
        self.per_prompt_s, self.sync_s, self.version = per_prompt_s, sync_s, 0
        self.lock = StepLock()  # the real engine's lock
        self.left: dict[int, float] = {}  # request -> seconds of work still to do
        self.done: dict[int, int] = {}  # finished request -> version at its last step
        self.next_id = 0

    def generate(self, prompts, **_):
        first, started = self.version, time.perf_counter()
        with self.lock.step():
            me, self.next_id = self.next_id, self.next_id + 1
            self.left[me] = self.per_prompt_s * len(prompts)
        while me not in self.done:
            with self.lock.step():  # a weight update lands between steps
                if self.left:
                    time.sleep(STEP_S)
                    share = STEP_S / len(self.left)
                    for rid in list(self.left):
                        self.left[rid] -= share
                        if self.left[rid] <= 1e-9:
                            del self.left[rid]
                            self.done[rid] = self.version
        last = self.done.pop(me)
        took = time.perf_counter() - started
        return [dict(prompt_id=p["prompt_id"], sample_index=i, prompt="", completion="", prompt_token_ids=[1],
                     token_ids=[2], logprobs=[-0.1], policy_version=first, policy_version_last=last,
                     finish_reason="stop", engine=0, generate_s=took) for p in prompts for i in range(SAMPLES)]

    def ready(self) -> bool:
        return True

    @ray.method(concurrency_group="control")
    def update_weights(self, version: int):
        with self.lock.update():
            time.sleep(self.sync_s)
            self.version = version


@ray.remote
class SleepVerifier:
    """Scores a chunk in ``per_sample_s`` seconds per sample."""

    def __init__(self, per_sample_s: float):
        from halo_ray.samples import warm_up

        warm_up()  # as VerifierPool does (else the first call pays ~0.5 s importing pandas)
        self.per_sample_s = per_sample_s

    def ready(self) -> bool:
        return True

    def score(self, rows, problems):
        import pyarrow as pa

        started = time.perf_counter()
        scored = [dict(r, verdict="SUCCESS", reward=1.0, reward_components={}, pass_rate=1.0,
                       verify_s=self.per_sample_s) for r in rows]
        table = pa.Table.from_pylist(scored, schema=SCORED_SCHEMA)
        # The stage costs its set seconds, its own bookkeeping (building the table) included.
        time.sleep(max(0.0, self.per_sample_s * len(rows) - (time.perf_counter() - started)))
        return table


class StandInRollout:
    """The part of ``RolloutGroup`` the stream uses."""

    def __init__(self, engine):
        self.engine = engine

    def submit(self, prompts, chunk_size=0, index=0, **overrides):
        return [self.engine.generate.remote(prompts, **overrides)]

    def update_weights(self, version: int) -> None:
        ray.get(self.engine.update_weights.remote(version))


class StandInVerifiers:
    def __init__(self, actor):
        self.actor = actor

    def score(self, ref, problems, index=0):
        return self.actor.score.remote(ref, problems)


def run(steps: int, prompts: int, staleness: int, gen_s: float, verify_s: float, train_s: float, sync_s: float,
        chunk: int) -> dict:
    """One run of ``steps`` learner steps; per-step stage costs in seconds. Returns wall time and counts."""
    engine = SleepEngine.options(max_concurrency=4).remote(gen_s / prompts, sync_s)
    verifier = SleepVerifier.remote(verify_s / (prompts * SAMPLES))
    ray.get([engine.ready.remote(), verifier.ready.remote()])  # actor start-up is not the stream's scheduling
    problems = {f"p{i:03d}": {"prompt": ""} for i in range(prompts * (steps + staleness + 2))}
    cfg = StreamConfig(num_steps=steps, prompts_per_step=prompts, chunk_prompts=chunk, max_staleness=staleness)
    stream = Stream(StandInRollout(engine), StandInVerifiers(verifier), problems, cfg,
                    RolloutConfig(samples_per_prompt=SAMPLES), seed=0, timeline=Timeline())
    version, started = 0, time.perf_counter()
    for _ in range(steps):
        groups, _ = stream.next_groups(version)
        stream.buffer.use(groups, version)
        time.sleep(train_s)  # the learner trains
        version += 1
        stream.rollout.update_weights(version)
        stream.buffer.step_done()
        stream.fill()
    wall = time.perf_counter() - started
    counts = dict(stream.buffer.state.counts)
    ray.kill(engine)
    ray.kill(verifier)
    return {"wall_s": wall, "counts": counts, "staleness": dict(stream.buffer.state.staleness)}


def case(name: str, steps: int, prompts: int, staleness: int, gen: float, ver: float, train: float, sync: float,
         chunk: int) -> dict:
    totals = {"sample": steps * gen, "verify": steps * ver, "learn": steps * (train + sync)}
    per_step = {"sample": gen, "verify": ver, "learn": train + sync}
    slowest = max(totals, key=totals.get)
    ideal = totals[slowest] + sum(v for k, v in per_step.items() if k != slowest)  # + fill and drain
    sync_run = run(steps, prompts, 0, gen, ver, train, sync, chunk)
    async_run = run(steps, prompts, staleness, gen, ver, train, sync, chunk)
    out = {"case": name, "ideal_s": ideal, "sync_s": sync_run["wall_s"], "async_s": async_run["wall_s"],
           "async_over_ideal": async_run["wall_s"] / ideal, "speedup_over_sync": sync_run["wall_s"] / async_run["wall_s"],
           "stage_s_per_step": per_step, "async_staleness": async_run["staleness"],
           "async_counts": async_run["counts"]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--chunk", type=int, default=2,
                        help="prompts per rollout request (default 2: four chunks a step, as configs/grpo.yaml's 32 "
                             "prompts in chunks of 8; 1 doubles the calls and their per-call cost)")
    parser.add_argument("--stage-s", type=float, default=0.4, help="seconds per step of each stage (balanced case)")
    parser.add_argument("--staleness", type=int, default=2, help="max_staleness of the async runs")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    t = args.stage_s
    # Stage costs per step: sampling, verification, training (+ a weight sync of a tenth of it).
    profiles = {"balanced": (t, t, 0.9 * t, 0.1 * t), "sampling-bound": (2 * t, t, 0.9 * t, 0.1 * t)}
    results = [case(name, args.steps, args.prompts, args.staleness, *costs, args.chunk)
               for name, costs in profiles.items()]
    ray.shutdown()
    if not args.json:
        print(f"machine: {describe()}")
        print(f"{'case':16} {'ideal s':>8} {'sync s':>8} {'async s':>8} {'async/ideal':>12} {'sync/async':>11}")
        for r in results:
            print(f"{r['case']:16} {r['ideal_s']:8.2f} {r['sync_s']:8.2f} {r['async_s']:8.2f} "
                  f"{r['async_over_ideal']:12.3f} {r['speedup_over_sync']:11.2f}")
    balanced = results[0]
    print(json.dumps({"async_over_ideal": round(balanced["async_over_ideal"], 4),
                      "speedup_over_sync": round(balanced["speedup_over_sync"], 4),
                      "staleness": args.staleness, "steps": args.steps, "cases": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
