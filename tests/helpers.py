"""Shared test helpers: building queues on real drivers, waiting on conditions."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pubq.config import QueueConfig, RetryPolicy
from pubq.job import JobRegistry
from pubq.queue import Queue

ROOT = Path(__file__).resolve().parent.parent


def registry() -> JobRegistry:
    return JobRegistry.from_modules(["tests.sample_jobs"])


def make_queue(driver: Any, *, name: str = "q", attempts: int = 1, ttr: int = 30, delay: float = 0.0,
               grace: float = 0.0, driver_kind: str = "memory") -> Queue:
    qc = QueueConfig(
        name=name, driver=driver_kind, channel=getattr(driver, "channel", name), url="test://",
        ttr=ttr, attempts=attempts, retry=RetryPolicy(backoff="fixed", delay=delay, max_delay=delay, jitter=False),
        grace=grace,
    )
    return Queue(qc, driver, registry())


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until truthy; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PUBQ_CONFIG", None)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


PUBQ = [sys.executable, "-m", "pubq"]
