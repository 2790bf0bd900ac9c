"""Shared pieces of the benchmarks: CPU pinning, a pinned private redis-server, percentiles.

The method (``../shared/docs/benchmarks.md``): the server runs alone on CPU 0, clients on CPU 1, so
every round trip pays the same cross-CPU price and runs repeat within noise. Compare systems inside
one run, as ratios; never against a figure from another day. What the tests use as well (the
private redis-server itself, throwaway PostgreSQL databases) lives in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from tests.helpers import PrivateRedis

SERVER_CPU = 0
CLIENT_CPU = 1


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pin_self(cpu: int = CLIENT_CPU) -> None:
    """Pin this process (and the children it forks later) to one CPU, when the machine has it."""
    if cpu in os.sched_getaffinity(0) and cpu_count() > 1:
        os.sched_setaffinity(0, {cpu})


def taskset_prefix(cpu: int) -> list[str]:
    if shutil.which("taskset") and cpu in os.sched_getaffinity(0) and cpu_count() > 1:
        return ["taskset", "-c", str(cpu)]
    return []


def pinned_redis() -> PrivateRedis:
    """A private, memory-only redis-server pinned to ``SERVER_CPU`` (start it, or use it with ``with``)."""
    return PrivateRedis(prefix=taskset_prefix(SERVER_CPU))


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
