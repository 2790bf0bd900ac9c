"""What seeing live work costs (issue 13): heartbeats and metrics on a drain, job listing at 1M waiting.

    python bench/micro/ops.py drain --n 20000 --runs 5          # private pinned redis-server
    python bench/micro/ops.py list --driver redis --n 1000000
    python bench/micro/ops.py list --driver postgres --n 1000000

``drain``: one worker (no isolate, in this process) drains n no-op jobs, in interleaved runs of three
set-ups: no registry (``heartbeat=0``), the registry (default 2 s beats; the runner's hooks on every
job), and the registry plus the worker's Prometheus metrics. Reports jobs/s and the worker's CPU
time per job (this process, every thread: the beats included), medians and the cost relative to
no registry; every run checks done == n. On a shared machine the wall-clock rate swings far more
than 3 %; CPU per job is the steadier measure of what the work adds.

``list``: push n waiting jobs, then time ``list_jobs`` pages of 50 — the first, one from the middle
(``after`` = the id at n/2) and the last — as wall time per call (round trip included, so an upper
bound of the server's time) and, on PostgreSQL, the server's own ``EXPLAIN ANALYZE`` execution time.

Speed is measured here, never asserted in tests; compare within one run (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import pin_self, pinned_redis  # noqa: E402
from bench.micro.worker import BenchNoop, make_queue  # noqa: E402
from pubq.drivers.base import JobStatus, PushItem  # noqa: E402
from pubq.worker import Worker  # noqa: E402

PAYLOAD = b'{"job": "bench.Noop", "args": {"n": 1}}'


def drain_once(url: str, n: int, setup: str) -> tuple[float, float]:
    """(jobs/s by wall clock, this process's CPU µs per job — every thread, the beats included)."""
    from pubq.drivers.redis import RedisDriver

    driver = RedisDriver(url, f"pubq-bench:ops:{uuid.uuid4().hex[:8]}")
    q = make_queue(driver)
    if setup == "metrics":
        from pubq.metrics import WorkerMetrics

        WorkerMetrics().attach(q)
    q.push_many([BenchNoop(i) for i in range(n)])
    worker = Worker(q, isolate=False, install_signals=False, heartbeat=0 if setup == "off" else 2.0)
    t, cpu = time.perf_counter(), time.process_time()
    worker.run()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    counts = driver.counts()
    assert counts.done == n and counts.waiting == 0 and counts.reserved == 0, counts
    driver.clear()
    driver.client.delete(*driver.keys)
    driver.close()
    return n / seconds, cpu / n * 1e6


def bench_drain(args: argparse.Namespace) -> dict:
    pin_self()
    setups = ("off", "registry", "metrics")
    rates: dict[str, list[float]] = {s: [] for s in setups}
    cpus: dict[str, list[float]] = {s: [] for s in setups}
    with pinned_redis() as server:
        drain_once(server.url, min(args.n, 2000), "off")  # warm up: scripts loaded, imports done
        for _ in range(args.runs):
            for s in setups:
                rate, cpu = drain_once(server.url, args.n, s)
                rates[s].append(rate)
                cpus[s].append(cpu)
    med = {s: statistics.median(v) for s, v in rates.items()}
    cpu_med = {s: statistics.median(v) for s, v in cpus.items()}
    return {
        "measure": "drain", "jobs": args.n, "runs": args.runs,
        "jobs_per_s": {s: [round(r) for r in v] for s, v in rates.items()},
        "median_jobs_per_s": {s: round(v) for s, v in med.items()},
        "cost_vs_off_pct": {s: round((1 - med[s] / med["off"]) * 100, 2) for s in setups[1:]},
        "worker_cpu_us_per_job": {s: [round(c, 1) for c in v] for s, v in cpus.items()},
        "median_cpu_us_per_job": {s: round(v, 1) for s, v in cpu_med.items()},
        "cpu_cost_vs_off_pct": {s: round((cpu_med[s] / cpu_med["off"] - 1) * 100, 2) for s in setups[1:]},
    }


def open_list_driver(kind: str, url: str | None):
    channel = f"pubq-bench:list:{uuid.uuid4().hex[:8]}"
    if kind == "redis":
        from pubq.drivers.redis import RedisDriver

        return RedisDriver(url or "redis://127.0.0.1:6379/0", channel)
    from pubq.drivers.db import DbDriver

    default = {"postgres": "postgresql://postgres@127.0.0.1:5432/test", "mysql": "mysql://root@127.0.0.1:3306/test",
               "sqlite": "sqlite:////tmp/pubq-bench-list.db"}[kind]
    return DbDriver(url or default, channel, table_prefix="pubq_bench_")


def timed(fn, repeat: int = 5) -> float:
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(best), 2)


def bench_list(args: argparse.Namespace) -> dict:
    driver = open_list_driver(args.driver, args.url)
    out: dict = {"measure": "list", "driver": args.driver, "waiting": args.n}
    try:
        t = time.perf_counter()
        ids: list[int] = []
        for start in range(0, args.n, 5000):
            ids += driver.push_many([PushItem(PAYLOAD, 60) for _ in range(min(5000, args.n - start))])
        out["push_s"] = round(time.perf_counter() - t, 1)
        if args.driver == "postgres":
            driver.db.execute_sql(f"ANALYZE {driver.conn.tables['J']}")
        middle, last = ids[len(ids) // 2], ids[-51]
        out["page_ms"] = {
            "first": timed(lambda: driver.list_jobs(JobStatus.WAITING, 50)),
            "middle": timed(lambda: driver.list_jobs(JobStatus.WAITING, 50, middle)),
            "last": timed(lambda: driver.list_jobs(JobStatus.WAITING, 50, last)),
        }
        assert [j.job_id for j in driver.list_jobs(JobStatus.WAITING, 3, middle).jobs] == [middle + 1, middle + 2,
                                                                                          middle + 3]
        if args.driver == "postgres":
            out["server_ms"] = pg_server_ms(driver, middle)
    finally:
        driver.clear()
        if args.driver == "redis":
            driver.client.delete(*driver.keys)
        else:
            from tests.drivers.backends import drop_session_tables

            driver.close()
            if args.driver != "sqlite":
                drop_session_tables(args.url or {"postgres": "postgresql://postgres@127.0.0.1:5432/test",
                                                 "mysql": "mysql://root@127.0.0.1:3306/test"}[args.driver],
                                    "pubq_bench_")
    return out


def pg_server_ms(driver, after: int) -> dict:
    """EXPLAIN ANALYZE of the page query as list_jobs sends it (keyset after the middle job)."""
    from pubq.drivers.db_sql import JOB_COLUMNS

    cur = driver.conn.cursor()
    sql = driver.conn.render(f"SELECT {JOB_COLUMNS}, {{NOW}} FROM {{J}} WHERE channel = ? AND state = ?"
                    " AND (priority, id) > (?, ?) ORDER BY priority, id LIMIT ?")
    cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, (driver.channel, "waiting", 1024, after, 51))
    plan = cur.fetchone()[0][0]
    return {"execution": round(plan["Execution Time"], 3), "planning": round(plan["Planning Time"], 3),
            "top_node": plan["Plan"]["Plans"][0]["Node Type"] if plan["Plan"].get("Plans") else plan["Plan"]["Node Type"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("drain")
    d.add_argument("--n", type=int, default=20000)
    d.add_argument("--runs", type=int, default=5)
    ls = sub.add_parser("list")
    ls.add_argument("--driver", choices=["redis", "postgres", "mysql", "sqlite"], default="redis")
    ls.add_argument("--url", default=None)
    ls.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    result = bench_drain(args) if args.what == "drain" else bench_list(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
