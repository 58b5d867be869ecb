"""Busy time of a component whose calls may overlap (threaded actors), for idle fractions."""

from __future__ import annotations

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
