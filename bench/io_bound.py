"""I/O-bound jobs with many in flight per worker (issue 17): pubq ``--concurrency`` 1, 8, 32, 128.

    python bench/io_bound.py [--n-per-slot 60] [--json bench/results/io-latest.json]

Each job waits 20 ms: a ``time.sleep`` body, or a GET on a local HTTP server (its own process)
that answers after 20 ms. One worker process (pinned to CPU 1 like every client; the private
redis-server on CPU 0) drains a pre-pushed queue with ``--no-isolate`` threads; the body stamps its
start in Redis and INCRs a counter that must reach exactly n (verified). Reported: jobs/s against
the ideal (concurrency / 20 ms), p99 pickup at half the ideal rate (push → body start, a paced
push while the worker listens), peak RSS, worker CPU per job. Then ``--isolate`` at 1 and 2
children, unpinned (a child per job; two can only overlap on two CPUs).

``--systems pubq,dramatiq,huey,arq,saq,rq`` drives the peers the same way (``bench/io_peers.py``;
run it with ``bench/.venv-peers/bin/python``, the venv ``bench/compare.py`` builds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if os.environ.get("BENCH_PUBQ_ROOT"):  # measure another checkout's pubq (e.g. main) with this harness
    sys.path.insert(0, os.environ["BENCH_PUBQ_ROOT"])

import redis  # noqa: E402

from bench.common import CLIENT_CPU, SERVER_CPU, percentile, pinned_redis, taskset_prefix  # noqa: E402
from bench.io_peers import COUNTER, LABELS, STAMPS, STARTS, SYSTEMS, WAIT, Producer, pubq_queue  # noqa: E402
from tests.helpers import free_port, wait_until  # noqa: E402


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    #: The listen backlog. A class attribute: the constructor already listens (set on the instance
    #: afterwards it was ignored and the backlog stayed 5, so a burst of connects lost SYNs and those
    #: jobs waited for TCP's 1, 3, 7 s retransmits: what penalised whichever system starts jobs in bursts).
    request_queue_size = 1024


def serve_http(port: int) -> None:
    _Server(("127.0.0.1", port), _Slow).serve_forever()


def worker_main(args: argparse.Namespace) -> None:
    if args.system != "pubq":
        from bench.io_peers import work

        work(args.system, args.url, args.channel, args.concurrency)
        return
    from pubq.worker import Worker

    w = Worker(pubq_queue(args.url, args.channel), isolate=args.isolate, concurrency=args.concurrency, heartbeat=0)
    w.listen(1)


def _ran(r: redis.Redis, producer: Producer, n: int) -> bool:
    """The counter reached n; a failed pubq job (it never counts) fails the run at once, with its
    error, instead of a wait that can only time out."""
    if int(r.get(COUNTER) or 0) >= n:
        return True
    if (failed := producer.failed()) is not None:
        raise RuntimeError(f"{failed}: the run cannot verify")
    return False


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM the worker (SIGKILL after 10 s: some peers wait for their threads); its peak RSS in KiB.

    The peak is the worker's VmHWM, read before the signal: the rusage of a child counts the RSS of
    the harness's fork before its exec, so it would report the harness."""
    hwm = 0
    try:
        with open(f"/proc/{proc.pid}/status", encoding="ascii") as fh:
            hwm = next((int(line.split()[1]) for line in fh if line.startswith("VmHWM:")), 0)
    except OSError:
        pass
    proc.terminate()
    end = time.monotonic() + 10
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return hwm or usage.ru_maxrss
        if time.monotonic() > end:
            proc.kill()
            end = float("inf")
        time.sleep(0.05)


def run_one(system: str, url: str, mode: str, concurrency: int, n: int, *, isolate: bool, pin: bool) -> dict[str, Any]:
    """Drain n pre-pushed jobs (rate and CPU per job from the body's stamps), then push at half
    the ideal rate for ~2 s (pickup), then stop the worker (peak RSS from its rusage)."""
    r = redis.Redis.from_url(url)
    channel = f"io-{system}-{mode}-{concurrency}-{int(isolate)}-{time.monotonic_ns()}"
    producer = Producer(system, url, channel)
    r.delete(COUNTER, STARTS, STAMPS)
    producer.push_many(mode, n)
    cmd = [*(taskset_prefix(CLIENT_CPU) if pin else []), sys.executable, __file__, "worker", "--system", system,
           "--url", url, "--channel", channel, "--concurrency", str(concurrency), *(["--isolate"] if isolate else [])]
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    rss_kib = 0
    try:
        wait_until(lambda: _ran(r, producer, n), timeout=900, interval=0.01, message=f"{system} drained {n} jobs")
        count = int(r.get(COUNTER) or 0)
        wait_until(lambda: r.hlen(STAMPS) >= 2, timeout=10, message="the first and last job's stamps")
        first, last = (json.loads(r.hget(STAMPS, str(k))) for k in (1, n))
        r.delete(COUNTER)
        rate = 0.5 * concurrency / WAIT
        paced = max(20, min(400, int(rate * 2)))
        start = time.monotonic()
        for i in range(paced):
            due = start + i / rate
            while (left := due - time.monotonic()) > 0:
                time.sleep(left)
            producer.push(mode, time.time(), 0)
        wait_until(lambda: _ran(r, producer, paced), timeout=120, message=f"{system}: the paced jobs ran")
        pickups = [float(x) * 1000 for x in r.lrange(STARTS, 0, -1)]
    finally:
        rss_kib = _stop(proc)
        producer.close()
    return {
        "system": system, "label": LABELS[system], "mode": mode, "concurrency": concurrency, "isolate": isolate,
        "n": n, "verified": count == n, "jobs_per_s": (n - 1) / max(last["t"] - first["t"], 1e-9),
        "ideal_per_s": concurrency / WAIT, "pickup_p50_ms": percentile(pickups, 50),
        "pickup_p99_ms": percentile(pickups, 99), "rss_mib": rss_kib / 1024,
        "cpu_us_per_job": (last["cpu"] - first["cpu"]) / (n - 1) * 1e6, "load_avg": os.getloadavg()[0],
        "pubq_root": os.environ.get("BENCH_PUBQ_ROOT", str(ROOT)),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    wp = sub.add_parser("worker")
    wp.add_argument("--system", default="pubq")
    wp.add_argument("--url")
    wp.add_argument("--channel")
    wp.add_argument("--concurrency", type=int)
    wp.add_argument("--isolate", action="store_true")
    p.add_argument("--n-per-slot", type=int, default=60, help="jobs drained per unit of concurrency")
    p.add_argument("--levels", default="1,8,32,128")
    p.add_argument("--modes", default="sleep,http")
    p.add_argument("--systems", default="pubq", help=f"comma list of {','.join(SYSTEMS)} (peers: in "
                   "bench/.venv-peers, which bench/compare.py builds); RQ runs at concurrency 1 only")
    p.add_argument("--rounds", type=int, default=1, help="repeat every row, systems alternated (report medians)")
    p.add_argument("--no-isolate-rows", action="store_true", help="skip pubq --isolate at 1 and 2 children")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "io-latest.json"))
    args = p.parse_args()
    if args.cmd == "worker":
        worker_main(args)
        return
    http_port = free_port()
    server = subprocess.Popen([*taskset_prefix(SERVER_CPU), sys.executable, "-c",
                               f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.io_bound import serve_http; "
                               f"serve_http({http_port})"])
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    rows: list[dict[str, Any]] = []
    errors: list[str] = []

    def one(system: str, mode: str, level: int, n: int, *, isolate: bool = False, pin: bool = True) -> None:
        try:
            rows.append(run_one(system, srv.url, mode, level, n, isolate=isolate, pin=pin))
            print(json.dumps(rows[-1]), flush=True)
        except Exception as exc:  # noqa: BLE001 - a failing system is reported, never dropped
            errors.append(f"{system} {mode} c={level}: {exc}")
            print("ERROR", errors[-1], flush=True)

    try:
        with pinned_redis() as srv:
            os.environ["BENCH_REDIS_URL"] = srv.url
            os.environ["BENCH_HTTP_PORT"] = str(http_port)
            for _ in range(args.rounds):
                for mode in args.modes.split(","):
                    for level in [int(x) for x in args.levels.split(",")]:
                        for system in systems:
                            if system == "rq" and level != 1:
                                continue
                            one(system, mode, level, max(200, args.n_per_slot * level))
                if not args.no_isolate_rows and "pubq" in systems:
                    for level in (1, 2):
                        one("pubq", "sleep", level, 300, isolate=True, pin=False)
    finally:
        server.terminate()
        server.wait(10)
    Path(args.json).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg": os.getloadavg(), "rows": rows,
        "errors": errors, "command": " ".join(sys.argv),
    }, indent=1))


if __name__ == "__main__":
    main()
