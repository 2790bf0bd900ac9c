"""What schedules and unique jobs cost a queue that uses neither: CPU per job of push + drain.

    python bench/micro/unique_cost.py --n 5000 --rounds 3

Pushes N no-op jobs through ``Queue.push`` and drains them with ``ack_and_reserve`` on Redis,
reporting the client's CPU µs per job and Redis's own µs per script call (``INFO commandstats``),
which the machine's other load disturbs far less than wall time. Run it from each checkout (main
and the branch) and compare; the figures go to bench/README.md by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pubq.drivers.redis import RedisDriver  # noqa: E402
from tests.helpers import make_queue  # noqa: E402
from tests.sample_jobs import NoopJob  # noqa: E402


def evalsha_usec(client) -> tuple[int, int]:
    stats = client.info("commandstats")
    row = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(row["calls"]), int(row["usec"])


def one_round(url: str, n: int) -> dict[str, float]:
    driver = RedisDriver(url, f"bench:unique-cost:{uuid.uuid4().hex[:8]}")
    queue = make_queue(driver)
    try:
        c0, u0 = evalsha_usec(driver.client)
        t0 = time.process_time()
        for _ in range(n):
            queue.push(NoopJob())
        t1 = time.process_time()
        r = driver.reserve(0)
        while r is not None:
            _, r = driver.ack_and_reserve(r)
        t2 = time.process_time()
        c1, u1 = evalsha_usec(driver.client)
        assert driver.counts().done == n
        return {"push_cpu_us": (t1 - t0) / n * 1e6, "drain_cpu_us": (t2 - t1) / n * 1e6,
                "redis_us_per_script": (u1 - u0) / max(c1 - c0, 1)}
    finally:
        driver.clear()
        driver.client.delete(*driver.keys)
        driver.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rounds = [one_round(args.url, args.n) for _ in range(args.rounds)]
    best = {k: round(min(r[k] for r in rounds), 2) for k in rounds[0]}
    print(json.dumps({"n": args.n, "rounds": args.rounds, "best": best}))


if __name__ == "__main__":
    main()
