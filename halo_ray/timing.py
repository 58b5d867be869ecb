"""Threaded actors whose calls overlap: busy time for idle fractions (``BusyClock``), and turn-taking
between engine steps, weight updates and sleep (``StepLock``)."""

from __future__ import annotations

import collections
import contextlib
import threading
import time


class BusyClock:
    """Wall time during which at least one call was active; overlapping calls count once."""

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0
        self._busy = 0.0

    @contextlib.contextmanager
    def active(self):
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._busy += time.perf_counter() - self._since

    def busy_s(self) -> float:
        with self._lock:
            running = time.perf_counter() - self._since if self._active else 0.0
            return self._busy + running


class StepLock:
    """The engine's lock: generate threads take it one engine step at a time, in the order they asked
    (first come, first served); a weight update takes it at the next step boundary, ahead of every
    thread waiting for a step.

    While paused (the engine sleeps beside the learner, ``pause``/``resume``) no step starts; updates
    still take it (weights arrive while the engine sleeps).

    A plain ``threading.Lock`` is not fair: the thread that just released it takes it again before a
    woken waiter runs. A generate call looping over steps would then keep the engine to itself: other
    calls could not even enqueue their requests (they joined the batch only when it finished), and an
    update could wait many steps while the learner waits for it.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._held = False
        self._updates_waiting = 0
        self._paused = False
        self._queue: collections.deque = collections.deque()  # one token per thread waiting for a step

    @contextlib.contextmanager
    def step(self):
        """Hold the engine for one step (or one enqueue), after the threads that asked before."""
        token = object()
        with self._cond:
            self._queue.append(token)
            try:
                while self._held or self._paused or self._updates_waiting or self._queue[0] is not token:
                    self._cond.wait()
            except BaseException:
                self._queue.remove(token)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._held = True
        try:
            yield
        finally:
            self._release()

    @contextlib.contextmanager
    def update(self):
        """Hold the engine for a weight swap, as soon as the current step ends."""
        with self._cond:
            self._updates_waiting += 1
            try:
                while self._held:
                    self._cond.wait()
            finally:
                self._updates_waiting -= 1
            self._held = True
        try:
            yield
        finally:
            self._release()

    def pause(self) -> None:
        """No step starts until ``resume`` (call it while holding ``update``, so that none starts in between)."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def _release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()
