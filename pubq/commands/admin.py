"""Built-in commands that are not per queue: ``queues``, ``init``, ``db migrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from ..config import DEFAULT_CONFIG_NAME, DEFAULT_DATABASE
from ..errors import PubqError, UsageError
from ..publishing.preset import pipeline_queues
from .options import HelpGroup, color_option, console, emit_json, json_option, state


@click.command("queues")
@json_option
@color_option
def queues_cmd(as_json: bool, color: bool | None) -> None:
    """List the configured queues with their driver and counts.

    Every queue is asked at once, each within the outage budget (give_up_after); a queue that cannot
    be reached shows ``?`` and its reason on stderr, and the command exits 1.
    """
    from concurrent.futures import ThreadPoolExecutor

    from rich.table import Table

    app = state().app
    queues = [app.queue(name) for name in app.queue_names()]  # built here: App is not thread-safe

    def ask(q: Any) -> tuple[dict[str, int], str | None]:
        try:
            return q.driver.counts().as_dict(), None
        except PubqError as exc:
            return {}, str(exc)

    with ThreadPoolExecutor(max_workers=min(len(queues), 16) or 1) as pool:
        answers = list(pool.map(ask, queues))
    rows = []
    for q, (counts, error) in zip(queues, answers, strict=True):
        rows.append({"queue": q.name, "driver": q.config.driver, "channel": q.config.channel,
                     "ttr": q.config.ttr, "attempts": q.config.attempts, **counts,
                     **({"error": error} if error else {})})
    if as_json:
        emit_json(rows)
    else:
        table = Table("Queue", "Driver", "Channel", "Waiting", "Delayed", "Reserved", "Done", "Failed",
                      box=None, pad_edge=False)
        for r in rows:
            table.add_row(r["queue"], r["driver"], r["channel"],
                          *(str(r.get(k, "?")) for k in ("waiting", "delayed", "reserved", "done", "failed")))
        console(state().use_color(color)).print(table)
    failed = [r["error"] for r in rows if "error" in r]
    for error in failed:
        click.echo(f"Error: {error}", err=True)
    if failed:
        raise click.exceptions.Exit(1)


@click.command("jobs")
@json_option
@color_option
def jobs_cmd(as_json: bool, color: bool | None) -> None:
    """List the registered jobs: the names push takes, with their arguments.

    Jobs come from pubq itself and from the modules under ``jobs:`` in the config.
    """
    from rich.table import Table

    from ..job import job_fields

    registry = state().app.registry
    rows = []
    for name in registry.names():
        cls = registry.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        summary = doc[0] if doc and not doc[0].startswith(f"{cls.__name__}(") else ""
        rows.append({"name": name, "class": f"{cls.__module__}:{cls.__qualname__}", "summary": summary,
                     "fields": [{"name": f.name, "type": f.type, "required": f.required,
                                 **({} if f.required else {"default": f.default})} for f in job_fields(cls)]})
    if as_json:
        emit_json(rows)
        return
    table = Table("Job", "Arguments", "Class", box=None, pad_edge=False)
    for r in rows:
        args = ", ".join(f"{f['name']}: {f['type']}" + ("" if f["required"] else f" = {f['default']}")
                         for f in r["fields"])
        table.add_row(r["name"], args or "-", r["class"])
    console(state().use_color(color)).print(table)


@click.command("init")
@click.option("--path", "target", default=DEFAULT_CONFIG_NAME, show_default=True, help="Where to write the config.")
@click.option("--redis", "redis_url", default=None, metavar="URL", help="Use Redis for the queues.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_cmd(target: str, redis_url: str | None, force: bool) -> None:
    """Write a starter config: the four pipeline queues on embedded SQLite (or Redis)."""
    path = Path(target)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to overwrite)")
    data: dict = {"database": DEFAULT_DATABASE}
    if redis_url:
        data["redis"] = redis_url
    data["queues"] = pipeline_queues()
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    click.echo(f"Wrote {path}")


@click.group("db", cls=HelpGroup)
def db_group() -> None:
    """Database schema of the db queue driver and of publish state."""


@db_group.command("migrate")
def db_migrate() -> None:
    """Create or upgrade the schema (idempotent; never drops data)."""
    app = state().app
    done = []
    for name in app.queue_names():
        q = app.queue(name)
        migrate = getattr(q.driver, "migrate", None)
        if callable(migrate):
            migrate()
            done.append(name)
    try:
        from ..publishing.service import migrate_publishing  # type: ignore[attr-defined]
    except ImportError:
        migrate_publishing = None
    if migrate_publishing is not None:
        migrate_publishing(app)
        done.append("publishing")
    click.echo("Schema is up to date" + (f" ({', '.join(done)})." if done else "."))
