"""Server render time of each dashboard page at 1,000,000 waiting jobs and 10,000 failed entries
(issue 14 target: <= 200 ms a page), on Redis and on PostgreSQL.

    python bench/scale/dashboard.py --driver redis
    python bench/scale/dashboard.py --driver postgres --n 1000000 --failed 10000

Fills one queue with push_many (chunks of 5,000), fails ``--failed`` more through reserve + fail +
settle, then renders every page in process through Starlette's test client (no network: the time
is the server's) and reports the median of 5 renders per page in ms. Everything it made is deleted
at the end. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402

from pubq.app import App  # noqa: E402
from pubq.config import load_config  # noqa: E402
from pubq.drivers.base import FailureInfo, PushItem  # noqa: E402
from pubq.publishing.preset import publishing_preset  # noqa: E402

PAYLOAD = b'{"job": "bench.Noop", "args": {"n": 1, "url": "https://u:secret@example.com/x"}}'
URLS = {"redis": "redis://127.0.0.1:6379/0", "postgres": "postgresql://postgres@127.0.0.1:5432/test"}


def render_ms(client, url: str, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return round(statistics.median(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", choices=["redis", "postgres"], default="redis")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--failed", type=int, default=10_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pubq-bench-dash-"))
    channel = f"pubq-bench-dash-{uuid.uuid4().hex[:8]}"
    queue = {"driver": "redis" if args.driver == "redis" else "db", "channel": channel, "ttr": 60,
             "failed_limit": max(args.failed, 10_000)}
    cfg = {"database": f"sqlite:///{tmp / 'state.db'}", "queues": {"big": queue}}
    if args.driver == "redis":
        cfg["redis"] = URLS["redis"]
    else:
        cfg["queue_database"] = URLS["postgres"]
    (tmp / "pubq.yaml").write_text(yaml.safe_dump(cfg))
    app = App(load_config(tmp / "pubq.yaml", env={}, preset=publishing_preset()))
    from pubq.publishing.service import service_for

    service_for(app).migrate()  # the publish tables, so /tasks renders (empty)
    driver = app.queue("big").driver
    out: dict = {"driver": args.driver, "waiting": args.n, "failed": args.failed}
    try:
        t = time.perf_counter()
        for start in range(0, args.failed, 5000):
            driver.push_many([PushItem(PAYLOAD, 60) for _ in range(min(5000, args.failed - start))])
        info = FailureInfo("RuntimeError", "boom", "Traceback (most recent call last):\n  ...\nRuntimeError: boom")
        for _ in range(args.failed):
            r = driver.reserve(0)
            driver.fail(r, info)
            driver.settle(r)
        for start in range(0, args.n, 5000):
            driver.push_many([PushItem(PAYLOAD, 60) for _ in range(min(5000, args.n - start))])
        out["fill_s"] = round(time.perf_counter() - t, 1)
        counts = driver.counts()
        assert counts.waiting == args.n and counts.failed == args.failed, counts
        if args.driver == "postgres":
            inner = driver.inner
            inner.db.execute_sql(f"ANALYZE {inner._tables['J']}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

            from pubq.dashboard import create_app
        middle = driver.list_jobs(__import__("pubq.drivers.base", fromlist=["JobStatus"]).JobStatus.WAITING,
                                  1, args.failed + args.n // 2).jobs[0].job_id
        first_failed = driver.failed_list(0, 1)[0].job_id
        pages = {
            "overview": "/", "queue waiting": "/queues/big", "queue waiting, deep page": f"/queues/big?after={middle}",
            "queue waiting, class filter": "/queues/big?class=bench.Other", "queue failed": "/queues/big?state=failed",
            "job": f"/queues/big/jobs/{middle}", "failed job": f"/queues/big/jobs/{first_failed}",
            "failed registry": "/queues/big/failed", "failed, message filter": "/queues/big/failed?message=nomatch",
            "failed, last page": f"/queues/big/failed?offset={args.failed - 50}", "workers": "/workers",
            "tasks": "/tasks",
        }
        with TestClient(create_app(app)) as client:
            out["render_ms"] = {name: render_ms(client, url) for name, url in pages.items()}
    finally:
        driver.clear()
        if args.driver == "redis":
            driver.inner.client.delete(*driver.inner.keys)
        app.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
