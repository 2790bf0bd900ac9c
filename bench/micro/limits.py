"""What per-key limits cost a drain (issue 16): before (another checkout) and after, without limits.

    python bench/micro/limits.py --before /work/main --n 5000 --runs 5 --driver redis
    python bench/micro/limits.py --before /work/main --n 5000 --runs 5 --driver sqlite

Each run is a fresh subprocess that imports pubq from one source tree and drains n no-op jobs with
one worker (no isolate, in that process): ``before`` is the tree given (e.g. main without limits),
``after`` this checkout on a queue without limits, ``limited`` this checkout with
``limits: {key: "{n}", concurrency: 1}`` on every job (each job its own key: never refused, so it
is the price of the admission and release round trips). Runs of the set-ups are interleaved;
medians of jobs/s and the worker's CPU µs per job are printed and written as JSON.
Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]

CHILD = r'''
import sys, time, uuid, json
sys.path.insert(0, {src!r})
from dataclasses import dataclass, replace
from pubq import Job
from pubq.config import QueueConfig
from pubq.job import JobRegistry
from pubq.queue import Queue
from pubq.worker import Worker

@dataclass
class BenchNoop(Job):
    name = "bench.Noop"
    n: int = 0
    def execute(self, ctx):
        return None

kind, n, limited = {kind!r}, {n}, {limited}
channel = f"pubq-bench:limits:{{uuid.uuid4().hex[:8]}}"
if kind == "redis":
    from pubq.drivers.redis import RedisDriver
    driver = RedisDriver("redis://127.0.0.1:6379/0", channel)
else:
    from pubq.drivers.db import DbDriver
    driver = DbDriver(f"sqlite:///{tmp}/bench-{{uuid.uuid4().hex[:8]}}.db", channel)
qc = QueueConfig(name="bench", driver=kind, channel=channel, url="bench://")
if limited:
    from pubq.limits import Limits
    qc = replace(qc, limits=Limits(key="{{n}}", concurrency=1))
q = Queue(qc, driver, JobRegistry([BenchNoop]))
q.push_many([BenchNoop(i) for i in range(n)])
worker = Worker(q, isolate=False, install_signals=False, heartbeat=0)
t, cpu = time.perf_counter(), time.process_time()
worker.run()
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
counts = driver.counts()
assert counts.done == n and counts.waiting == 0 and counts.reserved == 0, counts
driver.clear()
if kind == "redis":
    driver.client.delete(*driver.keys)
driver.close()
print(json.dumps({{"rate": n / seconds, "cpu_us": cpu / n * 1e6}}))
'''


def run_once(src: str, kind: str, n: int, limited: bool, tmp: str) -> dict[str, float]:
    code = CHILD.format(src=src, kind=kind, n=n, limited=limited, tmp=tmp)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="source tree without limits (e.g. /work/main)")
    parser.add_argument("--driver", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "bench" / "results" / "limits-latest.json"))
    args = parser.parse_args()
    setups = {"before": (args.before, False), "after": (str(HERE), False), "limited": (str(HERE), True)}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            for name, (src, limited) in setups.items():
                results[name].append(run_once(src, args.driver, args.n, limited, tmp))
    summary = {}
    for name, runs in results.items():
        rates = [r["rate"] for r in runs]
        cpus = [r["cpu_us"] for r in runs]
        summary[name] = {"rate_median": statistics.median(rates), "rate_min": min(rates), "rate_max": max(rates),
                         "cpu_us_median": statistics.median(cpus), "cpu_us_min": min(cpus),
                         "cpu_us_max": max(cpus)}
        print(f"{args.driver} {name:8s} {summary[name]['rate_median']:8.0f} jobs/s ({min(rates):.0f}-{max(rates):.0f})"
              f"  {summary[name]['cpu_us_median']:7.1f} CPU µs/job ({min(cpus):.1f}-{max(cpus):.1f})")
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[args.driver] = {"n": args.n, "runs": args.runs, "setups": summary}
    out.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
