"""Jobs finished per minute over the last hour, from samples of each queue's counters.

The backends keep totals (``done``, ``failed_total``), not a time series, so the dashboard samples
them (on each overview and once a minute in the background) and charts the differences. The chart
therefore starts when the dashboard did; samples live in this process only (nothing is written).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

WINDOW = 3600.0
BUCKET = 60.0
#: Samples closer together than this are not kept (a busy overview does not fill the buffer).
MIN_GAP = 5.0


@dataclass(frozen=True)
class Sample:
    at: float
    done: int
    failed: int


class Throughput:
    """Per-queue counter samples of the last hour (thread-safe; owned by one dashboard)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, deque[Sample]] = {}

    def record(self, queue: str, at: float, done: int, failed: int) -> None:
        with self._lock:
            samples = self._samples.setdefault(queue, deque())
            if samples and at - samples[-1].at < MIN_GAP:
                return
            samples.append(Sample(at, done, failed))
            while samples and samples[0].at < at - WINDOW - BUCKET:
                samples.popleft()

    def buckets(self, queue: str, now: float) -> tuple[list[int], list[int], float | None]:
        """(done per minute, failed per minute) for the 60 minutes to ``now``, oldest first, and
        when sampling began (None: fewer than two samples yet)."""
        with self._lock:
            samples = list(self._samples.get(queue, ()))
        done, failed = [0] * 60, [0] * 60
        for prev, cur in zip(samples, samples[1:], strict=False):
            age = now - cur.at
            if age < 0 or age >= WINDOW:
                continue
            i = 59 - int(age // BUCKET)
            # A counter that went down (a queue recreated) counts nothing rather than negative.
            done[i] += max(cur.done - prev.done, 0)
            failed[i] += max(cur.failed - prev.failed, 0)
        since = samples[0].at if len(samples) >= 2 else None
        return done, failed, since


def svg_chart(done: list[int], failed: list[int], *, width: int = 240, height: int = 48) -> str:
    """A bar chart (one bar per minute: done in green, failed stacked in red) as inline SVG markup.

    Only numbers go into it, so it needs no escaping."""
    top = max([d + f for d, f in zip(done, failed, strict=True)] + [1])
    bar = width / len(done)
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="jobs per minute, last hour; peak {top}">',
             f'<rect class="axis" x="0" y="{height - 1}" width="{width}" height="1"/>']
    for i, (d, f) in enumerate(zip(done, failed, strict=True)):
        x = i * bar
        hd = (height - 2) * d / top
        hf = (height - 2) * f / top
        if d:
            parts.append(f'<rect class="done" x="{x:.1f}" y="{height - 1 - hd:.1f}" width="{bar - 0.5:.1f}" '
                         f'height="{hd:.1f}"><title>{d} done</title></rect>')
        if f:
            parts.append(f'<rect class="failed" x="{x:.1f}" y="{height - 1 - hd - hf:.1f}" '
                         f'width="{bar - 0.5:.1f}" height="{hf:.1f}"><title>{f} failed</title></rect>')
    parts.append("</svg>")
    return "".join(parts)
