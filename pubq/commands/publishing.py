"""Publishing commands: ``publish``, ``task show|trace|retry|sync``, ``outbox flush``, ``demo``.

Attached to the root group by :func:`register`. Read commands take ``--json``; tables are plain
text when colour is off (not a TTY, ``--color=0`` or ``NO_COLOR``). Errors are raised as pubq
errors and rendered once by the root command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .. import bounds
from ..errors import UsageError
from .options import color_option, console, emit_json, json_option, state
from .params import Bounded

TASK_ID = Bounded(bounds.TASK_ID, "task id")


def register(root: click.Group) -> None:
    """Add the publishing commands to the root ``pubq`` group."""
    for command in (publish_cmd, task_group, outbox_group, demo_cmd):
        root.add_command(command)


def _service() -> Any:
    from ..publishing.service import service_for

    return service_for(state().app)


def _pipeline() -> Any:
    from ..publishing.pipeline import pipeline_for

    return pipeline_for(state().app)


def _status(code: int | None) -> str:
    """``3 failed``; ``-`` for none."""
    from ..publishing.vocabulary import AccountStatus

    return f"{code} {AccountStatus.label_of(code)}" if code is not None else "-"


def _console(color: bool | None) -> Any:
    """The shared console; off a terminal, wide enough that ids and µs times are never cut."""
    import sys

    con = console(state().use_color(color))
    if not sys.stdout.isatty():
        con.width = 240
    return con


def _table(*headers: str) -> Any:
    from rich.table import Table

    return Table(*headers, box=None, pad_edge=False, show_edge=False)


def read_request(path: str) -> Any:
    """A request document from a JSON or YAML file (``-`` reads stdin)."""
    from ..config import read_yaml

    try:
        text = click.get_text_stream("stdin").read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    try:
        if path.endswith(".json") or text.lstrip().startswith(("{", "[")):
            return json.loads(text)
        return read_yaml(text)
    except ValueError as exc:
        raise UsageError(f"{path}: invalid JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to read") from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError and friends
        raise UsageError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None


# -- publish -------------------------------------------------------------------------------------


@click.command("publish")
@click.argument("file", metavar="FILE")
@json_option
def publish_cmd(file: str, as_json: bool) -> None:
    """Publish the request in FILE (JSON or YAML; - for stdin): create the task and push copy-asset."""
    from ..publishing.codes import InvalidRequestError
    from ..publishing.vocabulary import OutboxKind, OutboxState

    service = _service()
    try:
        task_id = service.submit(read_request(file))
    except InvalidRequestError as exc:
        raise InvalidRequestError("invalid publish request: " + "; ".join(exc.problems), exc.problems) from None
    shown = service.show(task_id)
    copy = next((o for o in shown["outbox"] if o["kind"] == OutboxKind.JOB), None)
    if as_json:
        emit_json({"task_id": task_id, "uuid": shown["task"]["uuid"],
                   "accounts": [a["account"] for a in shown["accounts"]],
                   "copy_job": {"queue": copy["queue"], "id": copy["job_id"], "state": copy["state"]} if copy else None})
        return
    pushed = (f"{copy['queue']} job {copy['job_id']}" if copy and copy["state"] != OutboxState.PENDING
              else "copy-asset push pending (run `pubq outbox flush`)")
    click.echo(f"Task {task_id} created: {len(shown['accounts'])} account(s), {len(shown['assets'])} asset(s); "
               f"{pushed}.")


# -- task ------------------------------------------------------------------------------------------


@click.group("task")
def task_group() -> None:
    """Inspect and operate on publish tasks."""


@task_group.command("show")
@click.argument("task_id", type=TASK_ID, metavar="ID")
@json_option
@color_option
def task_show(task_id: int, as_json: bool, color: bool | None) -> None:
    """Accounts with their status, assets and the publish log of task ID."""
    data = _service().show(task_id)
    if as_json:
        emit_json(data)
        return
    render_show(_console(color), data)


def render_show(con: Any, data: dict[str, Any]) -> None:
    t = data["task"]
    con.print(f"Task {t['id']}  uuid {t['uuid']}  source {t['source']}  channel type {t['channel_type']}  "
              f"created {t['created_at']}")
    if t["title"]:
        con.print(f"Title: {t['title']}")
    accounts = _table("Account", "Status", "Item", "Item created at", "Code", "Message")
    for a in data["accounts"]:
        accounts.add_row(a["account"], _status(a["status"]), a["item_id"] or "-", a["item_created_at"] or "-",
                         str(a["code"] or "-"), a["message"] or "")
    con.print()
    con.print(accounts)
    assets = _table("#", "Type", "Enabled", "Relative path", "Size", "SHA-256")
    for a in data["assets"]:
        assets.add_row(str(a["position"]), a["type"], "yes" if a["enabled"] else "no", a["relative_path"] or "-",
                       str(a["size"] if a["size"] is not None else "-"), (a["sha256"] or "-")[:16])
    con.print()
    con.print(assets)
    if data["pub_log"]:
        accounts_by_id = {a["channel_app_task_id"]: a["account"] for a in data["accounts"]}
        log = _table("Time (UTC)", "Account", "Status", "Code", "Message")
        for p in data["pub_log"]:
            log.add_row(p["at"], accounts_by_id.get(p["channel_app_task_id"], "(task)"), p["status"],
                        str(p["code"]), p["message"])
        con.print()
        con.print(log)


@task_group.command("trace")
@click.argument("task_id", type=TASK_ID, metavar="ID")
@json_option
@color_option
def task_trace(task_id: int, as_json: bool, color: bool | None) -> None:
    """Replay the timeline of task ID: every transition (accepted or rejected) and step, in order."""
    from ..publishing.vocabulary import EventKind

    events = _service().trace(task_id)
    if as_json:
        emit_json(events)
        return
    table = _table("Time (UTC)", "Account", "Event", "Status", "Reason", "Code", "Job")
    for e in events:
        if e["kind"] in (EventKind.STEP, EventKind.ATTEMPT_FAILED):
            change = _status(e["to"]) if e["to"] is not None else ""
        else:
            change = f"{_status(e['from'])} → {_status(e['to'])}"
        kind = "REJECTED" if e["kind"] == EventKind.REJECTED else e["kind"]
        job = f"{e['queue']}[{e['job_id']}] #{e['attempt']}" if e["job_id"] is not None else (e["queue"] or "")
        table.add_row(e["at"], e["account"] or "(task)", kind, change, e["reason"], str(e["code"] or ""), job)
    _console(color).print(table)


@task_group.command("retry")
@click.argument("task_id", type=TASK_ID, metavar="ID")
@click.option("--account", default=None, metavar="A", help="Retry only this account.")
@json_option
def task_retry(task_id: int, account: str | None, as_json: bool) -> None:
    """Move failed accounts (3) back to pending (1) and re-push their earliest unfinished step."""
    result = _service().retry(task_id, account)
    if as_json:
        emit_json({"task_id": result.task_id, "retried": list(result.retried), "step": result.step,
                   "job_ids": list(result.job_ids),
                   "skipped": [{"account": a, "status": s} for a, s in result.skipped]})
        return
    if not result.retried:
        states = ", ".join(f"{a} is {s}" for a, s in result.skipped) or "no accounts"
        click.echo(f"Nothing to retry for task {task_id} ({states}).")
        return
    click.echo(f"Task {task_id}: retrying {', '.join(result.retried)} from the {result.step} step "
               f"(job{'s' if len(result.job_ids) != 1 else ''} {', '.join(map(str, result.job_ids)) or 'pending'}).")


@task_group.command("sync")
@click.argument("task_id", type=TASK_ID, metavar="ID", required=False)
@json_option
def task_sync(task_id: int | None, as_json: bool) -> None:
    """Poll the platforms for accounts under review (4) and record published (5) / rejected (6)."""
    changes = _pipeline().sync_reviews(task_id)
    if as_json:
        emit_json(changes)
        return
    if not changes:
        click.echo("No review results yet.")
    for c in changes:
        click.echo(f"channel app task {c['channel_app_task_id']} ({c['account']}): {_status(c['status'])}")


# -- outbox ------------------------------------------------------------------------------------------


@click.group("outbox")
def outbox_group() -> None:
    """Follow-up jobs and callbacks recorded in publish state."""


@outbox_group.command("flush")
@json_option
def outbox_flush(as_json: bool) -> None:
    """Push outbox rows whose push failed or never happened (e.g. while Redis was down)."""
    pushed, left = _service().flush_outbox()
    if as_json:
        emit_json({"pushed": pushed, "pending": left})
        return
    click.echo(f"Pushed {pushed} outbox row(s); {left} still pending.")


# -- demo ----------------------------------------------------------------------------------------------


@click.command("demo")
@click.option("--dir", "directory", default="pubq-demo", show_default=True, metavar="DIR",
              help="Everything the demo writes goes here (config, state, files).")
@click.option("--accounts", type=click.IntRange(1, 20), default=3, show_default=True, help="How many accounts.")
@color_option
def demo_cmd(directory: str, accounts: int, color: bool | None) -> None:
    """Publish one article to several accounts through the filesystem adapter, one configured to
    fail, drain the queues and show the result. Writes only inside DIR; can be run again."""
    from ..publishing.vocabulary import AccountStatus
    from .publishing_demo import run_demo

    data = run_demo(Path(directory), accounts=accounts)
    con = _console(color)
    render_show(con, data["show"])
    on_platform = (AccountStatus.UNDER_REVIEW, AccountStatus.PUBLISHED)
    ok = [a for a in data["show"]["accounts"] if a["status"] in on_platform]
    con.print()
    con.print(f"Published to {len(ok)} of {len(data['show']['accounts'])} account(s); "
              f"{data['failing']} fails on purpose (fail_accounts in {data['config']}).")
    con.print(f"Timeline: pubq --config {data['config']} task trace {data['task_id']}")
