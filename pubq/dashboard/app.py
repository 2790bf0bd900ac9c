"""The dashboard's ASGI app: :func:`create_app` wires the pages, the security middleware and the
templates around one :class:`Dashboard` (the pubq app, the signer).

Every backend call runs on one worker thread of the dashboard's own: drivers are per process and
not meant to be shared across threads, and one thread keeps their connections where they were made.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from .model import redact
from .security import SecurityMiddleware, Signer, session_id
from .settings import DashboardSettings

T = TypeVar("T")


#: The one way every page shows a time: UTC, to the second ...
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: ... and to the µs where order within a second matters (a task's status timeline).
TIME_US_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _as_datetime(value: float | str | None) -> datetime | None:
    """A backend time (unix seconds) or a publishing service time (ISO 8601, ``Z``) as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def fmt_time(value: float | str | None) -> str:
    when = _as_datetime(value)
    return "-" if when is None else when.strftime(TIME_FORMAT)


def fmt_time_us(value: float | str | None) -> str:
    when = _as_datetime(value)
    return "-" if when is None else when.strftime(TIME_US_FORMAT)


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Dashboard:
    """One dashboard: the pubq app it shows, whether actions are on, and its per-process state."""

    def __init__(self, app: Any, *, read_only: bool = False, settings: DashboardSettings | None = None,
                 refresh: float = 5.0) -> None:
        self.app = app
        self.read_only = read_only
        self.settings = settings or DashboardSettings()
        #: Seconds between auto-refreshes of a page (0: off).
        self.refresh = refresh
        self.signer = Signer()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pubq-dashboard")
        self.env = Environment(loader=PackageLoader("pubq.dashboard", "templates"),
                               autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(time=fmt_time, time_us=fmt_time_us, age=fmt_age, redact=redact)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking backend call on the dashboard's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def queue(self, name: str) -> Any:
        if name not in self.app.config.queues:
            raise HTTPException(404, f"No queue named {name!r}.")
        return self.app.queue(name)

    def render(self, request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
        sid = session_id(request)
        notice = request.query_params.get("notice", "")
        if not self.signer.notice_ok(sid, notice, request.query_params.get("sig", "")):
            notice = ""  # not signed for this session: a crafted link shows nothing
        html = self.env.get_template(template).render(
            request=request, read_only=self.read_only, csrf=self.signer.csrf_token(sid) if sid else "",
            refresh=self.refresh, queue_names=self.app.queue_names(), notice=notice, **context)
        return HTMLResponse(html, code)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def create_app(app: Any, *, read_only: bool = False, settings: DashboardSettings | None = None,
               refresh: float = 5.0) -> Starlette:
    """The dashboard of the pubq ``app`` (a :class:`pubq.app.App`) as an ASGI app."""
    from .routes import failed, overview, publishing, queues, workers

    dash = Dashboard(app, read_only=read_only, settings=settings, refresh=refresh)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            dash.close()

    routes = [*overview.routes, *queues.routes, *failed.routes, *workers.routes, *publishing.routes,
              Mount("/static", StaticFiles(packages=[("pubq.dashboard", "static")]), name="static")]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return dash.render(request, "error.html", exc.status_code, status=exc.status_code, detail=exc.detail)

    web = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error},
                    middleware=[Middleware(SecurityMiddleware, signer=dash.signer, settings=dash.settings,
                                           read_only=read_only)])
    web.state.dashboard = dash
    return web
