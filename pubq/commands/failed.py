"""``pubq QUEUE failed list|show|retry|purge``: the failed registry."""

from __future__ import annotations

from typing import Any

import click

from .. import bounds
from ..errors import JobNotFoundError, UsageError
from ..job import peek_name
from .options import color_option, confirm, console, current_queue, emit_json, json_option, state
from .params import Bounded
from .render import first_line, fmt_time

JOB_ID = Bounded(bounds.JOB_ID, "job id")


@click.group("failed")
def failed_group() -> None:
    """The failed registry: list, show, retry, purge."""


def _failed_dict(f: Any) -> dict[str, Any]:
    return {
        "id": f.job_id,
        "job": peek_name(f.payload) or "unknown job",
        "attempts": f.attempts,
        "error_class": f.error_class,
        "message": f.message,
        "code": f.code,
        "pushed_at": f.pushed_at,
        "failed_at": f.failed_at,
        "unsettled": f.unsettled,
    }


@failed_group.command("list")
@click.option("--limit", type=Bounded(bounds.LIMIT), default=50, show_default=True)
@click.option("--offset", type=Bounded(bounds.OFFSET), default=0)
@click.option("--follow-up", is_flag=True, help="List raising afterExec/afterError handlers instead.")
@json_option
@color_option
def failed_list(limit: int, offset: int, follow_up: bool, as_json: bool, color: bool | None) -> None:
    """Newest first."""
    from rich.table import Table

    queue = current_queue()
    if follow_up:
        items = queue.driver.follow_up_list(offset, limit)
        if as_json:
            emit_json([{"id": f.job_id, "attempt": f.attempt, "event": f.event, "handler": f.handler,
                        "error_class": f.error_class, "message": f.message, "at": f.at} for f in items])
            return
        table = Table("ID", "Attempt", "Event", "Handler", "Error", "At", box=None, pad_edge=False)
        for f in items:
            table.add_row(str(f.job_id), str(f.attempt), f.event, f.handler,
                          f"{f.error_class}: {first_line(f.message, 60)}", fmt_time(f.at))
    else:
        entries = queue.driver.failed_list(offset, limit)
        if as_json:
            emit_json([_failed_dict(f) for f in entries])
            return
        table = Table("ID", "Job", "Attempts", "Error", "Failed at", box=None, pad_edge=False)
        for f in entries:
            table.add_row(str(f.job_id), peek_name(f.payload) or "unknown job", str(f.attempts),
                          f"{f.error_class}: {first_line(f.message, 60)}", fmt_time(f.failed_at))
    con = console(state().use_color(color))
    if table.row_count == 0:
        con.print("No failed jobs." if not follow_up else "No follow-up failures.")
    else:
        con.print(table)


@failed_group.command("show")
@click.argument("job_id", metavar="ID", type=JOB_ID)
@json_option
def failed_show(job_id: int, as_json: bool) -> None:
    """One failed job with its traceback and payload."""
    f = current_queue().driver.failed_get(job_id)
    if f is None:
        raise JobNotFoundError("The job is not found.")
    data = _failed_dict(f)
    data["traceback"] = f.traceback
    data["payload"] = f.payload.decode("utf-8", errors="replace")
    if as_json:
        emit_json(data)
        return
    for key in ("id", "job", "attempts", "error_class", "message", "code"):
        click.echo(f"{key}: {data[key]}")
    click.echo(f"pushed_at: {fmt_time(f.pushed_at)}")
    click.echo(f"failed_at: {fmt_time(f.failed_at)}")
    click.echo(f"payload: {data['payload']}")
    if f.traceback:
        click.echo("traceback:")
        click.echo(f.traceback.rstrip())


@failed_group.command("retry")
@click.argument("job_id", metavar="ID", required=False, type=JOB_ID)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed job.")
def failed_retry(job_id: int | None, retry_all: bool) -> None:
    """Put failed job ID (or --all) back to waiting with fresh attempts."""
    queue = current_queue()
    if retry_all == (job_id is not None):
        raise UsageError("give a job ID or --all (not both)")
    if job_id is not None:
        if not queue.driver.requeue_failed(job_id):
            raise JobNotFoundError("The job is not found.")
        click.echo(f"Job {job_id} is waiting again.")
        return
    count = 0
    while True:
        batch = queue.driver.failed_list(0, 500)
        if not batch:
            break
        moved = sum(1 for f in batch if queue.driver.requeue_failed(f.job_id))
        count += moved
        if moved == 0:
            break
    click.echo(f"{count} job{'s' if count != 1 else ''} waiting again.")


@failed_group.command("purge")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask.")
@click.option("--interactive/--no-interactive", default=True)
def failed_purge(assume_yes: bool, interactive: bool) -> None:
    """Delete every entry of the failed registry."""
    queue = current_queue()
    if not assume_yes and interactive and not confirm("Are you sure?"):
        return
    n = queue.driver.failed_purge()
    click.echo(f"Purged {n} failed job{'s' if n != 1 else ''}.")
