"""``/workers``: every registered worker of every queue; lost ones flagged. Reads never sweep."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import PubqError
from ..model import raw, redact, worker_view
from . import dash


async def workers_page(request: Request) -> Response:
    d = dash(request)
    app = d.app

    def read() -> tuple[list[dict[str, Any]], list[str]]:
        rows, errors = [], []
        for name in app.queue_names():
            if app.config.queues[name].driver == "sync":
                continue
            driver = raw(app.queue(name).driver)
            try:
                now = driver.now()
                rows += [dict(worker_view(w, now), queue_name=name) for w in driver.workers(sweep=False)]
            except PubqError as exc:
                errors.append(f"queue {name}: {redact(str(exc).splitlines()[0])}")
        return rows, errors

    rows, errors = await d.call(read)
    return d.render(request, "workers.html", rows=rows, errors=errors, now=time.time())


routes = [Route("/workers", workers_page, name="workers")]
