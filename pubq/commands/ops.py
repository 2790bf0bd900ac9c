"""Seeing and steering live work: ``pubq QUEUE jobs|show|pause|resume|cancel``, ``pubq workers``,
``pubq health`` and ``pubq metrics serve`` (spec §7.2-7.5)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import click

from ..drivers.records import CancelState, JobInfo, JobStatus, WorkerInfo
from ..errors import JobFinishedError, JobNotFoundError, PubqError, UsageError
from .options import color_option, console, current_queue, emit_json, json_option, state
from .render import first_line, fmt_time

STATES = ("waiting", "delayed", "reserved", "failed")
#: Default of ``health --max-stale``: three beats of the default heartbeat and a little slack.
DEFAULT_MAX_STALE = 10.0


def _job_id(value: str) -> int:
    try:
        ident = int(value)
    except ValueError:
        raise UsageError(f"job id must be an integer (got {value!r})") from None
    if ident < 1:
        raise JobNotFoundError("The job is not found.")
    return ident


def _payload(raw: bytes) -> tuple[str, Any]:
    """(job name, args) of a stored payload; never raises (the bytes may be anything)."""
    try:
        data = json.loads(raw)
        return str(data.get("job") or "unknown job"), data.get("args", {})
    except Exception:  # noqa: BLE001 - an invalid payload is shown, not fatal
        return "unknown job", raw.decode("utf-8", "replace")


def job_dict(j: JobInfo) -> dict[str, Any]:
    """One job as ``jobs --json`` and ``show --json`` print it (the dashboard's shape too)."""
    name, args = _payload(j.payload)
    data: dict[str, Any] = {
        "id": j.job_id, "state": j.status.value, "job": name, "attempt": j.attempt, "priority": j.priority,
        "ttr": j.ttr, "pushed_at": j.pushed_at, "args": args,
    }
    if j.status in (JobStatus.WAITING, JobStatus.DELAYED):
        data["due_at"] = j.due_at
    if j.status is JobStatus.RESERVED:
        data.update(started_at=j.started_at, deadline=j.deadline, holder=j.holder, progress=j.progress,
                    progress_message=j.progress_message, cancel_requested=j.cancel_reason is not None,
                    cancel_reason=j.cancel_reason)
    if j.status is JobStatus.FAILED:
        data.update(failed_at=j.failed_at, error_class=j.error_class, message=j.message, code=j.code,
                    cancelled=j.code == "cancelled", unsettled=j.unsettled)
    return data


def _progress_text(fraction: float | None, message: str = "") -> str:
    if fraction is None:
        return "-"
    text = f"{fraction * 100:.0f}%"
    return f"{text} {first_line(message, 40)}" if message else text


def _short(args: Any, width: int = 50) -> str:
    text = args if isinstance(args, str) else json.dumps(args, separators=(",", ":"), default=str)
    return first_line(text, width)


# -- pubq QUEUE jobs / show ---------------------------------------------------------------------


@click.command("jobs")
@click.option("--state", "state_name", type=click.Choice(STATES), default="waiting", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--after", type=click.IntRange(min=1), default=None, metavar="ID",
              help="Continue after job ID (the last one of the previous page).")
@json_option
@color_option
def jobs_cmd(state_name: str, limit: int, after: int | None, as_json: bool, color: bool | None) -> None:
    """List jobs in one state, in its order (a keyset page: fast however deep)."""
    from .tables import Rows

    queue = current_queue()
    st = JobStatus(state_name)
    page = queue.driver.list_jobs(st, limit, after)
    rows = [job_dict(j) for j in page.jobs]
    if as_json:
        emit_json({"queue": queue.name, "state": state_name, "jobs": rows, "next_after": page.next_after})
        return
    con = console(state().use_color(color))
    if not rows:
        con.print(f"No {state_name} jobs.")
        return
    head = ["ID", "Job", "Attempt", "Priority", "Pushed"]
    extra = {"waiting": [], "delayed": ["Due"], "reserved": ["Started", "Holder", "Progress"],
             "failed": ["Failed", "Error"]}[state_name]
    table = Rows(*head, *extra, "Args", text=[c for c in ("Error", "Progress", "Args") if c in (*extra, "Args")])
    for r in rows:
        cells = [str(r["id"]), r["job"], str(r["attempt"]), str(r["priority"]), fmt_time(r["pushed_at"])]
        if state_name == "delayed":
            cells.append(fmt_time(r["due_at"]))
        elif state_name == "reserved":
            progress = _progress_text(r["progress"], r["progress_message"])
            if r["cancel_requested"]:
                progress += " (cancel requested)"
            cells += [fmt_time(r["started_at"]), r["holder"] or "-", progress]
        elif state_name == "failed":
            label = "cancelled: " if r["cancelled"] else f"{r['error_class']}: "
            cells += [fmt_time(r["failed_at"]), label + first_line(r["message"], 50)]
        table.add(*cells, _short(r["args"]))
    table.print(con)
    if page.next_after is not None:
        con.print(f"More: --after {page.next_after}")


@click.command("show")
@click.argument("job_id", metavar="ID")
@json_option
def show_cmd(job_id: str, as_json: bool) -> None:
    """One job, whatever its state."""
    queue = current_queue()
    info = queue.driver.get(_job_id(job_id))
    if info is None:
        raise JobNotFoundError("The job is not found.")
    data = job_dict(info)
    if info.status is JobStatus.FAILED:
        entry = queue.driver.failed_get(info.job_id)
        data["traceback"] = entry.traceback if entry is not None else ""
    if as_json:
        emit_json(data)
        return
    times = {"pushed_at", "due_at", "started_at", "deadline", "failed_at"}
    for key, value in data.items():
        if key in ("traceback", "args") or value is None or value == "":
            continue
        if key in times:
            value = fmt_time(value)
        elif key == "progress":
            value = _progress_text(value)
        click.echo(f"{key}: {value}")
    click.echo(f"args: {_short(data['args'], 1000)}")
    if data.get("traceback"):
        click.echo("traceback:")
        click.echo(data["traceback"].rstrip())


# -- pause / resume / cancel ------------------------------------------------------------------------


@click.command("pause")
def pause_cmd() -> None:
    """Stop every worker of this queue from reserving (running jobs finish; pushes still work)."""
    queue = current_queue()
    queue.driver.pause()
    click.echo(f"Queue {queue.name} is paused.")


@click.command("resume")
def resume_cmd() -> None:
    """Let workers reserve again (within a second, without restarting them)."""
    queue = current_queue()
    queue.driver.resume()
    click.echo(f"Queue {queue.name} is resumed.")


@click.command("cancel")
@click.argument("job_id", metavar="ID")
@click.option("--reason", default="", metavar="TEXT", help="Why (kept as the failure's message).")
def cancel_cmd(job_id: str, reason: str) -> None:
    """Cancel job ID: a waiting or delayed job ends at once; a running one is stopped by its worker.

    Either way it ends failed with JobCancelledError, never retried, afterError fired once with
    retry=false."""
    from ..runner import JobRunner

    queue = current_queue()
    ident = _job_id(job_id)
    result = queue.driver.cancel(ident, reason)
    if result.state is CancelState.CANCELLED:
        assert result.reservation is not None
        JobRunner(queue).cancelled(result.reservation, reason)
        click.echo(f"Job {ident} is cancelled.")
    elif result.state is CancelState.REQUESTED:
        info = queue.driver.get(ident)
        holder = f" ({info.holder})" if info is not None and info.holder else ""
        click.echo(f"Job {ident} is running: its worker{holder} was asked to stop it.")
    elif result.state is CancelState.FINISHED:
        raise JobFinishedError("The job already finished.")
    else:
        raise JobNotFoundError("The job is not found.")


def add_queue_commands(group: click.Group) -> None:
    for cmd in (jobs_cmd, show_cmd, pause_cmd, resume_cmd, cancel_cmd):
        group.add_command(cmd)


# -- pubq workers / health ------------------------------------------------------------------------


def _queues(names: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """(name, driver) of the named queues (all configured ones by default), sync queues left out:
    their jobs run inside push, no worker is ever registered."""
    app = state().app
    for name in names or tuple(app.queue_names()):
        queue = app.queue(name)
        if queue.config.driver != "sync" or names:
            yield name, queue.driver


def worker_dict(w: WorkerInfo) -> dict[str, Any]:
    return {
        "id": w.worker_id, "queue": w.queue, "host": w.host, "pid": w.pid, "state": "lost" if w.lost else w.state,
        "started_at": w.started_at, "last_seen": w.last_seen, "heartbeat": w.heartbeat, "job_id": w.job_id,
        "job": w.job_name or None, "attempt": w.attempt or None, "job_started_at": w.job_started_at,
        "job_deadline": w.job_deadline, "progress": w.progress, "progress_message": w.progress_message,
        "done": w.done, "failed": w.failed, "rss_mib": w.rss_mib, "concurrency": w.concurrency,
        "in_flight": w.in_flight, "job_ids": list(w.job_ids),
    }


def _job_text(r: dict[str, Any]) -> str:
    """The oldest job in flight, and how many more run beside it."""
    if not r["job_id"]:
        return "-"
    more = max(r["in_flight"] - 1, 0)
    return f"[{r['job_id']}] {r['job']} (attempt {r['attempt']})" + (f" +{more} more" if more else "")


@click.command("workers")
@click.option("--queue", "queue_names", multiple=True, metavar="Q", help="Only this queue (repeatable).")
@json_option
@color_option
@click.option("--watch", is_flag=True, help="Refresh until interrupted.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True)
def workers_cmd(queue_names: tuple[str, ...], as_json: bool, color: bool | None, watch: bool,
                interval: float) -> None:
    """Registered workers: state, current job and its progress, jobs done and failed, memory."""
    from .tables import Rows

    use_color = state().use_color(color)
    while True:
        rows: list[dict[str, Any]] = []
        now = time.time()
        for _name, driver in _queues(queue_names):
            rows += [worker_dict(w) for w in driver.workers()]
        if as_json:
            emit_json(rows)
        else:
            if watch and use_color:
                click.echo("\x1b[2J\x1b[H", nl=False)
            con = console(use_color)
            if not rows:
                con.print("No workers.")
            else:
                table = Rows("Worker", "Queue", "State", "In flight", "Job", "Progress", "Done", "Failed", "RSS MiB",
                             "Seen", text=("Job", "Progress"), right=("In flight", "Done", "Failed", "RSS MiB"))
                for r in rows:
                    table.add(r["id"], r["queue"], r["state"], f"{r['in_flight']}/{r['concurrency']}", _job_text(r),
                              _progress_text(r["progress"], r["progress_message"]), str(r["done"]),
                              str(r["failed"]), f"{r['rss_mib']:.0f}", f"{max(now - r['last_seen'], 0):.1f} s ago")
                table.print(con)
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


@click.command("health")
@click.option("--queue", "queue_names", multiple=True, metavar="Q",
              help="Queue that must have a live worker (repeatable; default: every configured queue).")
@click.option("--max-stale", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_STALE,
              show_default=True, metavar="S", help="A worker is live when its last heartbeat is newer than S s.")
@json_option
def health_cmd(queue_names: tuple[str, ...], max_stale: float, as_json: bool) -> int:
    """Exit 0 when every queue's backend answers and has a live worker; else exit 1, one line per problem.

    For systemd watchdogs, container probes and cron alerts (no retries: a probe wants the answer now)."""
    problems: list[str] = []
    report: dict[str, Any] = {}
    for name, driver in _queues(queue_names):
        inner = getattr(driver, "inner", driver)  # no outage retries
        try:
            inner.ping()
            now = inner.now()
            live = [w for w in inner.workers() if now - w.last_seen <= max_stale]
        except PubqError as exc:
            problems.append(f"queue {name}: backend does not answer: {first_line(str(exc), 200)}")
            report[name] = {"backend": False, "live_workers": 0}
            continue
        report[name] = {"backend": True, "live_workers": len(live)}
        if not live:
            problems.append(f"queue {name}: no live worker (no heartbeat in the last {max_stale:g} s)")
    if as_json:
        emit_json({"healthy": not problems, "problems": problems, "queues": report})
    elif problems:
        for line in problems:
            click.echo(f"Error: {line}", err=True)
    else:
        total = sum(q["live_workers"] for q in report.values())
        click.echo(f"OK: {len(report)} queue{'s' if len(report) != 1 else ''}, {total} live "
                   f"worker{'s' if total != 1 else ''}.")
    return 1 if problems else 0


# -- pubq metrics serve ---------------------------------------------------------------------------------


@click.group("metrics")
def metrics_group() -> None:
    """Prometheus metrics of the queues' backends."""


@metrics_group.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), default=9464, show_default=True)
@click.option("--addr", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--queue", "queue_names", multiple=True, metavar="Q", help="Only this queue (repeatable).")
def metrics_serve(port: int, addr: str, queue_names: tuple[str, ...]) -> None:
    """Serve /metrics: jobs by state, paused flags, workers by state and outcome totals, read from
    the backend at each scrape. Runs until TERM/INT."""
    from prometheus_client import start_http_server

    from ..metrics import exporter_registry

    # Drivers are opened here, once; each scrape (on the server's threads) reads through them.
    pairs = [(name, getattr(d, "inner", d)) for name, d in _queues(queue_names)]

    server, thread = start_http_server(port, addr=addr, registry=exporter_registry(lambda: pairs))
    click.echo(f"Serving metrics on http://{addr}:{port}/metrics")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
