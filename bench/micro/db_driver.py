"""Benchmark of the db driver: push, push_many, a one-process drain loop, and reserve time vs table size.

    python bench/micro/db_driver.py --url sqlite:////tmp/bench.db --n 5000
    python bench/micro/db_driver.py --url postgresql://postgres@127.0.0.1:5432/test --n 5000 --big

Tables get a prefix of their own (``pubq_bench<pid>_``) and are dropped at the end (``--keep`` keeps
them); a SQLite URL's file is the user's and only those tables are dropped from it. Each figure is
jobs/s of one process, start-up excluded; the drain verifies that every job was acked exactly once.
Noise between runs is ±30 % (see docs/benchmarks.md): compare figures from one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pubq.drivers.base import PushItem  # noqa: E402
from pubq.drivers.db import DbDriver  # noqa: E402

PAYLOAD = b'{"job":"pubq.jobs.NoopJob","args":{}}'


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} jobs/s  ({n} in {seconds:.2f} s)"


def bench_push(d: DbDriver, n: int) -> None:
    t = time.perf_counter()
    for _ in range(n):
        d.push(PAYLOAD, ttr=60)
    print(f"push (one per call)      {rate(n, time.perf_counter() - t)}")


def bench_push_many(d: DbDriver, n: int, batch: int = 500) -> None:
    items = [PushItem(PAYLOAD, ttr=60) for _ in range(batch)]
    t = time.perf_counter()
    done = 0
    while done < n:
        d.push_many(items[: min(batch, n - done)])
        done += min(batch, n - done)
    print(f"push_many (batch {batch})    {rate(n, time.perf_counter() - t)}")


def bench_drain(d: DbDriver, expected: int) -> None:
    t = time.perf_counter()
    acked = 0
    r = d.reserve(0)
    while r is not None:
        ok, r = d.ack_and_reserve(r)
        acked += ok
    seconds = time.perf_counter() - t
    counts = d.counts()
    assert acked == expected and counts.done == expected and counts.waiting == 0, (acked, counts)
    print(f"drain (ack_and_reserve)  {rate(acked, seconds)}")


def reserve_latency(d: DbDriver, rounds: int = 300) -> tuple[float, float]:
    """Median and p95 of one reserve (ms); each job is released so the table keeps its size."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        r = d.reserve(0)
        times.append((time.perf_counter() - t) * 1000)
        assert r is not None
        d.release(r)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def fill(d: DbDriver, waiting: int, delayed: int) -> None:
    # Delayed rows get the best priority, so a reserve that scanned them (yii2-queue #280) would show.
    for start in range(0, delayed, 5000):
        d.push_many([PushItem(PAYLOAD, ttr=60, delay=86_400, priority=0) for _ in range(min(5000, delayed - start))])
    for start in range(0, waiting, 5000):
        d.push_many([PushItem(PAYLOAD, ttr=60) for _ in range(min(5000, waiting - start))])


def bench_big(d: DbDriver, sizes: list[int]) -> None:
    have_w = have_d = 0
    for size in sizes:
        want_d = size // 5
        fill(d, size - have_w, want_d - have_d)
        have_w, have_d = size, want_d
        if d.kind == "postgres":
            d.db.execute_sql(f'ANALYZE "{d.table_prefix}jobs"')
        med, p95 = reserve_latency(d)
        print(f"reserve with {size:>9,} waiting + {want_d:>7,} delayed: median {med:.3f} ms, p95 {p95:.3f} ms")


def drop_tables(d: DbDriver) -> None:
    quote = "`" if d.kind == "mysql" else '"'
    for name in ("jobs", "counters", "follow_ups", "schema"):
        d.db.execute_sql(f"DROP TABLE IF EXISTS {quote}{d.table_prefix}{name}{quote}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="database URL (default: a SQLite file in a temporary directory)")
    ap.add_argument("--n", type=int, default=5000, help="jobs per measurement (default 5000)")
    ap.add_argument("--big", action="store_true", help="also time reserve at 1k and 100k waiting rows")
    ap.add_argument("--big-sizes", default="1000,100000", help="waiting-row counts for --big (comma-separated)")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark tables")
    args = ap.parse_args()
    tmp = None
    if not args.url:
        tmp = tempfile.TemporaryDirectory()
        args.url = f"sqlite:///{tmp.name}/bench.db"
    prefix = f"pubq_bench{os.getpid()}_"
    d = DbDriver(args.url, "bench:noop", table_prefix=prefix)
    print(f"{d.url}  (tables {prefix}*)")
    try:
        d.ping()
        bench_push(d, args.n)
        bench_push_many(d, args.n)
        bench_drain(d, 2 * args.n)
        if args.big:
            d.clear()
            bench_big(d, [int(s) for s in args.big_sizes.split(",")])
    finally:
        if not args.keep:
            drop_tables(d)
        d.close()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
