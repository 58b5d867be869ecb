"""``Verifier``: a local pool of warm sandbox workers with a result cache; ``verify_batch`` on top.

Plain Python (threads waiting on worker pipes), no Ray: ``actors/verifier.py`` wraps it.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from halo_ray.errors import ConfigError, SandboxError
from halo_ray.sandbox import SandboxWorker
from halo_ray.verifiers.native import COMPILE_MAX_PROCESSES
from halo_ray.verifiers.base import VERIFIERS, limits, score
from halo_ray.verifiers.reward import resolve

if TYPE_CHECKING:
    from halo_ray.verifiers.config import VerifierConfig

log = logging.getLogger(__name__)

ATTEMPTS = 3  # a request that cannot be delivered to this many fresh sandboxes in a row raises SandboxError
BUDGET_GRACE_S = 10.0  # host-side slack over the sandbox's own limits before a worker is declared hung


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def plan_request(record: dict, cfg: VerifierConfig, impl: Callable[[str], object] | None = None) -> dict:
    """The sandbox request (plan, limits, reward scheme) for one record; DataError/ConfigError when malformed."""
    name = record.get("verifier") or cfg.name
    if not isinstance(name, str):
        raise ConfigError(f"record {record.get('id')!r}: 'verifier' must be a string")
    VERIFIERS.check(name, f"record {record.get('id')!r}")
    verifier = (impl or (lambda n: VERIFIERS.get(n)()))(name)
    req = verifier.plan(record, cfg)
    req["limits"] = limits(cfg)
    # Part of the cache key, ignored by the worker: the scheme changes the result, never the judgement.
    req["verifier"] = name
    if not req.get("in_process"):  # in-process scorers (srl_trace) have their own reward, not a scheme of the table
        req["reward"] = resolve(cfg.reward, verifier.default_reward(record))
    return req


class Verifier:
    """Verify records in warm sandboxes; results in input order, cached by request.

    Args:
        cfg: the verifier section; ``cfg.workers`` sandboxes (0: one per available CPU) start now.
    """

    def __init__(self, cfg: VerifierConfig):
        VERIFIERS.check(cfg.name, "verifier.name")
        resolve(cfg.reward, "graduated")  # an unknown verifier.reward fails now, not at the first batch
        self.cfg = cfg
        self.workers = cfg.workers or available_cpus()
        self._impls: dict[str, object] = {}
        self._binds = sorted({d for name in VERIFIERS for d in self._impl(name).binds()})
        self._cache: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._idle: queue.Queue[SandboxWorker] = queue.Queue()
        self._all: list[SandboxWorker] = []
        self._closed = False
        with ThreadPoolExecutor(self.workers) as ex:
            started = list(ex.map(lambda _: self._start_worker(), range(self.workers)))
        for worker in started:
            self._idle.put(worker)

    def _impl(self, name: str):
        if name not in self._impls:
            self._impls[name] = VERIFIERS.get(name)()
        return self._impls[name]

    def _start_worker(self) -> SandboxWorker:
        cfg = self.cfg
        limits = {"run": (cfg.memory_mb << 20, cfg.max_processes),
                  "compile": (cfg.compile_memory_mb << 20, COMPILE_MAX_PROCESSES)}
        worker = SandboxWorker(self._binds, cfg.scratch_mb, limits=limits)
        with self._lock:
            self._all.append(worker)
        return worker

    def request(self, record: dict) -> dict:
        """The sandbox request for one record (DataError/ConfigError when it is malformed)."""
        return plan_request(record, self.cfg, self._impl)

    @staticmethod
    def cache_key(req: dict) -> str:
        """Key of a request: code, tests, cases, verifier plan, limits and reward scheme."""
        return hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()

    def verify(self, records: list[dict], progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Verify ``records``; returns one result dict per record, in input order.

        Each result: ``id``, ``verdict``, ``reward`` (under ``cfg.reward``), ``pass_rate``,
        ``tests_passed``, ``tests_total``, ``duration_s``, ``detail``, ``reward_components`` (summing to
        ``reward``), ``warnings``. ``progress(done, total)`` is called as records finish.
        Malformed records raise DataError/ConfigError before anything runs; a sandbox that keeps
        failing raises SandboxError (infrastructure, never a verdict).
        """
        if self._closed:
            raise SandboxError("this Verifier is closed")
        requests = [self.request(r) for r in records]
        if any(req.get("in_process") for req in requests):
            return self._verify_mixed(records, requests, progress)
        keys = [self.cache_key(r) for r in requests]
        results: dict[str, dict] = {}
        todo: dict[str, dict] = {}
        with self._lock:
            for key, req in zip(keys, requests):
                if key in self._cache:
                    self._cache.move_to_end(key)
                    results[key] = self._cache[key]
                else:
                    todo.setdefault(key, req)
        waiting = collections.Counter(keys)
        done = sum(waiting[k] for k in results)
        if progress:
            progress(done, len(records))
        if todo:
            with ThreadPoolExecutor(min(self.workers, len(todo))) as ex:
                futures = {ex.submit(self._run, req): key for key, req in todo.items()}
                for future in as_completed(futures):
                    key = futures[future]
                    results[key] = future.result()
                    self._remember(key, results[key])
                    done += waiting[key]
                    if progress:
                        progress(done, len(records))
        return [{"id": record.get("id"), **results[key]} for key, record in zip(keys, records)]

    def _verify_mixed(self, records: list[dict], requests: list[dict],
                      progress: Callable[[int, int], None] | None) -> list[dict]:
        """Records of ``in_process`` verifiers (SRL trace matching) scored here, the rest in the sandboxes."""
        out: list[dict | None] = [None] * len(records)
        local: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            if req.get("in_process"):
                local.setdefault(req["verifier"], []).append(i)
        for name, idx in local.items():
            results = self._impl(name).score_records([records[i] for i in idx], self.cfg, self)
            for i, result in zip(idx, results):
                out[i] = {**result, "id": records[i].get("id")}
        rest = [i for i, slot in enumerate(out) if slot is None]
        for i, result in zip(rest, self.verify([records[i] for i in rest]) if rest else []):
            out[i] = result
        if progress:
            progress(len(records), len(records))
        return out

    def _remember(self, key: str, result: dict) -> None:
        if self.cfg.cache_size <= 0:
            return
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self.cfg.cache_size:
                self._cache.popitem(last=False)

    def _budget(self, req: dict) -> float:
        runs = max(1, len(req.get("cases") or ()))
        compile_s = req["compile"]["timeout"] if "compile" in req else 0.0
        return compile_s + runs * (req["limits"]["timeout"] + 1.5) + BUDGET_GRACE_S

    def _run(self, req: dict) -> dict:
        """One check. Only a request that could not be delivered is retried (on a fresh worker);
        once delivered, whatever goes wrong is this check's verdict and the worker is replaced."""
        worker = self._idle.get()
        try:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    if worker is None:
                        worker = self._start_worker()
                    raw = worker.run(req, self._budget(req))
                except SandboxError as exc:
                    log.warning("sandbox failure before the check (attempt %d of %d), restarting the worker: %s",
                                attempt, ATTEMPTS, exc)
                    worker = self._replace(worker)
                    if attempt == ATTEMPTS:
                        raise SandboxError(f"the sandbox failed {ATTEMPTS} times before one check: {exc}") from None
                    continue
                if raw.get("replace_worker"):
                    worker = self._replace(worker, start=False)
                return score(raw, req["reward"])
        finally:
            self._idle.put(worker)
        raise AssertionError("unreachable")

    def _replace(self, worker: SandboxWorker | None, start: bool = True) -> SandboxWorker | None:
        """Close ``worker``; a fresh one now (``start``) or lazily by the next check (None)."""
        if worker is not None:
            worker.close()
            with self._lock:
                if worker in self._all:
                    self._all.remove(worker)
        if not start:
            return None
        time.sleep(0.05)
        try:
            return self._start_worker()
        except SandboxError as exc:
            log.warning("a replacement sandbox failed to start: %s", exc)
            return None

    def close(self) -> None:
        """Stop every sandbox."""
        self._closed = True
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def verify_batch(records: list[dict], cfg: VerifierConfig, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Verify ``records`` locally in a fresh pool of warm sandboxes (no Ray); results in input order.

    Args:
        records: dicts with ``id``, ``code``, optional ``language`` (python, c, cpp, rust, go),
            ``tests`` (Python run after the code), ``test_cases`` (``[{"input", "output"}]``),
            ``entry_point``, ``verifier`` (overrides ``cfg.name``).
        cfg: the verifier section (workers, limits, reward scheme, cache size).
        progress: optional ``progress(done, total)`` callback.
    Returns:
        One dict per record: ``id``, ``verdict``, ``reward``, ``pass_rate``, ``tests_passed``,
        ``tests_total``, ``duration_s``, ``detail``, ``reward_components``, ``warnings``.
    """
    if not records:
        return []
    workers = min(cfg.workers or available_cpus(), len(records))
    with Verifier(replace(cfg, workers=workers)) as verifier:
        return verifier.verify(records, progress)
