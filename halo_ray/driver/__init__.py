"""The Python driver API: start or join Ray, build actors from config sections, run the stream's parts.

This is the only ``halo_ray`` module (with the CLI) that imports Ray and the actors. Jobs for
``ray job submit`` and the CLI both call these functions. ``RolloutGroup`` (the rollout engines' handle)
lives in ``halo_ray.driver.rollout`` and is re-exported here.

    import halo_ray
    halo_ray.init()                                   # local session, or joins RAY_ADDRESS
    table = halo_ray.generate(GenerateConfig(...), [{"prompt_id": "a", "prompt": "def f(x):"}])
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pyarrow as pa
import ray

# The rollout engines' handle and the retry rule live in driver/rollout.py; imported from here as before.
from halo_ray.driver.rollout import (HEAL_TIMEOUT_S, ROLLOUT_TRIES, RolloutGroup,  # noqa: F401
                                     engines_behind, split_evenly, worth_retrying)
from halo_ray.errors import ClusterError
from halo_ray.placement import PlacementPlan, plan_placement
from halo_ray.sections import (BenchmarkJobConfig, ClusterConfig, GenerateConfig, LearnerConfig, ModelConfig,
                               RolloutConfig)
from halo_ray.verifiers.config import VerifierConfig

log = logging.getLogger(__name__)

# Every worker of a session sees these platform settings (DESIGN.md, platform facts).
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}

# Sampling settings that a call may override; the others fix how an engine is built.
SAMPLING_FIELDS = ("samples_per_prompt", "temperature", "top_p", "max_new_tokens", "seed", "stop")


def init(cluster: ClusterConfig | None = None) -> None:
    """Join the cluster at ``cluster.address`` or ``RAY_ADDRESS``, else start a local session.

    Without an address the session is always a new local one (``address="local"``): a Ray address
    file left by an earlier session, or a head started with ``ray start``, is never joined by
    accident. A session that is already up is reused. Ray's own start-up errors become one
    ``ClusterError`` line with the fix; SIGTERM and SIGINT stop the run's actors (``shutdown``).
    At INFO, actor output reaches this process's stderr and the session's log folder is logged.
    """
    global _OWN_SESSION, STOPPED_BY
    if ray.is_initialized():
        return
    STOPPED_BY = None
    cluster = cluster or ClusterConfig()
    address = cluster.address or os.environ.get("RAY_ADDRESS", "")
    env = dict(WORKER_ENV)
    verbose = logging.getLogger("halo_ray").isEnabledFor(logging.INFO)
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, namespace=cluster.namespace, runtime_env={"env_vars": env},
                     log_to_driver=verbose)
        else:
            # Logical CPUs: rollout, verifier and learner actors each reserve some and take turns on a small box.
            num_cpus = cluster.num_cpus or max(4, os.cpu_count() or 1)
            ray.init(
                address="local",
                num_cpus=num_cpus,
                namespace=cluster.namespace,
                include_dashboard=cluster.dashboard,
                runtime_env={"env_vars": env},
                log_to_driver=verbose,
            )
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        raise ClusterError(_ray_start_error(address, exc)) from exc
    _OWN_SESSION = True
    _handle_signals()
    log.info("Ray session logs: %s", _session_logs())


def _ray_start_error(address: str, exc: BaseException) -> str:
    """One line: what failed, Ray's own words, and the fix."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if address:
        where = "cluster.address" if os.environ.get("RAY_ADDRESS", "") != address else "RAY_ADDRESS"
        return (f"cannot join the Ray cluster at {address!r} ({where}): {first}. Check that the head is up "
                f"(`ray status --address {address}`), or unset RAY_ADDRESS and leave cluster.address empty "
                "to run a local session")
    return (f"cannot start a local Ray session: {first}. Set RAY_TMPDIR to an empty folder of your own "
            "(a short path) and retry; leftover Ray processes of an earlier run are listed by `ps -ef | grep raylet`")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minute of retries, when a ``host:port`` address does not answer."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or address in ("auto", "local"):
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(_ray_start_error(address, exc)) from None


def _session_logs() -> str:
    try:
        return ray._private.worker.global_worker.node.get_logs_dir_path()
    except AttributeError:  # joined a remote cluster: its logs live on the head
        return "on the cluster's head node (ray logs)"


def _handle_signals() -> None:
    """SIGTERM and SIGINT end the run through ``shutdown`` (actors stopped, own session closed)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):
        global STOPPED_BY
        STOPPED_BY = signum  # Ray turns an exception raised inside ray.get into SystemExit(1): keep the cause
        log.warning("received %s: stopping the run's actors", signal.Signals(signum).name)
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        _PREVIOUS_HANDLERS.setdefault(signum, signal.getsignal(signum))
        signal.signal(signum, stop)


def _restore_signals() -> None:
    import signal

    for signum, handler in _PREVIOUS_HANDLERS.items():
        try:
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        except ValueError:  # not the main thread
            return
    _PREVIOUS_HANDLERS.clear()


def default_model_dir() -> Path:
    """Where the embedded tiny model is built when ``model.path`` is empty."""
    cache = Path(os.environ.get("HALO_RAY_CACHE", Path.home() / ".cache" / "halo-ray"))
    return cache / "models" / "tiny-seed0"


def resolve_model(model: ModelConfig) -> ModelConfig:
    """``model`` with ``path`` set: an empty path builds (once) and uses the embedded tiny model."""
    if model.path:
        from halo_ray.rollout import check_model_dir

        check_model_dir(model.path)
        return model
    path = default_model_dir()
    if not (path / "config.json").is_file():
        from halo_ray.tiny import init_tiny

        log.info("building the embedded tiny model in %s", path)
        init_tiny(path, seed=0)
    return dataclasses.replace(model, path=str(path))


def placement(rollout: RolloutConfig | None = None, learner: LearnerConfig | None = None,
              cluster: ClusterConfig | None = None) -> PlacementPlan:
    """The run's placement plan: bundles for its engines and learner ranks (None: that role has none), from
    the config and ``ray.cluster_resources()`` (``halo_ray.placement.plan_placement``).

    A job passes the plan to ``RolloutGroup`` and ``LearnerGroup``: each role gets a placement group of
    its bundles (on the 2-GPU box, the engine's card and the learner's card); a colocated plan has one,
    the learner's, which the engines join.

    Raises:
        ConfigError: the plan needs more CPUs or GPUs than the cluster has (the keys to change).
    """
    cluster = cluster or ClusterConfig()
    tp = rollout.tensor_parallel_size if rollout is not None else 1
    return plan_placement(rollout, learner, ray.cluster_resources(), cluster.colocate, tp)


_GROUPS: dict[tuple, RolloutGroup] = {}
_OWN_SESSION = False  # whether init() started or joined Ray (then shutdown() disconnects)
STOPPED_BY: int | None = None  # the signal (SIGTERM, SIGINT) that ended the run, if any
_PREVIOUS_HANDLERS: dict = {}  # signal handlers init() replaced; shutdown() puts them back


def rollout_group(model: ModelConfig, rollout: RolloutConfig) -> RolloutGroup:
    """A started ``RolloutGroup`` for these engine settings, reused across calls in this driver."""
    engine_settings = dataclasses.replace(rollout, **{f: getattr(RolloutConfig(), f) for f in SAMPLING_FIELDS})
    key = (model, engine_settings)
    group = _GROUPS.get(key)
    if group is None or not group.actors:
        group = _GROUPS[key] = RolloutGroup(model, engine_settings)
    return group


def generate(config: GenerateConfig, prompts: list[dict]) -> pa.Table:
    """Sample ``config.rollout.samples_per_prompt`` completions for each prompt.

    Args:
        config: model, rollout (sampling and engines) and cluster sections.
        prompts: dicts with ``prompt_id`` and ``prompt``.
    Returns:
        A ``RolloutBatch`` Arrow table (see ``halo_ray.samples``), ordered by prompt and sample.
    """
    from halo_ray.data.schema import check_prompts

    check_prompts(prompts)  # a missing prompt_id is named here, not as a KeyError inside an actor
    init(config.cluster)
    r = config.rollout
    group = rollout_group(config.model, r)
    return group.generate(prompts, n=r.samples_per_prompt, temperature=r.temperature, top_p=r.top_p,
                          max_tokens=r.max_new_tokens, seed=r.seed, stop=list(r.stop) or None)


def verify(records: list[dict], cfg: VerifierConfig, batch_size: int = 64) -> list[dict]:
    """Verify ``records`` on VerifierPool actors (one, with the CPUs the session has); input order.

    Record and result fields are those of ``halo_ray.verifiers.verify_batch``, which does the same
    without Ray.
    """
    from halo_ray.actors.verifier import verify_on_ray

    init()
    cpus = max(1.0, float(ray.available_resources().get("CPU", 1.0)))
    return verify_on_ray(records, cfg, batch_size=batch_size, cpus_per_pool=cpus)


def benchmark(config: BenchmarkJobConfig) -> dict:
    """pass@k of a model on ``config.benchmark.problems``: rollout actors sample, VerifierPool actors verify.

    Returns the results dict (see ``halo_ray.bench.score.score_results``), also written to
    ``config.benchmark.output``.
    """
    from halo_ray.bench.run import benchmark_from_config

    init(config.cluster)
    if config.benchmark.samples_file:  # nothing to sample: verify on the pool only
        return benchmark_from_config(config, None, lambda records: verify(records, config.verifier))
    gen = GenerateConfig(model=config.model, rollout=config.rollout, cluster=config.cluster, logging=config.logging)
    return benchmark_from_config(config, lambda prompts: generate(gen, prompts),
                                 lambda records: verify(records, config.verifier))


def shutdown() -> None:
    """Stop this driver's actors; disconnect from Ray if ``init`` connected (not a caller's session)."""
    global _OWN_SESSION
    for group in _GROUPS.values():
        group.shutdown()
    _GROUPS.clear()
    if _OWN_SESSION and ray.is_initialized():
        ray.shutdown()
    _OWN_SESSION = False
    _restore_signals()
