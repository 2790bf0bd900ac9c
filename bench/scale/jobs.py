"""Jobs for ``bench/scale/run.py``, imported by the real CLI workers it starts (``jobs: [bench.scale.jobs]``).

``scale.Count`` proves every run in one pipelined round trip to the benchmark's private Redis: INCR a
counter (total runs), SADD the job id (distinct runs; a duplicate shows as SADD → 0) and SET NX the
time of the first job start. The job that takes the counter to ``PUBQ_SCALE_TOTAL`` stamps the end
time, so the drain rate excludes interpreter start-up and exit. ``scale.Noop`` does nothing (RSS).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from pubq import Job

_client: Any = None


def _counter() -> Any:
    """One connection per worker process, opened on first use (workers run with --no-isolate)."""
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(os.environ["PUBQ_SCALE_COUNTER"])
    return _client


@dataclass
class CountJob(Job):
    name = "scale.Count"

    def execute(self, ctx: Any) -> None:
        key = os.environ["PUBQ_SCALE_KEY"]
        started = time.time()
        client = _counter()
        pipe = client.pipeline(transaction=False)
        pipe.set(f"{key}:first", repr(started), nx=True)
        pipe.incr(f"{key}:runs")
        pipe.sadd(f"{key}:ids", ctx.job_id)
        _, runs, added = pipe.execute()
        if not added:
            client.incr(f"{key}:dups")
        if runs == int(os.environ["PUBQ_SCALE_TOTAL"]):
            client.set(f"{key}:last", repr(time.time()))


@dataclass
class NoopJob(Job):
    name = "scale.Noop"

    def execute(self, ctx: Any) -> None:
        return None


def start_gate(event: Any) -> None:
    """workerStart handler: report ready, then wait for the benchmark's go, so k workers start together.

    Without it the first worker to finish importing drains alone for a while and the scaling figure
    measures start-up skew instead of throughput.
    """
    key = os.environ["PUBQ_SCALE_KEY"]
    client = _counter()
    client.incr(f"{key}:ready")
    deadline = time.monotonic() + 120
    while not client.exists(f"{key}:go") and time.monotonic() < deadline:
        time.sleep(0.002)
