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
from ..errors import PubqError, UsageError
from .options import color_option, console, emit_json, json_option, state
from .params import Bounded
from .tables import Rows

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
    return console(state().use_color(color))


def account_summary(accounts: list[dict[str, Any]]) -> str:
    """``3 accounts: 2 under review, 1 failed``, in the order of the statuses, by their labels."""
    from collections import Counter

    from ..publishing.vocabulary import AccountStatus

    counts = Counter(a["status"] for a in accounts)
    parts = [f"{n} {AccountStatus.label_of(code)}" for code, n in sorted(counts.items())]
    total = len(accounts)
    return f"{total} account{'s' if total != 1 else ''}: {', '.join(parts) or 'none'}"


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
@click.argument("file", metavar="[FILE]", required=False)
@click.option("--wait", is_flag=True,
              help="Watch every account until none has a step left (a live table on a terminal). "
                   "Workers do the steps: keep them running, e.g. `pubq copy-asset listen` in other terminals.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600, show_default=True,
              metavar="S", help="With --wait: give up after S seconds (exit 1; the task goes on).")
@click.option("--example", is_flag=True, help="Print a request that works with this config (JSON), then exit.")
@click.option("--channel-type", metavar="CODE", default=None,
              help="With --example: the channel type (default: the first one configured).")
@click.option("--schema", is_flag=True, help="Print the JSON Schema of a request, then exit.")
@json_option
@color_option
def publish_cmd(file: str | None, wait: bool, timeout: float, example: bool, channel_type: str | None,
                schema: bool, as_json: bool, color: bool | None) -> None:
    """Publish a request: create its task, push copy-asset.

    FILE is the request, JSON or YAML (- reads stdin).

    \b
    A request names a channel type, its accounts and the assets:
      pubq publish --example > request.json    a request that works with this config
      pubq publish request.json --wait         publish it, watch each account
      pubq publish --schema                    the format, as a JSON Schema
    """
    from ..publishing.codes import InvalidRequestError
    from ..publishing.vocabulary import OutboxKind, OutboxState

    if schema or example:
        if file is not None or wait:
            raise UsageError("--schema and --example print a document; they take no FILE and no --wait")
        _print_schema() if schema else _print_example(channel_type)
        return
    if channel_type is not None:
        raise UsageError("--channel-type goes with --example")
    if file is None:
        raise UsageError("give the request FILE (start from `pubq publish --example`)")
    service = _service()
    try:
        task_id = service.submit(read_request(file))
    except InvalidRequestError as exc:
        raise InvalidRequestError("invalid publish request: " + "; ".join(exc.problems), exc.problems) from None
    shown = service.show(task_id)
    copy = next((o for o in shown["outbox"] if o["kind"] == OutboxKind.JOB), None)
    if not as_json:
        pushed = (f"{copy['queue']} job {copy['job_id']}" if copy and copy["state"] != OutboxState.PENDING
                  else "copy-asset push pending (run `pubq outbox flush`)")
        click.echo(f"Task {task_id} created: {len(shown['accounts'])} account(s), {len(shown['assets'])} asset(s); "
                   f"{pushed}.")
    accounts = shown["accounts"]
    if wait:
        accounts = _wait(service, task_id, timeout, as_json, color)
    if as_json:
        emit_json({"task_id": task_id, "uuid": shown["task"]["uuid"],
                   "accounts": [a["account"] for a in accounts] if not wait else accounts,
                   "copy_job": {"queue": copy["queue"], "id": copy["job_id"], "state": copy["state"]} if copy else None})
        return
    for line in _next_steps(service, task_id, accounts, shown["task"]["callback_url"], waited=wait):
        click.echo(line)


def _pubq() -> str:
    """How the user runs pubq here: with ``--config`` when they gave one."""
    import shlex

    path = state().config_path
    return "pubq" if path is None else f"pubq --config {shlex.quote(path)}"


def _pending_queues(service: Any, with_callback: bool) -> list[str]:
    """The pipeline queues whose jobs a worker must run (not ``sync``), in pipeline order."""
    names = service.settings.queues
    wanted = [names.copy, names.upload, names.article] + ([names.callback] if with_callback else [])
    queues = state().app.config.queues
    return [q for q in wanted if q in queues and queues[q].driver != "sync"]


def _workers_hint(service: Any, with_callback: bool) -> str:
    queues = _pending_queues(service, with_callback)
    if not queues:
        return "The queues are sync: the pipeline runs inside `pubq publish`."
    return (f"Waiting for workers: keep `{_pubq()} QUEUE listen` running for {', '.join(queues)} "
            f"(each in its own terminal), or run them once: {' && '.join(f'{_pubq()} {q} run' for q in queues)}. "
            "Ctrl-C stops watching; the task goes on.")


def _wait(service: Any, task_id: int, timeout: float, as_json: bool, color: bool | None) -> list[dict[str, Any]]:
    import io

    from rich.console import Console

    from .publish_watch import watch

    con = Console(file=io.StringIO()) if as_json else _console(color)
    task = service.show(task_id)["task"]
    try:
        return watch(lambda: service.accounts_view(task_id), con, summary=account_summary,
                     waiting_hint=_workers_hint(service, bool(task["callback_url"])), timeout=timeout,
                     show=f"{_pubq()} task show {task_id}")
    except KeyboardInterrupt:
        click.echo(f"Stopped watching; the task goes on: {_pubq()} task show {task_id}", err=True)
        raise


def _next_steps(service: Any, task_id: int, accounts: list[dict[str, Any]], callback_url: str | None, *,
                waited: bool) -> list[str]:
    """What to run after ``publish``: the workers (unless the queues ran inline), then where to look."""
    from .publish_watch import settled

    pubq = _pubq()
    lines = []
    queues = _pending_queues(service, bool(callback_url))
    if settled(accounts) == len(accounts):
        lines.append(f"{account_summary(accounts)}.")
    elif queues:
        lines += ["Next, the workers run its steps: keep `pubq QUEUE listen` running for each queue, or run them once:",
                  "  " + " && ".join(f"{pubq} {q} run" for q in queues)]
    lines += [
        "Then:" if len(lines) > 1 else "See:",
        f"  {pubq} task show {task_id}     each account's status{'' if waited else ' (publish with --wait to watch it)'}",
        f"  {pubq} task trace {task_id}    every step, in order",
        f"  {pubq} task sync {task_id}     ask the platform for review results (under review → published or rejected)",
    ]
    return lines


def _print_schema() -> None:
    from ..publishing.request_doc import request_schema

    emit_json(request_schema())


def _print_example(channel_type: str | None) -> None:
    from ..publishing.request_doc import example_request
    from ..publishing.settings import load_settings

    config = state().config
    try:
        settings = load_settings(config.publishing, config.base_dir)
    except PubqError as exc:
        raise type(exc)(f"{config.source}: {exc}") from None
    doc, notes = example_request(settings, channel_type)
    emit_json(doc)
    for note in notes:
        click.echo(f"Note: {note}", err=True)


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
    con.print(f"Task {t['id']}  uuid {t['uuid']}")
    con.print(f"Source {t['source']}  channel type {t['channel_type']}  created {t['created_at']}")
    if t["title"]:
        con.print(f"Title: {t['title']}")
    # An account's error is the newest error row of the publish log below, so the table keeps to
    # what fits an 80-column terminal with every id and time whole.
    accounts = Rows("Account", "Status", "Item", "Item created at (UTC)")
    for a in data["accounts"]:
        accounts.add(a["account"], _status(a["status"]), a["item_id"] or "-", a["item_created_at"] or "-")
    con.print()
    accounts.print(con)
    con.print(account_summary(data["accounts"]) + ".")
    assets = Rows("#", "Type", "Relative path", "Size", "SHA-256", right=("#", "Size"))
    for a in data["assets"]:
        assets.add(a["position"], a["type"] if a["enabled"] else f"{a['type']} (disabled)",
                   a["relative_path"] or "-", a["size"] if a["size"] is not None else "-",
                   (a["sha256"] or "-")[:12])
    con.print()
    assets.print(con)
    if data["pub_log"]:
        accounts_by_id = {a["channel_app_task_id"]: a["account"] for a in data["accounts"]}
        log = Rows("Time (UTC)", "Account", "Status", "Code", "Message", text=("Message",))
        for p in data["pub_log"]:
            log.add(p["at"], accounts_by_id.get(p["channel_app_task_id"], "(task)"), p["status"], p["code"],
                    p["message"])
        con.print()
        con.print("Publish log")
        log.print(con)


@task_group.command("trace")
@click.argument("task_id", type=TASK_ID, metavar="ID")
@json_option
@color_option
def task_trace(task_id: int, as_json: bool, color: bool | None) -> None:
    """Replay the timeline of task ID, in order.

    Every transition (accepted or rejected) and step, with µs times."""
    from ..publishing.vocabulary import EventKind

    events = _service().trace(task_id)
    if as_json:
        emit_json(events)
        return
    table = Rows("Time (UTC)", "Account", "Event", "Status", "Reason", "Code", "Job", text=("Reason",))
    for e in events:
        if e["kind"] in (EventKind.STEP, EventKind.ATTEMPT_FAILED):
            change = _status(e["to"]) if e["to"] is not None else ""
        else:
            change = f"{_status(e['from'])} → {_status(e['to'])}"
        kind = "REJECTED" if e["kind"] == EventKind.REJECTED else e["kind"]
        job = f"{e['queue']}[{e['job_id']}] #{e['attempt']}" if e["job_id"] is not None else (e["queue"] or "")
        table.add(e["at"], e["account"] or "(task)", kind, change, e["reason"], e["code"] or "", job)
    table.print(_console(color))


@task_group.command("retry")
@click.argument("task_id", type=TASK_ID, metavar="ID")
@click.option("--account", default=None, metavar="A", help="Retry only this account.")
@json_option
def task_retry(task_id: int, account: str | None, as_json: bool) -> None:
    """Retry the failed accounts of task ID.

    Moves failed accounts (3) back to pending (1) and re-pushes their earliest unfinished step."""
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
    """Ask the platforms for review results.

    Accounts under review (4) become published (5) or rejected (6). Review results arrive only this way: the platform decides, and each `pubq task sync` asks its
    adapter about every account under review (of task ID, or of every task). Run it again later, or
    from cron to keep statuses current."""
    from ..publishing.vocabulary import AccountStatus

    changes = _pipeline().sync_reviews(task_id)
    if as_json:
        emit_json(changes)
        return
    before = AccountStatus.UNDER_REVIEW.label
    for c in changes:
        click.echo(f"{c['account']} (channel app task {c['channel_app_task_id']}): "
                   f"{before} → {AccountStatus.label_of(c['status'])}")
    waiting = len(_service().records.under_review(task_id))
    scope = f"of task {task_id} " if task_id is not None else ""
    if waiting:
        click.echo(f"{waiting} account{'s' if waiting != 1 else ''} {scope}still {before}: the platform has not "
                   f"decided yet. Results arrive when `{_pubq()} task sync` asks again (run it from cron to keep "
                   "statuses current).")
    elif not changes:
        click.echo(f"No account {scope}is {before}: there is nothing to ask the platform.")


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
    """Publish a demo article to several accounts (no server).

    Through the filesystem adapter on embedded SQLite, one account configured to fail; drains the
    queues and shows the result. Writes only inside DIR; can be run again."""
    from .publishing_demo import run_demo

    data = run_demo(Path(directory), accounts=accounts)
    con = _console(color)
    render_show(con, data["show"])
    task_id, config = data["task_id"], data["config"]
    con.print()
    con.print(f"{data['failing']} fails on purpose (fail_accounts in {config}).")
    con.print(f"Under review: the item is on the platform, which has not decided yet; "
              f"`pubq --config {config} task sync {task_id}` asks it.")
    con.print(f"Timeline: pubq --config {config} task trace {task_id}")
