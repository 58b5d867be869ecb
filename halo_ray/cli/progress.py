"""Progress for the CLI: bars (rich, on stderr) on a terminal, INFO lines through ``logging`` otherwise.

The library only logs; commands wrap their long steps here. ``--log-level INFO`` shows the lines
when stderr is not a terminal (a log file, CI).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from typing import Iterator

log = logging.getLogger("halo_ray.cli")


def interactive() -> bool:
    """Whether progress should be drawn (stderr is a terminal)."""
    return sys.stderr.isatty()


class Progress:
    """Counts ``done`` of ``total`` items (``label`` says what, e.g. "sampled" ... "prompts").

    On a terminal: a transient rich bar with rate and ETA. Otherwise: an INFO line at each tenth
    and at the end (``sampled 20/50 prompts (40%, 3.1 s, ETA 4.6 s)``).
    """

    def __init__(self, label: str, total: int, unit: str = ""):
        self.label, self.total, self.unit = label, max(0, int(total)), unit
        self.done = 0
        self._bar = self._task = None
        self._start = time.monotonic()
        self._logged_tenth = 0

    def __enter__(self) -> "Progress":
        self._start = time.monotonic()
        if interactive():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn
            from rich.progress import TimeRemainingColumn

            self._bar = Bar(TextColumn(f"{self.label}"), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            transient=True, console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        else:
            log.info("%s 0/%d %s", self.label, self.total, self.unit)
        return self

    def update(self, done: int, total: int | None = None) -> None:
        """Set the count (a callback shape ``(done, total)`` that ``verify_batch`` accepts)."""
        if total is not None:
            self.total = total
        self.done = min(int(done), self.total) if self.total else int(done)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total)
            return
        tenth = 10 * self.done // self.total if self.total else 10
        if tenth > self._logged_tenth or self.done == self.total:
            if self.done == self.total and self._logged_tenth == 10:
                return
            self._logged_tenth = tenth
            log.info("%s", self.line())

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        share = self.done / self.total if self.total else 1.0
        eta = f", ETA {elapsed * (1 - share) / share:.1f} s" if 0 < share < 1 else ""
        return (f"{self.label} {self.done}/{self.total} {self.unit} ({100 * share:.0f}%, {elapsed:.1f} s{eta})"
                .replace("  ", " "))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextlib.contextmanager
def status(label: str) -> Iterator[None]:
    """A step without a count (loading an engine, building a model): a spinner, or two INFO lines."""
    start = time.monotonic()
    if interactive():
        from rich.console import Console

        with Console(stderr=True).status(f"{label}..."):
            yield
    else:
        log.info("%s...", label)
        yield
    log.info("%s: done in %.1f s", label, time.monotonic() - start)


STEP_LINE = re.compile(r"^step (\d+)/(\d+)\b")


class StepProgress:
    """The ``progress`` of a training loop: prints each line it receives; a ``step i/N`` line gets the rate
    and ETA appended (``step 3/10: ... [12.4 s/step, ETA 87 s]``), so job logs show them too; on a terminal a
    bar of the steps (rich, on stderr) sits below the lines.

    The rate is the last step's time, since the previous step line (the first step's counts from the
    start: loading the engines, a resume's checkpoint, a restart's new actors are in it).
    """

    def __init__(self):
        self._last = time.monotonic()
        self._bar: Progress | None = None

    def __call__(self, line: str) -> None:
        match = STEP_LINE.match(line)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            now = time.monotonic()
            step_s, self._last = now - self._last, now
            line += f" [{step_s:.1f} s/step, ETA {step_s * (total - done):.0f} s]"
            if self._bar is None and interactive():
                self._bar = Progress("steps", total).__enter__()
            if self._bar is not None:
                self._bar.update(done, total)
        print(line, flush=True)

    def close(self) -> None:
        """Take the bar away (a no-op without one)."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
