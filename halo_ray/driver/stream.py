"""The stream's shared pieces: the actors of a run, held-out evaluation, checkpoints on disk.

``RunActors`` starts what a job needs (rollout engines, verifier pools, learner ranks) with the
resources from config; ``submit_scored`` chains rollout refs into verifier refs so that verification
of a chunk starts as soon as that chunk is sampled, without the driver touching the data.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

import ray

from halo_ray.bench.passk import pass_at_k
from halo_ray.bench.score import score_results
from halo_ray.driver import RolloutGroup
from halo_ray.errors import ConfigError
from halo_ray.samples import concat
from halo_ray.sections import EvalConfig, VerifierConfig

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^cycle_(\d{4,})$")


class VerifierGroup:
    """VerifierPool actors sized from ``verifier.workers`` (0: one worker per CPU of this machine)."""

    def __init__(self, verifier: VerifierConfig, run: str = ""):
        from halo_ray.actors.verifier import start_pools

        self.pools = start_pools(verifier, num_pools=1, cpus_per_pool=float(verifier_cpus(verifier)), run=run)

    def score(self, rollout_ref, problems: dict, index: int = 0):
        """A ref to the ``ScoredBatch`` of a ``RolloutBatch`` ref (runs once the rollout is done)."""
        return self.pools[index % len(self.pools)].score.remote(rollout_ref, problems)

    def busy_s(self) -> float:
        return sum(s["busy_s"] for s in ray.get([p.stats.remote() for p in self.pools]))

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
                  chunk_size: int, **sampling) -> list:
    """Sample and verify ``ids`` in chunks; returns refs to ``ScoredBatch`` tables, one per chunk."""
    prompts = [{"prompt_id": pid, "prompt": problems[pid]["prompt"]} for pid in ids]
    refs = rollout.submit(prompts, chunk_size=chunk_size, **sampling)
    out = []
    for i, ref in enumerate(refs):
        chunk = prompts[i * chunk_size:(i + 1) * chunk_size] if chunk_size else None
        mine = {p["prompt_id"]: problems[p["prompt_id"]] for p in chunk} if chunk else problems
        out.append(verifiers.score(ref, mine, i))
    return out


def evaluate(rollout: RolloutGroup, verifiers: VerifierGroup, heldout: list[dict], cfg: EvalConfig,
             max_new_tokens: int, name: str, chunk_size: int = 32) -> tuple[dict, "object"]:
    """pass@1 of the current weights on held-out problems.

    Samples ``cfg.samples`` completions per problem with the evaluation seed (the same for every
    stage, so stages are paired problem by problem), verifies them and scores them with the
    benchmark's scorer. Returns ``(results, scored_table)``; ``results`` is a benchmark
    results dict (``pass_at_k``, ``verdicts``, ``per_problem``...) plus ``name``.
    """
    started = time.perf_counter()
    by_id = {p["id"]: p for p in heldout}
    refs = submit_scored(rollout, verifiers, by_id, sorted(by_id), chunk_size, n=cfg.samples,
                         temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=max_new_tokens, seed=cfg.seed)
    table = concat(ray.get(refs))
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


def checkpoint_dir(run: Path, cycle: int) -> Path:
    return run / "checkpoints" / f"cycle_{cycle:04d}"


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint of a run (checkpoints are renamed into place when complete)."""
    folder = run / "checkpoints"
    found = sorted((int(m.group(1)), p) for p in folder.glob("cycle_*") if (m := CHECKPOINT_RE.match(p.name)))
    return found[-1][1] if found else None


def prune_checkpoints(run: Path, keep: int) -> None:
    folder = run / "checkpoints"
    found = sorted((int(m.group(1)), p) for p in folder.glob("cycle_*") if (m := CHECKPOINT_RE.match(p.name)))
    for _, path in found[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def idle_fraction(busy_s: float, wall_s: float, workers: int = 1) -> float:
    return max(0.0, 1.0 - busy_s / max(wall_s * workers, 1e-9))
