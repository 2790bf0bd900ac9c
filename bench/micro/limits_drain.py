"""How close a limited drain gets to its ideal on the SQL backends (issue 16), before and after.

    python bench/micro/limits_drain.py --before /work/main --runs 5 --kinds postgres mysql
    python bench/micro/limits_drain.py --round-trips --kinds sqlite postgres mysql

A run is a fresh subprocess importing pubq and ``tests/test_limits.py`` from one source tree, which
drains 200 jobs over 5 keys with 4 worker threads three times: without limits, with
``concurrency: 1`` (0.1 s bodies) and with ``rate: 20/s`` (1 ms bodies); it prints the limited
time over the ideal the test defines (concurrency: the unlimited drain; rate: 1 s + half the
unlimited drain). Runs of ``before`` and ``after`` (this checkout) are interleaved; medians and
ranges are printed and written to ``bench/results/limits-drain-latest.json``.

``--round-trips`` counts the statements each limit call sends to the database (every
``cursor.execute``: BEGIN, the clock, each statement, the counters, COMMIT), on a key already in use.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]

DRAIN = r'''
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {src!r})
import pubq
assert pubq.__file__.startswith({src!r}), pubq.__file__
from pubq.limits import Limits
from tests import test_limits as t

tmp = Path(tempfile.mkdtemp(prefix="pubq-bench-"))
out = {{}}
free = t._drain({kind!r}, tmp, None, 0.1)
conc = t._drain({kind!r}, tmp, Limits(key="{{account}}", concurrency=1), 0.1)
out["concurrency"] = conc.took / max(free.took, t.JOBS // t.KEYS * 0.1)
free = t._drain({kind!r}, tmp, None, 0.001)
rate = t._drain({kind!r}, tmp, Limits(key="{{account}}", rate=20, per=1.0), 0.001)
out["rate"] = rate.took / (1.0 + free.took / 2)
print(json.dumps(out))
'''

ROUND_TRIPS = r'''
import json, sys, tempfile, uuid
from pathlib import Path
sys.path.insert(0, {src!r})
from pubq.drivers import db_conn
from tests.drivers.backends import open_driver

sent = [0]

class Counting:
    def __init__(self, cur):
        self._cur = cur
    def execute(self, *a, **kw):
        sent[0] += 1
        return self._cur.execute(*a, **kw)
    def __getattr__(self, name):
        return getattr(self._cur, name)

plain = db_conn.DbConnection.cursor
db_conn.DbConnection.cursor = lambda self: Counting(plain(self))

tmp = Path(tempfile.mkdtemp(prefix="pubq-bench-"))
driver, cleanup = open_driver({kind!r}, tmp, channel=f"pubq-bench:rt:{{uuid.uuid4().hex[:8]}}")
try:
    def cost(fn):
        sent[0] = 0
        result = fn()
        return sent[0], result
    for _ in range(4):
        driver.push(b"{{}}", ttr=30)
    key = "k"
    a = driver.reserve(0)
    driver.limit_acquire(a, key, concurrency=1)   # the key's row is created: first use, not counted
    driver.limit_release(a, key)
    driver.ack(a)
    out = {{}}
    a, b = driver.reserve(0), driver.reserve(0)
    out["admitted (concurrency 1)"], w = cost(lambda: driver.limit_acquire(a, key, concurrency=1))
    assert w == 0, w
    out["refused (concurrency 1)"], w = cost(lambda: driver.limit_acquire(b, key, concurrency=1))
    assert w and w > 0, w
    out["release waking a waiter"], _ = cost(lambda: driver.limit_release(a, key))
    driver.ack(a)
    b = driver.reserve(0)
    out["admitted after a wake-up"], w = cost(lambda: driver.limit_acquire(b, key, concurrency=1))
    assert w == 0, w
    out["release, no waiter"], _ = cost(lambda: driver.limit_release(b, key))
    driver.ack(b)
    c = driver.reserve(0)
    out["admitted (rate 20/s)"], w = cost(lambda: driver.limit_acquire(c, "r", rate=20, per=1.0))
    out["ack (for scale)"], _ = cost(lambda: driver.ack(c))
    print(json.dumps(out))
finally:
    cleanup()
'''


def child(code: str, src: str, kind: str) -> dict:
    text = code.format(src=src, kind=kind)
    done = subprocess.run([sys.executable, "-c", text], capture_output=True, text=True, cwd=src, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{kind} run in {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="another checkout to compare with (e.g. /work/main)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kinds", nargs="+", default=["postgres", "mysql"])
    ap.add_argument("--round-trips", action="store_true")
    ap.add_argument("--out", default=str(HERE / "bench" / "results" / "limits-drain-latest.json"))
    args = ap.parse_args()
    trees = {"after": str(HERE)} if not args.before else {"before": args.before, "after": str(HERE)}
    if args.round_trips:
        for name, src in trees.items():
            for kind in args.kinds:
                print(name, kind, child(ROUND_TRIPS, src, kind))
        return
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for _ in range(args.runs):
        for kind in args.kinds:
            for name, src in trees.items():
                got = child(DRAIN, src, kind)
                for test, ratio in got.items():
                    results.setdefault(kind, {}).setdefault(test, {}).setdefault(name, []).append(ratio)
                print(kind, name, {k: round(v, 3) for k, v in got.items()}, flush=True)
    print("\n| backend | test | " + " | ".join(f"{n}: median (range)" for n in trees) + " |")
    for kind, tests in results.items():
        for test, by in tests.items():
            cells = [f"{statistics.median(v):.2f}× ({min(v):.2f}–{max(v):.2f})" for v in by.values()]
            print(f"| {kind} | {test} | " + " | ".join(cells) + " |")
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
