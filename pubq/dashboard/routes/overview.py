"""``/``: every queue's counts, paused flag, live workers and last hour; backend health."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..model import Health, QueueRow, ping, queue_row
from ..throughput import svg_chart
from . import dash


async def overview(request: Request) -> Response:
    d = dash(request)
    app = d.app

    def read() -> tuple[list[QueueRow], list[Health]]:
        rows, health, seen = [], [], {}
        for name in app.queue_names():
            qc = app.config.queues[name]
            driver = app.queue(name).driver
            rows.append(queue_row(name, qc.driver, qc.url, driver))
            if qc.driver != "sync" and qc.url not in seen:
                seen[qc.url] = True
                health.append(ping(rows[-1].backend, driver))
        d.sample()
        return rows, health

    rows, health = await d.call(read)
    now = time.time()
    charts, since = {}, None
    for row in rows:
        done, failed, began = d.throughput.buckets(row.name, now)
        charts[row.name] = svg_chart(done, failed)
        charts[row.name + ":total"] = sum(done) + sum(failed)
        since = began if since is None or (began is not None and began < since) else since
    return d.render(request, "overview.html", rows=rows, health=health, charts=charts, since=since, now=now)


routes = [Route("/", overview, name="overview")]
