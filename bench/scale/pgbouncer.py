"""Pickup latency of pubq on PostgreSQL: direct, behind PgBouncer in session mode, in transaction mode.

    python bench/scale/pgbouncer.py [--runs 3] [--quick] [--json out.json]

Method: the peers harness's pickup measure (``bench/peers/harness.py:latency``) with the ``pubq-pg``
adapter. A fresh PostgreSQL database per invocation (dropped at the end); a private PgBouncer
(``tests/helpers.py:PrivatePgBouncer``) and the private redis-server that holds the counter are pinned
to CPU 0, the harness and the one ``listen`` worker process to CPU 1. The harness pushes at 2/s (a
worker that has been idle long enough to back off fully), 25/s and 200/s; latency is the push time
carried in the job to the start of its body. Every run checks the counter: no job lost, none twice.

Direct and session mode wake the worker with LISTEN/NOTIFY. Transaction mode has no LISTEN
(``?pooler=transaction``): the worker polls, 10 ms doubling to 200 ms (``pubq.drivers.db.POLL_MAX``),
so a push reaches an idle worker within 200 ms plus one round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.common import CLIENT_CPU, SERVER_CPU, pin_self, pinned_redis, taskset_prefix  # noqa: E402
from bench.peers import COUNTER, LATENCIES, Cfg  # noqa: E402
from bench.peers.harness import RunFailed, cleanup_logs, latency  # noqa: E402
from bench.peers.pubq_peer import PubqPostgres  # noqa: E402
from tests.drivers.backends import POSTGRES_URL  # noqa: E402
from tests.helpers import PrivatePgBouncer, fresh_pg_database  # noqa: E402

MODES = ("direct", "session", "transaction")
RATES = [(2.0, 15.0), (25.0, 4.0), (200.0, 2.0)]
QUICK_RATES = [(2.0, 5.0), (25.0, 2.0), (200.0, 1.0)]
RESULTS = ROOT / "bench" / "results"


def measure(runs: int, rates: list[tuple[float, float]]) -> dict[str, Any]:
    """{mode: {"runs": [{p50_ms@rate…}, …], "median": {…}, "errors": [...]}}."""
    out: dict[str, Any] = {m: {"runs": [], "errors": []} for m in MODES}
    db_url, drop = fresh_pg_database(POSTGRES_URL, "pubq_bench_pgb")
    bouncer = PrivatePgBouncer(db_url, prefix=taskset_prefix(SERVER_CPU))
    try:
        bouncer.start()
        urls = {"direct": db_url, "session": bouncer.url("session"), "transaction": bouncer.url("transaction")}
        with pinned_redis() as server:
            r = redis.Redis.from_url(server.url)
            for _ in range(runs):
                for mode in MODES:
                    cfg = Cfg(row="pubq-pg", redis_url=server.url, body_url=server.url, db_url=urls[mode])
                    adapter = PubqPostgres(cfg)
                    try:
                        adapter.reset()
                        r.delete(COUNTER, LATENCIES)
                        out[mode]["runs"].append(latency(r, adapter, replace(cfg), rates))
                    except RunFailed as exc:
                        out[mode]["errors"].append(str(exc))
                    finally:
                        adapter.close()
    finally:
        bouncer.cleanup()
        drop()
        cleanup_logs()
    for mode in MODES:
        values = out[mode]["runs"]
        if values:
            out[mode]["median"] = {k: statistics.median(v[k] for v in values) for k in values[0]}
    return out


def render(result: dict[str, Any], rates: list[tuple[float, float]]) -> str:
    head = "| PostgreSQL reached | " + " | ".join(f"p50 ms @{r:g}/s | p99 ms @{r:g}/s" for r, _ in rates) + " |"
    lines = [head, "|---" * (1 + 2 * len(rates)) + "|"]
    for mode in MODES:
        med = result[mode].get("median")
        label = {"direct": "direct (LISTEN)", "session": "PgBouncer session (LISTEN)",
                 "transaction": "PgBouncer transaction (polling)"}[mode]
        if not med:
            lines.append(f"| {label} | " + " | ".join(["error"] * 2 * len(rates)) + " |")
            continue
        cells = [f"{med[f'p50_ms@{r:g}']:.1f} | {med[f'p99_ms@{r:g}']:.1f}" for r, _ in rates]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run, shorter rates (a smoke check)")
    parser.add_argument("--json", type=Path, default=RESULTS / "pgbouncer-latest.json")
    args = parser.parse_args()
    runs, rates = (1, QUICK_RATES) if args.quick else (args.runs, RATES)
    pin_self(CLIENT_CPU)
    started, load = time.monotonic(), [round(x, 2) for x in os.getloadavg()]
    result = measure(runs, rates)
    table = render(result, rates)
    print(table)
    for mode in MODES:
        for err in result[mode]["errors"]:
            print(f"error ({mode}): {err}")
    record = {
        "command": " ".join(["python bench/scale/pgbouncer.py", *(shlex.quote(a) for a in sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "seconds": round(time.monotonic() - started),
        "load_start": load, "load_end": [round(x, 2) for x in os.getloadavg()], "rates": rates,
        "results": result, "table": table,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
