"""``/tasks``: publish tasks newest first, filtered; a task's accounts and timeline; retry an account.

Everything goes through the publishing service (:func:`pubq.publishing.service.viewer_for`), never
the database directly.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import PubqError
from ...publishing.service import viewer_for
from ...publishing.vocabulary import AccountStatus
from ..model import PAGE
from ..security import check_csrf
from . import back, dash, int_param, path_id

STATUSES = [(s.value, s.label) for s in AccountStatus]


def _unavailable(exc: Exception) -> HTTPException:
    return HTTPException(503, f"The publish state cannot be read: {str(exc).splitlines()[0] if str(exc) else exc}"
                              " (is the database up, and migrated with `pubq db migrate`?)")


async def tasks_page(request: Request) -> Response:
    d = dash(request)
    status = int_param(request, "status", minimum=1)
    channel = request.query_params.get("channel", "")[:64]
    before = int_param(request, "before", minimum=1)

    def read() -> tuple[list[dict[str, Any]], int | None, list[str]]:
        service = viewer_for(d.app)
        rows, nxt = service.list_tasks(status=status, channel_type=channel or None, limit=PAGE, before=before)
        return rows, nxt, service.channel_types()

    try:
        rows, nxt, channels = await d.call(read)
    except (PubqError, Exception) as exc:  # noqa: BLE001 - peewee errors too: shown as one line
        if isinstance(exc, HTTPException):
            raise
        raise _unavailable(exc) from None
    return d.render(request, "tasks.html", rows=rows, next_before=nxt, channels=channels, statuses=STATUSES,
                    status=status, channel=channel)


async def task_page(request: Request) -> Response:
    d = dash(request)
    ident = path_id(request, "task_id")

    def read() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        service = viewer_for(d.app)
        return service.show(ident), service.trace(ident)

    try:
        shown, trace = await d.call(read)
    except PubqError as exc:
        raise HTTPException(404, str(exc).splitlines()[0]) from None
    except Exception as exc:  # noqa: BLE001 - a database that does not answer
        raise _unavailable(exc) from None
    timelines: dict[Any, list[dict[str, Any]]] = {}
    for event in trace:
        timelines.setdefault(event["channel_app_task_id"], []).append(event)
    return d.render(request, "task.html", shown=shown, timelines=timelines, label=AccountStatus.label_of,
                    failed=int(AccountStatus.FAILED))


async def retry_account(request: Request) -> Response:
    form = await check_csrf(request)
    d = dash(request)
    ident = path_id(request, "task_id")
    account = form.get("account", "")[:64] or None

    def act() -> str:
        result = viewer_for(d.app).retry(ident, account)
        if result.retried:
            return f"Retried {', '.join(result.retried)} ({result.step.value if result.step else '-'} step pushed)."
        return "Nothing to retry: " + (", ".join(f"{a} is {s}" for a, s in result.skipped) or "no failed account")

    try:
        notice = await d.call(act)
    except PubqError as exc:
        notice = str(exc).splitlines()[0]
    return back(request, f"/tasks/{ident}", notice)


routes = [
    Route("/tasks", tasks_page, name="tasks"),
    Route("/tasks/{task_id}", task_page, name="task"),
    Route("/tasks/{task_id}/retry", retry_account, methods=["POST"]),
]
