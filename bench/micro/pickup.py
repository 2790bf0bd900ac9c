"""Where a pickup's time goes: push → the woken worker's reply → the job's first line.

    bench/.venv-peers/bin/python bench/micro/pickup.py [--rate 25] [--n 250] [--raw]

A private redis-server pinned to CPU 0; this process (the producer) and one listening worker
(``Worker(isolate=False)``, as compare.py's pubq row) on CPU 1. The producer pushes at ``rate``;
the worker notes when its wake-up reply arrived (the driver's ``_wait_then`` returned) and the job
notes when it started. ``--raw``: a bare ``BLMOVE`` worker and ``LPUSH`` producer, the floor.
Times are ``time.time()`` on one machine; compare rows of one run, never assert them in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis  # noqa: E402

from bench.common import CLIENT_CPU, percentile, pin_self, pinned_redis, taskset_prefix  # noqa: E402
from pubq import Job  # noqa: E402
from pubq.config import QueueConfig, RetryPolicy  # noqa: E402
from pubq.drivers.redis import RedisDriver  # noqa: E402
from pubq.job import JobRegistry  # noqa: E402
from pubq.queue import Queue  # noqa: E402

TIMES = "pickup:times"
CHANNEL = "pickup"


def _queue(url: str, job: type[Job]) -> Queue:
    config = QueueConfig(name="pickup", driver="bench", channel=CHANNEL, url="", ttr=60, attempts=1,
                         retry=RetryPolicy(), grace=5)
    return Queue(config, RedisDriver(url, CHANNEL), JobRegistry([job]))


def worker(url: str, raw: bool) -> None:
    """The worker process: each job pushes (pushed, reply, start) onto TIMES."""
    r = redis.Redis.from_url(url)
    if raw:
        while True:
            entry = r.blmove("raw", "raw:busy", 5, "RIGHT", "LEFT")
            if entry is not None:
                reply = time.time()
                r.rpush(TIMES, json.dumps([float(entry), reply, time.time()]))
                r.lrem("raw:busy", 1, entry)
    from pubq.worker import Worker

    replied = {"at": 0.0}
    wait_then = RedisDriver._wait_then

    def noting(self: RedisDriver, *args: Any) -> Any:
        out = wait_then(self, *args)
        replied["at"] = time.time()
        return out

    RedisDriver._wait_then = noting  # type: ignore[method-assign]

    @dataclass
    class Probe(Job):
        name = "bench.Probe"
        ts: float = 0.0

        def execute(self, ctx: Any) -> None:
            start = time.time()
            r.rpush(TIMES, json.dumps([self.ts, replied["at"], start]))

    Worker(_queue(url, Probe), isolate=False, install_signals=False).listen(5)


@dataclass
class _Probe(Job):
    name = "bench.Probe"
    ts: float = 0.0

    def execute(self, ctx: Any) -> None:  # run by the worker's own class, never here
        raise NotImplementedError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=25.0)
    ap.add_argument("--n", type=int, default=250)
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.raw)
        return 0
    with pinned_redis() as server:
        r = redis.Redis.from_url(server.url)
        pin_self(CLIENT_CPU)
        cmd = [*taskset_prefix(CLIENT_CPU), sys.executable, __file__, "--worker", server.url,
               *(["--raw"] if args.raw else [])]
        proc = subprocess.Popen(cmd)
        try:
            if args.raw:
                def push() -> None:
                    r.lpush("raw", repr(time.time()))
            else:
                queue = _queue(server.url, _Probe)

                def push() -> None:
                    queue.push(_Probe(time.time()))
            deadline = time.monotonic() + 30
            push()  # warm-up: the worker is up and idle before timing
            while r.llen(TIMES) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            r.delete(TIMES)
            t0 = time.perf_counter()
            for i in range(args.n):
                pause = t0 + i / args.rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                push()
            while r.llen(TIMES) < args.n and time.monotonic() < deadline + args.n / args.rate:
                time.sleep(0.01)
            rows = [json.loads(x) for x in r.lrange(TIMES, 0, -1)]
        finally:
            proc.kill()
            proc.wait()
    if len(rows) != args.n:
        print(f"only {len(rows)} of {args.n} pickups recorded", file=sys.stderr)
        return 1
    parts = {"push → reply": [(b - a) * 1e6 for a, b, _ in rows], "reply → start": [(c - b) * 1e6 for _, b, c in rows],
             "push → start": [(c - a) * 1e6 for a, _, c in rows]}
    print(f"{'raw' if args.raw else 'pubq'} at {args.rate:g}/s, {args.n} pickups (µs):")
    for label, values in parts.items():
        print(f"  {label:14s} p50 {statistics.median(values):7.0f}   p90 {percentile(values, 90):7.0f}   "
              f"p99 {percentile(values, 99):7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
