"""The stream's timeline: ``Timeline`` records spans (sampling, verification, training, weight sync,
driver waits) and writes them as a Chrome-trace / Perfetto JSON and a PNG Gantt chart.

``halo_ray.driver.stream`` re-exports ``Timeline``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


class Timeline:
    """Spans of the stream (sampling, verification, training, weight sync, driver waits) for a
    Chrome-trace / Perfetto JSON (``ui.perfetto.dev`` opens it) and a PNG Gantt chart."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.spans: list[tuple[str, str, float, float]] = []  # (track, name, start_s, end_s)

    def add(self, track: str, name: str, start: float, end: float) -> None:
        self.spans.append((track, name, start - self.t0, max(end, start) - self.t0))

    def busy(self, track: str, since: float = 0.0) -> float:
        """Seconds the track was busy after ``since`` (overlapping spans count once)."""
        total, edge = 0.0, since - self.t0
        for _, _, a, b in sorted((s for s in self.spans if s[0] == track), key=lambda s: s[2]):
            a = max(a, edge)
            if b > a:
                total += b - a
                edge = b
        return total

    def write(self, folder: Path, plot: bool = True) -> None:
        """``timeline.json`` and, with ``plot``, ``timeline.png`` (the plot costs about 0.2 s: runs draw it at the end)."""
        from halo_ray.io import write_json

        tracks = sorted({s[0] for s in self.spans})
        events = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tracks.index(t), "args": {"name": t}} for t in tracks]
        events += [{"name": name, "cat": track, "ph": "X", "pid": 1, "tid": tracks.index(track),
                    "ts": round(a * 1e6), "dur": round((b - a) * 1e6)} for track, name, a, b in self.spans]
        write_json(folder / "timeline.json", {"traceEvents": events, "displayTimeUnit": "ms"})
        if not plot:
            return
        try:
            self._plot(folder / "timeline.png", tracks)
        except Exception as exc:  # a plot must never cost the run
            log.warning("timeline plot failed: %s", exc)

    def _plot(self, path: Path, tracks: list[str]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from halo_ray.io import atomic_write

        fig, ax = plt.subplots(figsize=(10, 0.6 * len(tracks) + 1.2))
        colours = plt.get_cmap("tab10")
        for i, t in enumerate(tracks):
            bars = [(a, b - a) for track, _, a, b in self.spans if track == t]
            ax.broken_barh(bars, (i - 0.4, 0.8), color=colours(i % 10))
        ax.set_yticks(range(len(tracks)), tracks)
        ax.set_xlabel("seconds since the stream started")
        ax.set_xlim(left=0)
        ax.set_title("stream timeline (gaps are idle hardware)")
        fig.tight_layout()
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
