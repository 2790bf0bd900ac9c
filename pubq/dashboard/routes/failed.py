"""``/queues/{name}/failed``: the failed registry, filtered; retry one or all matching; purge."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..model import failed_matches, list_failed, raw
from ..security import check_csrf
from . import back, dash, int_param, path_id


def _filters(source: dict[str, str] | object) -> tuple[str, str]:
    get = source.get  # type: ignore[attr-defined]
    return str(get("class", ""))[:200], str(get("message", ""))[:200]


async def failed_page(request: Request) -> Response:
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    job_class, message = _filters(request.query_params)
    offset = int_param(request, "offset") or 0

    def read() -> tuple[list[dict], int | None, int]:
        rows, nxt = list_failed(queue.driver, job_class, message, offset)
        return rows, nxt, raw(queue.driver).counts().failed

    rows, nxt, total = await d.call(read)
    return d.render(request, "failed.html", name=name, rows=rows, next_offset=nxt, total=total,
                    job_class=job_class, message=message, offset=offset)


async def retry_one(request: Request) -> Response:
    await check_csrf(request)
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    ident = path_id(request)
    ok = await d.call(queue.driver.requeue_failed, ident)
    notice = f"Job {ident} is waiting again." if ok else f"Job {ident} is not in the failed registry."
    return back(request, f"/queues/{name}/failed", notice)


async def retry_matching(request: Request) -> Response:
    form = await check_csrf(request)
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    job_class, message = _filters(form)

    def act() -> int:
        # Entries leave the registry as they are retried, so each pass reads from the start; the
        # registry is capped (failed_limit), so this ends.
        moved, offset = 0, 0
        while True:
            batch = queue.driver.failed_list(offset, 500)
            if not batch:
                return moved
            hits = [f for f in batch if failed_matches(f, job_class, message)]
            done = sum(1 for f in hits if queue.driver.requeue_failed(f.job_id))
            moved += done
            offset += len(batch) - done
            if len(batch) < 500:
                return moved

    count = await d.call(act)
    return back(request, f"/queues/{name}/failed", f"{count} job{'s' if count != 1 else ''} waiting again.",
                **{"class": job_class, "message": message})


async def purge_confirm(request: Request) -> Response:
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    total = await d.call(lambda: raw(queue.driver).counts().failed)
    return d.render(request, "purge.html", name=name, total=total)


async def purge(request: Request) -> Response:
    form = await check_csrf(request)
    d = dash(request)
    name = request.path_params["name"]
    queue = d.queue(name)
    if form.get("confirm") != name:
        return back(request, f"/queues/{name}/failed/purge", "Type the queue's name to confirm the purge.")
    n = await d.call(queue.driver.failed_purge)
    return back(request, f"/queues/{name}/failed", f"{n} failed entr{'ies' if n != 1 else 'y'} purged.")


routes = [
    Route("/queues/{name}/failed", failed_page, name="failed"),
    Route("/queues/{name}/failed/retry", retry_matching, methods=["POST"]),
    Route("/queues/{name}/failed/purge", purge_confirm, methods=["GET"]),
    Route("/queues/{name}/failed/purge", purge, methods=["POST"]),
    Route("/queues/{name}/failed/{job_id}/retry", retry_one, methods=["POST"]),
]
