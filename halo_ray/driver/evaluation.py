"""Held-out evaluation of a run's current weights: ``evaluate`` samples and verifies the held-out problems
on the run's rollout engines and verifier pools and scores pass@1 with the benchmark's scorer;
``evaluate_stage`` records one as a stage of a stream run (``eval/<name>.json``).

``halo_ray.driver.stream`` re-exports these names.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import ray

from halo_ray.bench.passk import pass_at_k
from halo_ray.bench.score import score_results
from halo_ray.driver.rollout import ROLLOUT_TRIES, RolloutGroup
from halo_ray.samples import EVAL_COLUMNS, concat
from halo_ray.sections import EvalConfig

if TYPE_CHECKING:
    from halo_ray.driver.stream import VerifierGroup

log = logging.getLogger(__name__)


def evaluate(rollout: RolloutGroup, verifiers: VerifierGroup, heldout: list[dict], cfg: EvalConfig,
             max_new_tokens: int, name: str, chunk_size: int = 32) -> tuple[dict, "object"]:
    """pass@1 of the current weights on held-out problems.

    Samples ``cfg.samples`` completions per problem with the evaluation seed (the same for every
    stage, so stages are paired problem by problem), verifies them and scores them with the
    benchmark's scorer. Returns ``(results, scored_table)``; ``results`` is a benchmark
    results dict (``pass_at_k``, ``verdicts``, ``per_problem``...) plus ``name``; the table holds only
    ``samples.EVAL_COLUMNS`` (the verifier actors send no token ids or texts for an evaluation).
    """
    from halo_ray.driver.stream import heal_for_retry, submit_scored  # here: the stream module imports this one

    started = time.perf_counter()
    by_id = {p["id"]: p for p in heldout}
    for attempt in range(1, ROLLOUT_TRIES + 1):
        refs = submit_scored(rollout, verifiers, by_id, sorted(by_id), chunk_size, columns=EVAL_COLUMNS, n=cfg.samples,
                             temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=max_new_tokens, seed=cfg.seed)
        try:
            table = concat(ray.get(refs))
            break
        except ray.exceptions.RayError as exc:  # an actor died: heal, and sample again (same seed, same samples)
            log.error("evaluation %s failed (%s); healing the engines and trying again", name, type(exc).__name__)
            heal_for_retry(rollout, verifiers, exc, attempt)
    rows = table.to_pylist()
    grouped: dict[str, list[dict]] = {}
    for r in rows:
        grouped.setdefault(r["prompt_id"], []).append(r)
    elapsed = time.perf_counter() - started
    results = score_results(heldout, grouped, [1], model=f"{rollout.model.path}@v{rollout.version}",
                            timing={"total_s": elapsed})
    results["name"] = name
    log.info("eval %s: pass@1 %.3f over %d problems (%.1f s)", name, results["pass_at_k"]["1"], len(heldout), elapsed)
    return results, table


def stage_summary(results: dict) -> dict:
    """The per-stage entry of ``report.json``."""
    return {"name": results["name"], "pass_at_1": results["pass_at_k"]["1"],
            "reward_mean": results.get("reward_mean"), "verdicts": results["verdicts"]}


def per_problem_pass1(results: dict) -> dict[str, float]:
    return {p["id"]: pass_at_k(p["n"], p["c"], 1) for p in results["per_problem"]}


def evaluate_stage(run, rollout, verifiers, heldout: list, config, name: str, stages: list) -> float:
    """Held-out pass@1 of the current weights as stage ``name``: ``eval/<name>.json``, appended to ``stages``."""
    from halo_ray.io import write_json

    results, _ = evaluate(rollout, verifiers, heldout, config.eval, config.rollout.max_new_tokens, name)
    write_json(run.path / "eval" / f"{name}.json", results)
    stages.append(stage_summary(results))
    return results["pass_at_k"]["1"]
