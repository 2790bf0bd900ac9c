"""Client-side cost of one plain push on Redis: Queue.push, RedisDriver.push, a bare LPUSH, PING.

    bench/.venv-peers/bin/python bench/micro/push_single.py [--n 20000]

A private redis-server pinned to CPU 0, this process on CPU 1 (bench/common.py), as compare.py
runs them. Microseconds per call, mean of ``n`` calls after 1,000 warm-up calls: compare the rows
of one run, never assert them in tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis  # noqa: E402

from bench.common import pin_self, pinned_redis  # noqa: E402
from bench.peers.pubq_peer import BenchIncr  # noqa: E402
from pubq.config import QueueConfig, RetryPolicy  # noqa: E402
from pubq.drivers.redis import RedisDriver  # noqa: E402
from pubq.job import JobRegistry  # noqa: E402
from pubq.queue import Queue  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    n = ap.parse_args().n
    pin_self()
    with pinned_redis() as server:
        client = redis.Redis.from_url(server.url)
        driver = RedisDriver(client, "push-single")
        config = QueueConfig(name="bench", driver="bench", channel="push-single", url="", ttr=60, attempts=1,
                             retry=RetryPolicy(), grace=5)
        queue = Queue(config, driver, JobRegistry([BenchIncr]))

        def per_call(name: str, call: Callable[[], object]) -> None:
            for _ in range(1000):
                call()
            start = time.perf_counter()
            for _ in range(n):
                call()
            print(f"{name:12s} {(time.perf_counter() - start) / n * 1e6:6.1f} us")

        per_call("Queue.push", lambda: queue.push(BenchIncr(1.0)))
        per_call("driver.push", lambda: driver.push(b'{"x":1}' * 8, ttr=60))
        per_call("LPUSH", lambda: client.lpush("push-single-raw", b"x" * 60))
        per_call("PING", client.ping)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
