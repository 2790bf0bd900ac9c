"""``/queues/{name}``: jobs by state (keyset pages, filter by class), one job, pause/resume, cancel."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...drivers.records import LISTABLE_STATES, CancelState, JobStatus
from ..model import job_view, list_jobs, raw, redact
from ..security import check_csrf
from . import back, dash, int_param, path_id

STATES = [s.value for s in LISTABLE_STATES]


async def queue_page(request: Request) -> Response:
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    state = request.query_params.get("state", "waiting")
    if state not in STATES:
        raise HTTPException(400, f"state must be one of {', '.join(STATES)}")
    job_class = request.query_params.get("class", "")[:200]
    after = int_param(request, "after", minimum=1)

    def read() -> tuple[Any, dict[str, int], bool]:
        driver = raw(queue.driver)
        return list_jobs(driver, JobStatus(state), job_class, after), driver.counts().as_dict(), driver.paused()

    page, counts, paused = await d.call(read)
    return d.render(request, "queue.html", name=name, state=state, states=STATES, job_class=job_class,
                    page=page, counts=counts, paused=paused, after=after)


async def job_page(request: Request) -> Response:
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    ident = path_id(request)

    def read() -> tuple[Any, Any]:
        driver = raw(queue.driver)
        info = driver.get(ident)
        entry = driver.failed_get(ident) if info is not None and info.status is JobStatus.FAILED else None
        return info, entry

    info, entry = await d.call(read)
    if info is None:
        raise HTTPException(404, f"Job {ident} is not in queue {name} (done, removed or never pushed).")
    job = job_view(info)
    history = [{"attempt": a.attempt, "error_class": a.error_class, "message": a.message, "code": a.code,
                "failed_at": a.failed_at, "traceback": redact(a.traceback)} for a in entry.history] if entry else []
    if entry is not None and not history and entry.traceback:
        history = [{"attempt": entry.attempts, "error_class": entry.error_class, "message": entry.message,
                    "code": entry.code, "failed_at": entry.failed_at, "traceback": redact(entry.traceback)}]
    now = await d.call(raw(queue.driver).now)
    return d.render(request, "job.html", name=name, job=job, history=history, now=now)


async def pause(request: Request) -> Response:
    await check_csrf(request)
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    await d.call(queue.driver.pause)
    return back(request, f"/queues/{name}", f"Queue {name} is paused.")


async def resume(request: Request) -> Response:
    await check_csrf(request)
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    await d.call(queue.driver.resume)
    return back(request, f"/queues/{name}", f"Queue {name} is resumed.")


async def cancel(request: Request) -> Response:
    form = await check_csrf(request)
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    ident = path_id(request)
    reason = form.get("reason", "")[:500] or "cancelled from the dashboard"

    def act() -> str:
        from ...runner import JobRunner

        result = queue.driver.cancel(ident, reason)
        if result.state is CancelState.CANCELLED:
            assert result.reservation is not None
            JobRunner(queue).cancelled(result.reservation, reason)
            return f"Job {ident} is cancelled."
        if result.state is CancelState.REQUESTED:
            return f"Job {ident} is running: its worker was asked to stop it."
        if result.state is CancelState.FINISHED:
            return f"Job {ident} already finished."
        return f"Job {ident} is not found."

    return back(request, f"/queues/{name}/jobs/{ident}", await d.call(act))


routes = [
    Route("/queues/{name}", queue_page, name="queue"),
    Route("/queues/{name}/jobs/{job_id}", job_page, name="job"),
    Route("/queues/{name}/pause", pause, methods=["POST"]),
    Route("/queues/{name}/resume", resume, methods=["POST"]),
    Route("/queues/{name}/jobs/{job_id}/cancel", cancel, methods=["POST"]),
]
