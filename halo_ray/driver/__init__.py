"""The Python driver API: start or join Ray, build actors from config sections, run the stream's parts.

This is the only ``halo_ray`` module (with the CLI) that imports Ray and the actors. Jobs for
``ray job submit`` and the CLI both call these functions.

    import halo_ray
    halo_ray.init()                                   # local session, or joins RAY_ADDRESS
    table = halo_ray.generate(GenerateConfig(...), [{"prompt_id": "a", "prompt": "def f(x):"}])
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import pyarrow as pa
import ray
from ray.util.placement_group import remove_placement_group

from halo_ray.errors import ClusterError
from halo_ray.placement import PlacementPlan, plan_placement, resolve_weight_transfer
from halo_ray.samples import concat
from halo_ray.sections import (BenchmarkJobConfig, ClusterConfig, GenerateConfig, LearnerConfig, ModelConfig,
                               RolloutConfig)
from halo_ray.verifiers.config import VerifierConfig

log = logging.getLogger(__name__)

# Every worker of a session sees these platform settings (DESIGN.md, platform facts).
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}

# How long ``RolloutGroup.heal`` waits for an engine Ray is restarting (it loads its model again).
HEAL_TIMEOUT_S = 900.0

ROLLOUT_TRIES = 4
"""Tries of one rollout request (a stream chunk, an evaluation, ``generate``) when an actor dies under it,
the engines healed between tries; a request that keeps failing (a bug, a prompt that crashes the engine
every time) ends with the last error instead of being sent forever."""

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


class RolloutGroup:
    """The rollout actors of a run, and how prompts are spread over them.

    All samples of one prompt go to one engine (one request with ``n`` samples); prompts are
    dealt out in contiguous chunks so that each engine gets an equal share. The engines take the rollout
    bundles of ``plan`` (``placement``; by default a plan of the engines alone). In a colocated plan they
    join the learner's placement group ``group``, one beside each rank, and ``sleep`` while it steps.
    """

    def __init__(self, model: ModelConfig, rollout: RolloutConfig, run: str = "", plan: PlacementPlan | None = None,
                 group=None):
        from halo_ray.actors.rollout import start_rollout_actors

        self.model, self.rollout = resolve_model(model), rollout
        plan = plan if plan is not None else placement(rollout)
        self.colocated = plan.colocated
        # Named <run>/rollout-<i>, one per rollout bundle of the plan, in one placement group.
        self.actors, self.placement_group = start_rollout_actors(self.model, rollout, run=run, plan=plan, group=group)
        self.version = 0
        self.weights: ray.ObjectRef | None = None  # the latest weights shipped by ref, for engines Ray restarts
        self.source = None  # the LearnerGroup of the latest collective sync: engines Ray restarts heal from it
        self._group: tuple | None = None  # (learner, update_info, metadata) while the engines are in its group
        self.healed = 0

    def submit(self, prompts: list[dict], chunk_size: int = 0, index: int = 0, **overrides) -> list[ray.ObjectRef]:
        """Send ``prompts`` to the engines without waiting.

        Args:
            prompts: dicts with ``prompt_id`` and ``prompt``.
            chunk_size: prompts per request, dealt round-robin to the engines; 0 sends one equal
                share to each engine.
            index: the first chunk goes to engine ``index mod engines`` (the stream numbers its chunks).
            overrides: sampling settings for these requests (see ``RolloutEngine.generate``).
        Returns:
            One ref to a ``RolloutBatch`` per chunk, in prompt order.
        """
        if chunk_size:
            chunks = [prompts[i:i + chunk_size] for i in range(0, len(prompts), chunk_size)]
        else:
            chunks = [c for c in split_evenly(prompts, len(self.actors)) if c]
        return [self.actors[(index + i) % len(self.actors)].generate.remote(chunk, **overrides)
                for i, chunk in enumerate(chunks)]

    def generate(self, prompts: list[dict], **overrides) -> pa.Table:
        """Sample and wait; one table, ordered by prompt id and sample index. A request an engine died
        under is sent again once the engines are healed (``ROLLOUT_TRIES``)."""
        for attempt in range(1, ROLLOUT_TRIES + 1):
            try:
                return concat(ray.get(self.submit(prompts, **overrides)))
            except ray.exceptions.RayError as exc:
                if attempt == ROLLOUT_TRIES or not worth_retrying(exc, self.heal()):
                    raise
                log.error("a rollout request failed (%s); the engines are healed: sending it again", type(exc).__name__)

    def sync_weights(self, learner, version: int) -> None:
        """Bring every engine to ``learner``'s current weights, as policy ``version``, by the run's transport
        (``rollout.weight_transfer``, resolved by ``halo_ray.placement.resolve_weight_transfer``).

        ``object_store``: learner rank 0 puts the weights (or LoRA adapter) in the object store and every
        engine loads them from the ref (``update_weights``). ``nccl`` / ``gloo``: learner rank 0 broadcasts
        the full weights, bucketed, to every engine's worker through vLLM's weight-transfer API. The group
        is formed at the first such sync and formed again, with every engine, after an engine was restarted
        (a restarted engine is healed by object ref from the learner, ``heal``) or the learner replaced.
        An update runs between engine steps; requests in flight continue.

        Args:
            learner: the run's ``LearnerGroup``; it must hold the weights of ``version`` until the next sync
                (a restarted engine is healed from it).
            version: the policy version of these weights; must increase.
        """
        from halo_ray.actors.learner import gather

        backend = resolve_weight_transfer(self.rollout.weight_transfer, self.rollout.num_gpus,
                                          learner.config.num_gpus_per_rank, self.model.lora.enabled, self.colocated)
        if backend == "object_store":
            self.update_weights(learner.rollout_weights_ref(), version)
            return
        if version <= self.version:  # refused here: an engine that refused would leave the sender waiting
            raise ValueError(f"weights version {version} is not newer than the engines' {self.version}")
        self.weights, self.source, self.version = None, learner, version
        try:
            update_info, meta = self._join(learner, backend)
            receives = [actor.receive_weights.remote(update_info, version) for actor in self.actors]
            gather(receives + learner.send_weights(meta))  # the first failure as soon as it is known
        except ray.exceptions.RayError as exc:
            log.warning("weights v%d over %s failed (%s): the group is left, the engines are healed by ref",
                        version, backend, type(exc).__name__)
            self._leave()
            if not self.heal():  # no engine was behind: the failure is not an engine's death
                raise

    def _join(self, learner, backend: str) -> tuple[dict, list]:
        """Form the transfer group of ``learner``'s rank 0 and every engine, unless it stands; returns the
        update info the engines receive by and the metadata (names, dtypes, shapes) the learner sends by."""
        from halo_ray.weight_transfer import update_info

        if self._group is not None and self._group[0] is learner:
            return self._group[1:]
        self._leave()
        tp = self.rollout.tensor_parallel_size
        init_info, opened = learner.open_weight_transfer(backend, len(self.actors) * tp,
                                                         self.rollout.weight_bucket_mb << 20)
        ray.get([actor.init_weight_transfer.remote(init_info, 1 + i * tp) for i, actor in enumerate(self.actors)]
                + [opened])
        meta = learner.weights_metadata()
        self._group = (learner, update_info(meta), meta)
        log.info("rollout engines joined a %s weight-transfer group with learner rank 0 (%d tensors)", backend, len(meta))
        return self._group[1:]

    def _leave(self) -> None:
        """Dissolve the transfer group (engines and learner rank 0 close their ends; dead ones have none)."""
        if self._group is None:
            return
        learner, self._group = self._group[0], None
        closing = [actor.close_weight_transfer.remote() for actor in self.actors]
        try:
            learner.close_weight_transfer()
        except ray.exceptions.RayError:
            pass  # a learner that died holds no group
        ray.wait(closing, num_returns=len(closing), timeout=60)

    def update_weights(self, weights, version: int) -> None:
        """Ship weights (a state dict or ``LoraAdapter``, put once, sent by ref) to every engine.

        The ref is kept (one copy in the object store) so that an engine Ray restarts, which comes back
        with the initial weights, can be brought to this version (``heal``); an engine that dies while
        the weights travel is healed here.
        """
        ref = weights if isinstance(weights, ray.ObjectRef) else ray.put(weights)
        self.weights, self.source, self.version = ref, None, version
        calls = [actor.update_weights.remote(ref, version) for actor in self.actors]
        try:
            ray.get(calls)
        except ray.exceptions.RayActorError as exc:
            ray.wait(calls, num_returns=len(calls))  # the others finish before their versions are read
            log.warning("a rollout engine died while weights v%d were shipped (%s); healing", version,
                        type(exc).__name__)
            self.heal()

    def heal(self, timeout_s: float = HEAL_TIMEOUT_S) -> list[int]:
        """Bring every engine to the latest weights: wait for engines Ray is restarting, then ship the
        kept weights to each whose version differs (a restarted engine holds the initial ones). After
        collective syncs nothing is kept: the weights come by ref from the learner of the latest sync, which
        still holds them (the stream trains and syncs in one go), and the group is formed again next sync.

        Call it before issuing work after a rollout call failed. Returns the indices of the engines it
        brought to the latest weights (``healed`` counts them over the group's life).

        Raises:
            ray.exceptions.ActorDiedError: an engine is gone for good (its restarts are spent).
            ClusterError: an engine did not come back within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        versions = [self._version_of(i, actor, deadline) for i, actor in enumerate(self.actors)]
        behind = engines_behind(versions, self.version)
        if not behind:
            return []
        if self.weights is None and self.source is None:  # still the initial weights, which restarted engines hold
            ray.get([self.actors[i].resume.remote() for i in behind])
        elif self.weights is not None:
            ray.get([self.actors[i].update_weights.remote(self.weights, self.version) for i in behind])
        else:  # collective syncs: a restarted engine left the group; it loads the learner's weights by ref once
            self._leave()  # formed again, with every engine, at the next sync
            weights = self.source.rollout_weights_ref()
            ray.get([self.actors[i].update_weights.remote(weights, self.version) for i in behind])
        log.warning("rollout engines %s were restarted by Ray with the initial weights: now at weights v%d",
                    behind, self.version)
        self.healed += len(behind)
        return behind

    def _version_of(self, index: int, actor, deadline: float) -> int:
        """The engine's weights version, waiting while Ray restarts it."""
        while True:
            try:
                return ray.get(actor.version.remote(), timeout=max(1.0, deadline - time.monotonic()))
            except ray.exceptions.ActorUnavailableError:  # restarting, or briefly unreachable: ask again
                if time.monotonic() > deadline:
                    raise ClusterError(f"rollout engine {index} did not come back within the heal timeout") from None
                time.sleep(0.5)
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(f"rollout engine {index} did not come back within the heal timeout "
                                   "(is the cluster short of resources for its restart?)") from None

    def sleep(self) -> None:
        """Every engine stops sampling and frees its GPU for the learner rank beside it (``RolloutEngine.sleep``);
        requests in flight wait for ``wake_up``. An engine that died is skipped: Ray restarts it awake."""
        self._each("sleep")

    def wake_up(self) -> None:
        self._each("wake_up")

    def _each(self, method: str) -> None:
        calls = [getattr(actor, method).remote() for actor in self.actors]
        for i, call in enumerate(calls):
            try:
                ray.get(call)
            except ray.exceptions.RayActorError as exc:
                log.warning("rollout engine %d: %s failed (%s); it is healed before it samples again", i, method,
                            type(exc).__name__)

    def stats(self) -> list[dict]:
        """Each engine's counters; an engine that died since is reported idle (``busy_s`` 0)."""
        out = []
        for i, ref in enumerate([actor.stats.remote() for actor in self.actors]):
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayActorError:
                out.append({"engine": i, "busy_s": 0.0})
        return out

    def shutdown(self) -> None:
        ray.wait([actor.close.remote() for actor in self.actors], num_returns=len(self.actors), timeout=30)
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.placement_group is not None:  # colocated: the learner's, removed by the LearnerGroup
            remove_placement_group(self.placement_group)


def worth_retrying(exc: BaseException, healed: list[int]) -> bool:
    """Whether a failed rollout request is worth sending again: an actor died under it, an engine Ray
    restarted refused it (``EngineRestartedError``: it works once healed), or an engine had to be healed;
    any other error would only repeat."""
    from halo_ray.rollout import EngineRestartedError

    chain = []
    while exc is not None and len(chain) < 8:  # a verifier call fails with the rollout call's error as its cause
        chain.append(exc)
        exc = getattr(exc, "cause", None) or exc.__cause__
    return bool(healed) or any(isinstance(e, (ray.exceptions.RayActorError, EngineRestartedError)) for e in chain)


def engines_behind(versions: list[int], latest: int) -> list[int]:
    """Indices of the engines whose weights version is not ``latest`` (restarted ones report -1)."""
    return [i for i, v in enumerate(versions) if v != latest]


def split_evenly(items: list, parts: int) -> list[list]:
    """Split ``items`` into ``parts`` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


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
