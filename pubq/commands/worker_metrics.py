"""``listen --metrics-port P`` and ``run --metrics-textfile PATH``: a worker's own Prometheus metrics."""

from __future__ import annotations

from typing import Any

import click

from ..errors import UsageError


def worker_metrics_option(fn: Any) -> Any:
    fn = click.option("--metrics-textfile", "metrics_textfile", metavar="PATH", default=None,
                      help="Write this worker's metrics to PATH (atomically) when it stops: for cron runs "
                           "and node_exporter's textfile collector.")(fn)
    return click.option("--metrics-port", "metrics_port", type=click.IntRange(1, 65535), metavar="PORT",
                        default=None, help="Serve this worker's metrics (job durations, waits, outcomes) on "
                                           "http://0.0.0.0:PORT/metrics while it runs.")(fn)


def attach_worker_metrics(queue: Any, port: int | None, textfile: str | None) -> Any:
    """Attach the worker's metrics behaviour: a port starts the /metrics server now, a path is written
    when the worker stops. Neither: no metrics (nothing imported)."""
    if port is None and textfile is None:
        return None
    from .. import events as ev
    from ..metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.attach(queue)
    if port is not None:
        try:
            metrics.serve(port)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None
    if textfile is not None:
        queue.bus.on(ev.WORKER_STOP, lambda _event: metrics.write_textfile(textfile), label="metrics textfile")
    return metrics
