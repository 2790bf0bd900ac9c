"""Prometheus metrics (prometheus-client): the backend exporter and a worker's own measures.

Names are ``pubq_*`` in base units, labels only ``queue``, ``job``, ``outcome`` and ``state``
(spec §7.5: no job ids, which would make unbounded series).

* :class:`BackendCollector` (``pubq metrics serve``) reads every queue's O(1) counters at scrape time:
  ``pubq_queue_jobs{queue,state}``, ``pubq_queue_paused{queue}``, ``pubq_workers{queue,state}``,
  ``pubq_jobs_total{queue,outcome}`` and ``pubq_up{queue}`` (0 when the backend does not answer).
* :class:`WorkerMetrics` (``listen --metrics-port``, ``run --metrics-textfile``) is a behaviour of the
  worker's queue: ``pubq_job_duration_seconds{queue,job}``, ``pubq_job_wait_seconds{queue}`` (push →
  start of the attempt, on the backend clock; observed when the attempt ends) and ``pubq_worker_jobs_total{queue,outcome}`` — this worker's outcomes
  (the queue-wide totals are the exporter's ``pubq_jobs_total``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import events as ev
from .errors import JobCancelledError, PubqError

if TYPE_CHECKING:  # pragma: no cover
    from .drivers.base import Driver
    from .queue import Queue

#: ``pubq_queue_jobs`` states and ``pubq_workers`` states (every one is exported, zeros included,
#: so a series never disappears).
JOB_STATES = ("waiting", "delayed", "reserved", "failed")
WORKER_STATES = ("idle", "busy", "paused", "stopping", "lost")
#: ``pubq_jobs_total`` outcomes and the Counts field each is read from.
OUTCOMES = {"done": "done", "failed": "failed_total", "retried": "retried", "cancelled": "cancelled",
            "follow_up_failed": "follow_up_failed", "limited": "limited"}
#: Histogram buckets (seconds): jobs from milliseconds to an hour; waits likewise.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


class BackendCollector:
    """A prometheus-client collector over queues' drivers, read at each scrape (nothing cached)."""

    def __init__(self, queues: Callable[[], Iterable[tuple[str, Driver]]]) -> None:
        #: Called at each scrape: (queue name, driver) pairs.
        self.queues = queues

    def describe(self) -> list[Any]:
        return []  # collected on demand: registering must not touch the backend

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        jobs = GaugeMetricFamily("pubq_queue_jobs", "Jobs in each state now.", labels=["queue", "state"])
        paused = GaugeMetricFamily("pubq_queue_paused", "1 while the queue is paused.", labels=["queue"])
        workers = GaugeMetricFamily("pubq_workers", "Registered workers by state (lost: no recent beat).",
                                    labels=["queue", "state"])
        totals = CounterMetricFamily("pubq_jobs", "Jobs by outcome since the queue was created.",
                                     labels=["queue", "outcome"])
        up = GaugeMetricFamily("pubq_up", "1 when the queue's backend answered this scrape.", labels=["queue"])
        for name, driver in self.queues():
            try:
                counts = driver.counts()
                is_paused = driver.paused()
                listed = driver.workers()
            except PubqError:
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            for state in JOB_STATES:
                jobs.add_metric([name, state], getattr(counts, state))
            paused.add_metric([name], 1 if is_paused else 0)
            by_state = dict.fromkeys(WORKER_STATES, 0)
            for w in listed:
                key = "lost" if w.lost else w.state
                by_state[key] = by_state.get(key, 0) + 1
            for state, n in by_state.items():
                workers.add_metric([name, state], n)
            for outcome, field in OUTCOMES.items():
                totals.add_metric([name, outcome], getattr(counts, field))
        yield from (jobs, paused, workers, totals, up)


class WorkerMetrics:
    """This worker's job durations, waits and outcomes, in a registry of its own (a behaviour)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: they double the exposition and say little here
        self.registry = CollectorRegistry()
        self.duration = Histogram("pubq_job_duration_seconds", "Seconds a job ran, by job class.",
                                  ["queue", "job"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.wait = Histogram("pubq_job_wait_seconds", "Seconds from push to the start of an attempt.",
                              ["queue"], buckets=WAIT_BUCKETS, registry=self.registry)
        self.outcomes = Counter("pubq_worker_jobs", "Attempts this worker ended, by outcome.",
                                ["queue", "outcome"], registry=self.registry)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def attach(self, queue: Queue) -> None:
        for outcome in ("done", "failed", "retried", "cancelled"):
            self.outcomes.labels(queue.name, outcome)  # every series from the start, at 0
        label = f"{__name__}:WorkerMetrics"
        # Two handlers, each doing all three measures of an attempt: fewer events fired per job.
        queue.bus.on(ev.AFTER_EXEC, self._after_exec, label=label)
        queue.bus.on(ev.AFTER_ERROR, self._after_error, label=label)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached (the lookup costs more than the observation)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _attempt(self, event: ev.ExecEvent, outcome: str) -> None:
        queue = event.queue.name
        if event.pushed_at is not None and event.reserved_at is not None:
            self._child(self.wait, queue).observe(max(event.reserved_at - event.pushed_at, 0.0))
        if event.duration is not None:
            self._child(self.duration, queue, event.job_name).observe(event.duration)
        self._child(self.outcomes, queue, outcome).inc()

    def _after_exec(self, event: ev.ExecEvent) -> None:
        self._attempt(event, "done")

    def _after_error(self, event: ev.ExecEvent) -> None:
        code = getattr(event.error, "error_code", None) or getattr(event.error, "code", "")
        if isinstance(event.error, JobCancelledError) or code == JobCancelledError.code:
            outcome = "cancelled"
        else:
            outcome = "retried" if event.retry else "failed"
        self._attempt(event, outcome)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose the registry on ``http://addr:port/metrics`` (a daemon thread)."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=addr, registry=self.registry)

    def write_textfile(self, path: str) -> None:
        """Write the registry for node_exporter's textfile collector (a temp file renamed: atomic)."""
        from prometheus_client import write_to_textfile

        write_to_textfile(path, self.registry)


def exporter_registry(queues: Callable[[], Iterable[tuple[str, Driver]]]) -> Any:
    """A registry holding only the backend collector (no process or platform metrics)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(BackendCollector(queues))  # type: ignore[arg-type]
    return registry
