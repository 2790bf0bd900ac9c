"""I/O-bound jobs with many in flight per worker (issue 17): pubq ``--concurrency`` 1, 8, 32, 128.

    python bench/io_bound.py [--n-per-slot 60] [--json bench/results/io-latest.json]

Each job waits 20 ms: a ``time.sleep`` body, or a GET on a local HTTP server (its own process)
that answers after 20 ms. One worker process (pinned to CPU 1 like every client; the private
redis-server on CPU 0) drains a pre-pushed queue with ``--no-isolate`` threads; the body stamps its
start in Redis and INCRs a counter that must reach exactly n (verified). Reported: jobs/s against
the ideal (concurrency / 20 ms), p99 pickup at half the ideal rate (push → body start, a paced
push while the worker listens), peak RSS, worker CPU per job. Then ``--isolate`` at 1 and 2
children, unpinned (a child per job; two can only overlap on two CPUs).

Peers (Dramatiq threads, Huey thread workers, arq, saq, RQ) are not driven by this script yet:
see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.common import CLIENT_CPU, SERVER_CPU, percentile, pinned_redis, taskset_prefix  # noqa: E402
from pubq import Job  # noqa: E402
from pubq.config import QueueConfig, RetryPolicy  # noqa: E402
from pubq.job import JobRegistry  # noqa: E402
from pubq.queue import Queue  # noqa: E402
from tests.helpers import free_port, wait_until  # noqa: E402

WAIT = 0.020
COUNTER = "bench:io:count"
STARTS = "bench:io:starts"
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client


@dataclass
class IoJob(Job):
    name = "bench.Io"
    mode: str = "sleep"
    ts: float = 0.0

    def execute(self, ctx: Any) -> None:
        started = time.time()
        if self.mode == "http":
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", int(os.environ["BENCH_HTTP_PORT"]), timeout=10)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
        else:
            time.sleep(WAIT)
        pipe = _redis().pipeline(transaction=False)
        pipe.incr(COUNTER)
        if self.ts:
            pipe.rpush(STARTS, f"{started - self.ts:.6f}")
        pipe.execute()


def make_queue(url: str, channel: str) -> Queue:
    from pubq.drivers.redis import RedisDriver

    qc = QueueConfig(name="io", driver="redis", channel=channel, url=url, ttr=60, attempts=1,
                     retry=RetryPolicy(), grace=5)
    return Queue(qc, RedisDriver(url, channel), JobRegistry([IoJob]))


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        time.sleep(WAIT)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_http(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Slow)
    server.daemon_threads = True
    server.request_queue_size = 1024
    server.serve_forever()


def worker_main(args: argparse.Namespace) -> None:
    from pubq.worker import Worker

    queue = make_queue(args.url, args.channel)
    w = Worker(queue, isolate=args.isolate, concurrency=args.concurrency, heartbeat=0)
    w.listen(1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(args.out).write_text(json.dumps({
        "cpu": usage.ru_utime + usage.ru_stime + kids.ru_utime + kids.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024, "jobs": w.jobs,
    }))


def run_one(url: str, mode: str, concurrency: int, n: int, *, isolate: bool, pin: bool,
            tmp: Path) -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    channel = f"io-{mode}-{concurrency}-{int(isolate)}-{time.monotonic_ns()}"
    queue = make_queue(url, channel)
    r.delete(COUNTER, STARTS)
    out = tmp / f"{channel}.json"
    cmd = [*(taskset_prefix(CLIENT_CPU) if pin else []), sys.executable, __file__, "worker", "--url", url,
           "--channel", channel, "--concurrency", str(concurrency), "--out", str(out),
           *(["--isolate"] if isolate else [])]
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    try:
        # pickup: paced pushes at half the ideal rate while the worker listens
        rate = 0.5 * concurrency / WAIT
        paced = max(20, min(400, int(rate * 2)))
        time.sleep(1.0)  # the worker starts (imports, first blocking reserve)
        start = time.monotonic()
        for i in range(paced):
            due = start + i / rate
            while (left := due - time.monotonic()) > 0:
                time.sleep(left)
            queue.push(IoJob(mode=mode, ts=time.time()))
        wait_until(lambda: int(r.get(COUNTER) or 0) >= paced, timeout=120, message="paced jobs ran")
        pickups = [float(x) * 1000 for x in r.lrange(STARTS, 0, -1)]
        # drain: n pre-pushed jobs
        r.delete(COUNTER)
        for s in range(0, n, 1000):
            queue.push_many([IoJob(mode=mode) for _ in range(min(1000, n - s))])
        t0 = time.monotonic()
        wait_until(lambda: int(r.get(COUNTER) or 0) >= n, timeout=600, interval=0.005, message="drain")
        seconds = time.monotonic() - t0
        count = int(r.get(COUNTER) or 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    stats = json.loads(out.read_text())
    queue.driver.clear()
    queue.close()
    return {
        "mode": mode, "concurrency": concurrency, "isolate": isolate, "n": n, "verified": count == n,
        "jobs_per_s": n / seconds, "ideal_per_s": concurrency / WAIT, "pickup_p50_ms": percentile(pickups, 50),
        "pickup_p99_ms": percentile(pickups, 99), "rss_mib": stats["rss_mib"],
        "cpu_us_per_job": stats["cpu"] / (n + paced) * 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    wp = sub.add_parser("worker")
    wp.add_argument("--url")
    wp.add_argument("--channel")
    wp.add_argument("--concurrency", type=int)
    wp.add_argument("--isolate", action="store_true")
    wp.add_argument("--out")
    p.add_argument("--n-per-slot", type=int, default=60, help="jobs drained per unit of concurrency")
    p.add_argument("--levels", default="1,8,32,128")
    p.add_argument("--modes", default="sleep,http")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "io-latest.json"))
    args = p.parse_args()
    if args.cmd == "worker":
        worker_main(args)
        return
    import tempfile

    http_port = free_port()
    server = subprocess.Popen([*taskset_prefix(SERVER_CPU), sys.executable, "-c",
                               f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.io_bound import serve_http; "
                               f"serve_http({http_port})"])
    rows: list[dict[str, Any]] = []
    try:
        with pinned_redis() as srv, tempfile.TemporaryDirectory() as tmp:
            os.environ["BENCH_REDIS_URL"] = srv.url
            os.environ["BENCH_HTTP_PORT"] = str(http_port)
            for mode in args.modes.split(","):
                for level in [int(x) for x in args.levels.split(",")]:
                    n = max(200, args.n_per_slot * level)
                    rows.append(run_one(srv.url, mode, level, n, isolate=False, pin=True, tmp=Path(tmp)))
                    print(json.dumps(rows[-1]), flush=True)
            for level in (1, 2):
                rows.append(run_one(srv.url, "sleep", level, 300, isolate=True, pin=False, tmp=Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(10)
    Path(args.json).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg": os.getloadavg(), "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
