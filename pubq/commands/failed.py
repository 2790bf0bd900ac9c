"""``pubq QUEUE failed list|show|retry|purge``: the failed registry."""

from __future__ import annotations

from typing import Any

import click

from .. import bounds
from ..errors import JobNotFoundError, UsageError
from ..job import peek_name
from .options import HelpGroup, color_option, confirm, console, current_queue, emit_json, json_option, state
from .params import Bounded
from .render import first_line, fmt_time
from .tables import Rows

JOB_ID = Bounded(bounds.JOB_ID, "job id")


def _not_in_registry(queue: Any, ident: int) -> JobNotFoundError:
    """Why an id is not in the registry, when the queue knows better (retried already, still running)."""
    status = queue.driver.status(ident)
    where = "" if status.value in ("done", "failed") else f" (it is {status.value})"
    return JobNotFoundError(f"Job {ident} is not in the failed registry{where}.")


@click.group("failed", cls=HelpGroup)
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
        "cancelled": f.code == "cancelled",
    }


@failed_group.command("list")
@click.option("--limit", type=Bounded(bounds.LIMIT), default=50, show_default=True, help="Entries to show.")
@click.option("--offset", type=Bounded(bounds.OFFSET), default=0, help="Entries to skip (for paging).")
@click.option("--follow-up", is_flag=True, help="List raising afterExec/afterError handlers instead.")
@json_option
@color_option
def failed_list(limit: int, offset: int, follow_up: bool, as_json: bool, color: bool | None) -> None:
    """List the failed registry, newest first.

    One line per job whose last attempt failed: id, job, attempts, error and when. --follow-up lists
    the afterExec/afterError handlers that raised instead (their jobs stayed done or failed).
    """
    queue = current_queue()
    if follow_up:
        items = queue.driver.follow_up_list(offset, limit)
        if as_json:
            emit_json([{"id": f.job_id, "attempt": f.attempt, "event": f.event, "handler": f.handler,
                        "error_class": f.error_class, "message": f.message, "at": f.at} for f in items])
            return
        table = Rows("ID", "Attempt", "Event", "Handler", "Error", "At", text=("Error",))
        for f in items:
            table.add(str(f.job_id), str(f.attempt), f.event, f.handler,
                      f"{f.error_class}: {first_line(f.message, 60)}", fmt_time(f.at))
    else:
        entries = queue.driver.failed_list(offset, limit)
        if as_json:
            emit_json([_failed_dict(f) for f in entries])
            return
        table = Rows("ID", "Job", "Attempts", "Error", "Failed at", text=("Error",))
        for f in entries:
            table.add(str(f.job_id), peek_name(f.payload) or "unknown job", str(f.attempts),
                      f"{f.error_class}: {first_line(f.message, 60)}", fmt_time(f.failed_at))
    con = console(state().use_color(color))
    if not table:
        con.print("No failed jobs." if not follow_up else "No follow-up failures.")
    else:
        table.print(con)


@failed_group.command("show")
@click.argument("job_id", metavar="ID", type=JOB_ID)
@json_option
def failed_show(job_id: int, as_json: bool) -> None:
    """Show one failed job: its error, payload and every attempt's traceback."""
    queue = current_queue()
    ident = job_id
    f = queue.driver.failed_get(ident)
    if f is None:
        raise _not_in_registry(queue, ident)
    data = _failed_dict(f)
    data["traceback"] = f.traceback
    data["payload"] = f.payload.decode("utf-8", errors="replace")
    data["history"] = [{"attempt": a.attempt, "error_class": a.error_class, "message": a.message,
                        "code": a.code, "failed_at": a.failed_at, "traceback": a.traceback} for a in f.history]
    if as_json:
        emit_json(data)
        return
    for key in ("id", "job", "attempts", "error_class", "message", "code"):
        _field(key, data[key])
    _field("pushed_at", fmt_time(f.pushed_at))
    _field("failed_at", fmt_time(f.failed_at))
    if f.unsettled:
        _field("unsettled", "yes (its afterError handlers have not finished)")
    _field("payload", data["payload"])
    if not f.history:  # an entry written before pubq kept attempt histories
        if f.traceback:
            click.echo("traceback:")
            click.echo(_indent(f.traceback))
        return
    for a in f.history:
        code = f" [{a.code}]" if a.code else ""
        click.echo(f"attempt {a.attempt} failed at {fmt_time(a.failed_at)}: {a.error_class}{code}: "
                   f"{first_line(a.message, 200)}")
        if a.traceback:
            click.echo(_indent(a.traceback))


def _field(key: str, value: Any) -> None:
    """``key: value``; an empty value is left out, a multi-line one is indented under its key."""
    text = "" if value is None else str(value)
    if text.strip():
        click.echo(f"{key}: {_indent(text).lstrip()}")


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" if line else "" for line in text.rstrip().splitlines())


class _RetryCommand(click.Command):
    """Usage ``… retry [OPTIONS] ID|--all``: click would print ``[ID]``, hiding that --all replaces it."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [self.options_metavar or "[OPTIONS]", "ID|--all"]


@failed_group.command("retry", cls=_RetryCommand)
@click.argument("job_id", metavar="ID", required=False, type=JOB_ID)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed job (instead of one ID).")
def failed_retry(job_id: int | None, retry_all: bool) -> None:
    """Put failed job ID, or every failed job, back to waiting with fresh attempts."""
    queue = current_queue()
    if retry_all == (job_id is not None):
        raise UsageError("give a job ID or --all (not both)")
    if job_id is not None:
        ident = job_id
        if not queue.driver.requeue_failed(ident):
            raise _not_in_registry(queue, ident)
        click.echo(f"Job {ident} is waiting again.")
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
@click.option("--interactive/--no-interactive", default=True,
              help="Ask before purging (default); --interactive=0 answers yes, as in Yii.")
def failed_purge(assume_yes: bool, interactive: bool) -> None:
    """Delete every entry of the failed registry (failed_total keeps counting)."""
    queue = current_queue()
    if not assume_yes and interactive and not confirm("Are you sure?"):
        return
    n = queue.driver.failed_purge()
    click.echo(f"Purged {n} failed job{'s' if n != 1 else ''}.")
