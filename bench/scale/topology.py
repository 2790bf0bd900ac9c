"""Sentinel and Cluster figures (#15): durability cost, shards 3 vs 1, failover pause and losses.

    python bench/scale/topology.py [--jobs 5000] [--runs 3] [--json bench/results/topology-latest.json]

Every topology is started here on loopback ports (tests/topology.py) and torn down after.

* durability: on a Sentinel set (1 master, 2 replicas), one process pushes ``--jobs`` jobs one
  push per job, then drains them with ``ack_and_reserve``; push/s and drain/s with and without
  ``durability: {replicas: 1, timeout_ms: 200}`` (median of ``--runs``).
* shards: on a 3-master Cluster (with replicas), 2 worker processes drain one queue of ``--jobs``
  jobs stored as ``shards: 1`` vs ``shards: 3``; jobs/s from the first reserve to the last ack.
* failover: the drain of tests/reliability/failover.py with the full ``--jobs`` jobs and two CLI
  ``listen`` workers: SENTINEL FAILOVER and SIGKILL of the master with and without durability, and
  CLUSTER FAILOVER; lost, run-twice, not-durable pushes and the pause.

On a 2-core machine all servers, sentinels and workers share two CPUs: the figures show the
protocol's costs (round trips, WAIT), not what separate hosts would give.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pubq.drivers.base import PushItem  # noqa: E402
from pubq.drivers.redis import RedisDriver  # noqa: E402
from pubq.drivers.redis_client import Durability  # noqa: E402
from pubq.drivers.sharded import ShardedDriver  # noqa: E402
from tests.reliability.failover import drain_through_failover, unique_dir  # noqa: E402
from tests.topology import RedisClusterSet, SentinelSet  # noqa: E402

PAYLOAD = b'{"job":"bench.Noop","args":{}}'


def _drain(driver: Any) -> int:
    done, r = 0, driver.reserve(0)
    while r is not None:
        ok, r = driver.ack_and_reserve(r)
        done += ok
    return done


def durability_cost(jobs: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    topology = SentinelSet(replicas=2).start()
    try:
        for label, durability in (("off", None), ("on", Durability(replicas=1, timeout_ms=200))):
            pushes, drains = [], []
            for _ in range(runs):
                d = RedisDriver(topology.url, f"bench-dur-{uuid.uuid4().hex[:8]}", durability=durability)
                start = time.perf_counter()
                for _ in range(jobs):
                    d.push(PAYLOAD, ttr=60)
                pushes.append(jobs / (time.perf_counter() - start))
                start = time.perf_counter()
                assert _drain(d) == jobs
                drains.append(jobs / (time.perf_counter() - start))
                d.client.delete(*d.keys)
                d.close()
            out[label] = {"push_per_s": round(statistics.median(pushes)), "drain_per_s": round(statistics.median(drains)),
                          "runs_push": [round(x) for x in pushes], "runs_drain": [round(x) for x in drains]}
    finally:
        topology.cleanup()
    return out


def _worker(url: str, channel: str, shards: int, result: Any) -> None:
    d = ShardedDriver(url, channel, shards=shards) if shards > 1 else RedisDriver(url, channel)
    start = time.perf_counter()
    done = _drain(d)
    result.put((done, start, time.perf_counter()))
    d.close()


def shards_compare(jobs: int, runs: int, workers: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {}
    topology = RedisClusterSet(masters=3, replicas=1).start()
    ctx = multiprocessing.get_context("fork")
    try:
        for shards in (1, 3):
            rates = []
            for _ in range(runs):
                channel = f"bench-hot-{uuid.uuid4().hex[:8]}"
                d = ShardedDriver(topology.url, channel, shards=shards) if shards > 1 else \
                    RedisDriver(topology.url, channel)
                d.push_many([PushItem(PAYLOAD, ttr=60)] * jobs)
                result = ctx.Queue()
                procs = [ctx.Process(target=_worker, args=(topology.url, channel, shards, result))
                         for _ in range(workers)]
                for p in procs:
                    p.start()
                rows = [result.get(timeout=600) for _ in procs]
                for p in procs:
                    p.join()
                assert sum(r[0] for r in rows) == jobs and d.counts().done == jobs
                rates.append(jobs / (max(r[2] for r in rows) - min(r[1] for r in rows)))
                d.clear()
                if isinstance(d, ShardedDriver):
                    d.drop_keys()
                else:
                    d.client.delete(*d.keys)
                d.close()
            out[f"shards_{shards}"] = {"drain_per_s": round(statistics.median(rates)), "runs": [round(x) for x in rates]}
    finally:
        topology.cleanup()
    return out


def failovers(jobs: int) -> list[dict[str, Any]]:
    rows = []
    root = Path(tempfile.mkdtemp(prefix="pubq-failover-"))
    for event, durability in (("sentinel-failover", False), ("sentinel-failover", True),
                              ("kill-master", False), ("kill-master", True), ("cluster-failover", True),
                              ("cluster-failover", False)):
        topology = RedisClusterSet(masters=3, replicas=1) if event.startswith("cluster") else SentinelSet(replicas=2)
        topology.start()
        try:
            result = drain_through_failover(unique_dir(root), topology, event, jobs=jobs, durability=durability)
        finally:
            topology.cleanup()
        rows.append(result.as_dict())
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("durability", "shards", "failover"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"jobs": args.jobs, "runs": args.runs, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.only in (None, "durability"):
        report["durability"] = durability_cost(args.jobs, args.runs)
        print(json.dumps(report["durability"]), flush=True)
    if args.only in (None, "shards"):
        report["shards"] = shards_compare(args.jobs * 4, args.runs)
        print(json.dumps(report["shards"]), flush=True)
    if args.only in (None, "failover"):
        report["failover"] = failovers(args.jobs)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
