"""Quick throughput check of the Redis driver: push, push_many, and a reserve+ack loop.

    python bench/micro/redis_driver.py --n 20000 --url redis://127.0.0.1:6379/0

Uses a fresh channel and deletes its keys afterwards. Figures vary ±30% between runs (see
shared/docs/benchmarks.md): compare within one run, and never assert timings in tests.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pubq.drivers.base import PushItem  # noqa: E402
from pubq.drivers.redis import RedisDriver  # noqa: E402

PAYLOAD = b'{"job": "bench.Noop", "args": {"n": 1}}'


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} jobs/s  ({n} in {seconds:.3f} s)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="jobs per phase (default 20000)")
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0", help="Redis URL")
    args = ap.parse_args()
    n = args.n

    driver = RedisDriver(args.url, f"pubq-bench:{uuid.uuid4().hex[:12]}")
    try:
        driver.ping()
        t = time.perf_counter()
        for _ in range(n):
            driver.push(PAYLOAD, ttr=60)
        print("push (single)        ", rate(n, time.perf_counter() - t))
        driver.clear()

        items = [PushItem(PAYLOAD, 60) for _ in range(n)]
        t = time.perf_counter()
        driver.push_many(items)
        print("push_many            ", rate(n, time.perf_counter() - t))

        # Drain what push_many stored: one round trip per job (ack the previous + reserve the next).
        done = 0
        t = time.perf_counter()
        r = driver.reserve()
        while r is not None:
            ok, r = driver.ack_and_reserve(r)
            done += ok
        elapsed = time.perf_counter() - t
        print("reserve+ack (fused)  ", rate(done, elapsed))
        counts = driver.counts()
        if done != n or counts.done != n or counts.waiting or counts.reserved:
            print(f"MISMATCH: acked {done}, counts {counts}", file=sys.stderr)
            return 1
    finally:
        driver.clear()
        driver.client.delete(*driver.keys)
        driver.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
