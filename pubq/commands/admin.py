"""Built-in commands that are not per queue: ``queues``, ``init``, ``db migrate``."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from ..config import DEFAULT_CONFIG_NAME, DEFAULT_DATABASE
from ..errors import PubqError, UsageError
from ..publishing.preset import pipeline_queues
from .options import color_option, console, emit_json, json_option, state
from .publishing_init import create_publishing_files, publishing_next_steps, publishing_section


@click.command("queues")
@json_option
@color_option
def queues_cmd(as_json: bool, color: bool | None) -> None:
    """List configured queues with their driver and counts."""
    from .tables import Rows

    app = state().app
    rows = []
    for name in app.queue_names():
        q = app.queue(name)
        try:
            counts = q.driver.counts().as_dict()
            error = None
        except PubqError as exc:
            counts, error = {}, str(exc)
        rows.append({"queue": name, "driver": q.config.driver, "channel": q.config.channel,
                     "ttr": q.config.ttr, "attempts": q.config.attempts, **counts,
                     **({"error": error} if error else {})})
    if as_json:
        emit_json(rows)
        return
    counts = ("Waiting", "Delayed", "Reserved", "Done", "Failed")
    table = Rows("Queue", "Driver", "Channel", *counts, right=counts)
    for r in rows:
        table.add(r["queue"], r["driver"], r["channel"], *(r.get(k.lower(), "?") for k in counts))
    table.print(console(state().use_color(color)))


@click.command("init")
@click.option("--path", "target", default=DEFAULT_CONFIG_NAME, show_default=True, help="Where to write the config.")
@click.option("--redis", "redis_url", default=None, metavar="URL", help="Use Redis for the queues.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_cmd(target: str, redis_url: str | None, force: bool) -> None:
    """Write a starter config: the four pipeline queues on embedded SQLite (or Redis) and a
    publishing section with a filesystem channel type, so that the first `pubq publish` works."""
    path = Path(target)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to overwrite)")
    data: dict = {"database": DEFAULT_DATABASE}
    if redis_url:
        data["redis"] = redis_url
    data["queues"] = pipeline_queues()
    text = yaml.safe_dump(data, sort_keys=False)
    text += "\n" + publishing_section()
    path.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {path}")
    for created in create_publishing_files(path.parent):
        click.echo(f"Wrote {created}{'/' if created.is_dir() else ''}")
    click.echo("\n".join(publishing_next_steps(path)))


@click.group("db")
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
