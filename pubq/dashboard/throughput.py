"""Jobs finished per minute over the last hour, as the backend keeps them.

Workers add what they finished since their last heartbeat into the queue's per-minute buckets
(:meth:`pubq.drivers.base.Driver.record_throughput`), so the chart is the same in every dashboard,
survives a dashboard restart and costs the drain nothing. The dashboard only reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

from pubq.drivers.records import ThroughputBucket

#: Minutes the overview charts.
MINUTES = 60


def last_hour(buckets: Sequence[ThroughputBucket], now_minute: int,
              minutes: int = MINUTES) -> tuple[list[int], list[int]]:
    """(done per minute, failed per minute) for the ``minutes`` minutes up to and including
    ``now_minute`` (the backend clock's), oldest first; minutes without a bucket count zero."""
    done, failed = [0] * minutes, [0] * minutes
    first = now_minute - minutes + 1
    for b in buckets:
        i = b.minute - first
        if 0 <= i < minutes:
            done[i] += b.done
            failed[i] += b.failed
    return done, failed


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
