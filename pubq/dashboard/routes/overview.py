"""``/``: every queue's counts, paused flag, live workers and last hour; backend health."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pubq.drivers.base import Driver
from pubq.errors import PubqError

from ..model import Health, QueueRow, ping, queue_row, raw
from ..throughput import MINUTES, last_hour, svg_chart
from . import dash


async def overview(request: Request) -> Response:
    d = dash(request)
    app = d.app

    def read() -> tuple[list[QueueRow], list[Health], dict[str, tuple[list[int], list[int]]]]:
        rows, health, seen, series = [], [], {}, {}
        for name in app.queue_names():
            qc = app.config.queues[name]
            driver = app.queue(name).driver
            rows.append(queue_row(name, qc.driver, qc.url, driver))
            if qc.driver != "sync" and qc.url not in seen:
                seen[qc.url] = True
                health.append(ping(rows[-1].backend, driver))
            series[name] = _last_hour(raw(driver)) if qc.driver != "sync" else last_hour([], 0)
        return rows, health, series

    rows, health, series = await d.call(read)
    charts: dict[str, object] = {}
    for row in rows:
        done, failed = series[row.name]
        charts[row.name] = svg_chart(done, failed)
        charts[row.name + ":total"] = sum(done) + sum(failed)
    return d.render(request, "overview.html", rows=rows, health=health, charts=charts)


def _last_hour(driver: Driver) -> tuple[list[int], list[int]]:
    """The queue's stored per-minute throughput of the last hour (zeros while its backend is down:
    the row and the health table say so)."""
    try:
        now_minute = int(driver.now() // 60)
        return last_hour(driver.throughput(now_minute - MINUTES + 1), now_minute)
    except PubqError:
        return last_hour([], 0)


routes = [Route("/", overview, name="overview")]
