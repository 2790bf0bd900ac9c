"""End-to-end worker benchmark (issue 3 targets): pubq's Queue + Worker on a real backend.

    python bench/micro/worker.py --driver redis --n 20000
    python bench/micro/worker.py --driver sqlite --n 5000

Measures push (single and push_many), one worker process draining no-op jobs without isolate and
with isolate (fork per job), listen pickup latency at a fixed rate, and the worker's RSS. Every run
verifies its counts (done == pushed, nothing left). Numbers go to bench/README.md by hand, with
the command that produced them; tests never assert on speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pubq import Job  # noqa: E402
from pubq.config import QueueConfig, RetryPolicy  # noqa: E402
from pubq.job import JobRegistry  # noqa: E402
from pubq.queue import Queue  # noqa: E402
from pubq.worker import Worker, rss_mib  # noqa: E402


@dataclass
class BenchNoop(Job):
    name = "bench.Noop"
    n: int = 0

    def execute(self, ctx):
        return None


def open_driver(kind: str, url: str | None, channel: str | None = None):
    channel = channel or f"pubq-bench:{uuid.uuid4().hex[:8]}"
    if kind == "redis":
        from pubq.drivers.redis import RedisDriver

        return RedisDriver(url or "redis://127.0.0.1:6379/0", channel)
    from pubq.drivers.db import DbDriver

    if kind == "sqlite":
        url = url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    return DbDriver(url, channel)


def make_queue(driver) -> Queue:
    qc = QueueConfig(name="bench", driver="bench", channel=driver.channel, url="", ttr=60, attempts=1,
                     retry=RetryPolicy(), grace=5)
    return Queue(qc, driver, JobRegistry([BenchNoop]))


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_push(q: Queue, n: int) -> dict:
    t = time.perf_counter()
    for i in range(n):
        q.push(BenchNoop(i))
    single = rate(n, time.perf_counter() - t)
    q.driver.clear()
    t = time.perf_counter()
    for start in range(0, n * 5, 1000):
        q.push_many([BenchNoop(i) for i in range(start, min(start + 1000, n * 5))])
    bulk = rate(n * 5, time.perf_counter() - t)
    q.driver.clear()
    return {"push_single_per_s": round(single), "push_many_per_s": round(bulk)}


def bench_drain(q: Queue, n: int, isolate: bool) -> dict:
    q.push_many([BenchNoop(i) for i in range(n)])
    rss_before = rss_mib()
    t = time.perf_counter()
    Worker(q, isolate=isolate, install_signals=False).run()
    seconds = time.perf_counter() - t
    counts = q.driver.counts()
    assert counts.waiting == 0 and counts.reserved == 0, counts
    done = counts.done
    q.driver.clear()
    return {"jobs": n, "done_total": done, "jobs_per_s": round(rate(n, seconds)),
            "rss_before_mib": round(rss_before, 1), "rss_after_mib": round(rss_mib(), 1)}


def bench_pickup(q: Queue, per_second: float, count: int, reopen) -> dict:
    """An idle worker in its own process; push at a fixed rate; latency = push → job start.

    The worker must be a separate process: as a thread it would wait for the pusher's GIL.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker process, with its own connection
        os.close(read_fd)
        wq = make_queue(reopen())
        starts: list[tuple[int, float]] = []
        wq.bus.on("beforeExec", lambda e: starts.append((e.id, time.time())))
        Worker(wq, isolate=False, install_signals=False, max_jobs=count).listen(5)
        os.write(write_fd, json.dumps(starts).encode())
        os._exit(0)
    os.close(write_fd)
    time.sleep(0.5)
    pushed: dict[int, float] = {}
    gap = 1.0 / per_second
    for i in range(count):
        t0 = time.perf_counter()
        stamp = time.time()
        pushed[q.push(BenchNoop(i))] = stamp
        time.sleep(max(0.0, gap - (time.perf_counter() - t0)))
    chunks = []
    while True:
        data = os.read(read_fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    os.close(read_fd)
    starts_by_id = dict(json.loads(b"".join(chunks) or b"[]"))
    lat = sorted((starts_by_id[j] - pushed[j]) * 1000 for j in pushed if j in starts_by_id)
    q.driver.clear()
    if not lat:
        return {"rate": per_second, "error": "no job picked up"}
    return {"rate": per_second, "n": len(lat), "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2), "max_ms": round(lat[-1], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", choices=["redis", "sqlite", "postgres"], default="redis")
    ap.add_argument("--url", default=None)
    ap.add_argument("--n", type=int, default=20000, help="jobs for the no-isolate drain")
    ap.add_argument("--n-isolate", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    url = args.url or ("postgresql://postgres@127.0.0.1:5432/test" if args.driver == "postgres" else None)
    if args.driver == "sqlite" and url is None:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    q = make_queue(open_driver(args.driver, url))

    def reopen():
        return open_driver(args.driver, url, q.driver.channel)

    results = {"driver": args.driver, "python": sys.version.split()[0], "cpus": os.cpu_count()}
    results.update(bench_push(q, min(args.n, 5000)))
    results["drain_no_isolate"] = bench_drain(q, args.n, isolate=False)
    results["drain_isolate"] = bench_drain(q, args.n_isolate, isolate=True)
    results["pickup_25_per_s"] = bench_pickup(q, 25, 100, reopen)
    results["pickup_200_per_s"] = bench_pickup(q, 200, 400, reopen)
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    q.driver.clear()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
