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
from .publishing_init import create_publishing_files, publishing_next_steps, publishing_section


@click.command("queues")
@json_option
@color_option
def queues_cmd(as_json: bool, color: bool | None) -> None:
    """List the configured queues with their driver and counts.

    Every queue is asked at once, each within the outage budget (give_up_after); a queue that cannot
    be reached shows ``?`` and its reason on stderr, and the command exits 1.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .tables import Rows

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
        counts = ("Waiting", "Delayed", "Reserved", "Done", "Failed")
        table = Rows("Queue", "Driver", "Channel", *counts, right=counts)
        for r in rows:
            table.add(r["queue"], r["driver"], r["channel"], *(r.get(k.lower(), "?") for k in counts))
        table.print(console(state().use_color(color)))
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
    from ..job import job_fields
    from .tables import Rows

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
    table = Rows("Job", "Arguments", "Class", text=("Arguments",))
    for r in rows:
        args = ", ".join(f"{f['name']}: {f['type']}" + ("" if f["required"] else f" = {f['default']}")
                         for f in r["fields"])
        table.add(r["name"], args or "-", r["class"])
    table.print(console(state().use_color(color)))


#: The example job module ``pubq init`` writes beside the config (never over an existing file).
EXAMPLE_JOBS = '''"""Your jobs: dataclass subclasses of pubq.Job whose fields are the job's JSON arguments.

This folder is on the import path because pubq.yaml is in it, so this module is ``myapp.jobs``
(listed under ``jobs:`` there). ``pubq jobs`` shows what can be pushed.
"""

from dataclasses import dataclass

from pubq import Job


@dataclass
class HelloJob(Job):
    """Say hello (the first line of a job's docstring is its summary in ``pubq jobs``)."""

    name = "myapp.Hello"  # the name you push it by (default: module.Class)

    who: str = "world"

    def execute(self, ctx):  # ctx.queue, ctx.app, ctx.job_id, ctx.attempt
        print(f"Hello, {self.who}! (job {ctx.job_id}, attempt {ctx.attempt})", flush=True)
'''

_CONFIG_HEAD = """\
# pubq.yaml, written by `pubq init`. pubq checks every key when it loads this file: an unknown key or
# a bad value stops it with one line naming the key. Found as --config FILE, else $PUBQ_CONFIG, else
# ./pubq.yaml.

# Where queue state lives (driver: db) and publish state. postgresql://… and mysql://… work too.
database: {database}
# With a Redis URL here, queues default to driver: redis.
{redis}

# Modules whose pubq.Job classes can be pushed by name. The folder holding this file is on the
# import path, so myapp/jobs.py beside it is `myapp.jobs`. `pubq jobs` lists what is registered.
{jobs}

# The system log: each job's lines and the traceback of every failed attempt.
log: {{file: pubq.log, level: INFO, format: text}}

# Seconds a one-shot command (info, push, run …) keeps retrying a backend that is down.
give_up_after: 10

queues:
  # Your queue: `pubq default push myapp.Hello --args '{{"who": "world"}}'`, then `pubq default listen -v`.
  default:
    ttr: 300                      # seconds a job may run before it is killed (isolate) or reclaimed
    attempts: 3                   # runs in all, the first included
    retry: {{backoff: exponential, delay: 5, max_delay: 600, jitter: true}}
    # on:                         # handlers, "package.module:Class.method", called in order
    #   afterExec: myapp.hooks:Notify.after_exec
    #   afterError: myapp.hooks:Notify.after_error

  # The publishing pipeline's queues (copy-asset → upload-asset → pub-article → source-callback);
  # `pubq demo` shows them at work.
{pipeline}"""


def starter_config(redis_url: str | None, with_example: bool) -> str:
    """The commented text of the file ``pubq init`` writes (it loads as a valid config)."""
    pipeline = yaml.safe_dump(pipeline_queues(), sort_keys=False, width=200)
    text = _CONFIG_HEAD.format(
        database=DEFAULT_DATABASE,
        redis=f"redis: {redis_url}" if redis_url else "# redis: redis://127.0.0.1:6379/0",
        jobs="jobs:\n  - myapp.jobs" if with_example else "# jobs:\n#   - myapp.jobs",
        pipeline="".join(f"  {line}\n" for line in pipeline.splitlines()),
    )
    section = publishing_section()
    return text + (f"\n{section.rstrip()}\n" if section else "")


@click.command("init")
@click.option("--path", "target", default=DEFAULT_CONFIG_NAME, show_default=True, help="Where to write the config.")
@click.option("--redis", "redis_url", default=None, metavar="URL", help="Use Redis for the queues.")
@click.option("--example/--no-example", default=True, show_default=True,
              help="Also write myapp/jobs.py, an example job, beside the config (kept if it exists).")
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
def init_cmd(target: str, redis_url: str | None, example: bool, force: bool) -> None:
    """Write a commented starter config (and an example job), then say what to run next.

    The config has a queue for your jobs (default) and the four publishing queues, on embedded
    SQLite unless --redis is given.
    """
    path = Path(target)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to overwrite)")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(f"--redis must be a redis://, rediss:// or unix:// URL (got {redis_url!r})")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_config(redis_url, example), encoding="utf-8")
    wrote = [str(path)]
    if example:
        module = path.parent / "myapp" / "jobs.py"
        if not module.exists():
            module.parent.mkdir(exist_ok=True)
            module.write_text(EXAMPLE_JOBS, encoding="utf-8")
            wrote.append(f"{module} (an example job)")
    publishing_files = [f"{p}{'/' if p.is_dir() else ''}" for p in create_publishing_files(path.parent)]
    click.echo(f"Wrote {' and '.join(wrote)}.")
    pubq = "pubq" if path.resolve() == Path(DEFAULT_CONFIG_NAME).resolve() else f"pubq --config {path}"
    steps = [(f"{pubq} jobs", "the jobs you can push" + (", myapp.Hello among them" if example else ""))]
    if example:
        steps += [(f"{pubq} default push myapp.Hello --args '{{\"who\": \"world\"}}'", "queue a job"),
                  (f"{pubq} default listen -v", "run it, and every job pushed after it (Ctrl-C stops)")]
    else:
        steps += [(f"{pubq} default listen -v", "work the default queue (Ctrl-C stops)")]
    width = max(len(cmd) for cmd, _ in steps)
    click.echo("Next steps:")
    for cmd, why in steps:
        click.echo(f"  {cmd.ljust(width)}   # {why}")
    click.echo(f"Then write your own jobs{' in myapp/jobs.py' if example else ''} and list their modules "
               f"under jobs: in {path.name}; the comments there say what each setting does.")
    if publishing_files:
        click.echo(f"For a first publish it also wrote {' and '.join(publishing_files)}.")
    click.echo("\n".join(publishing_next_steps(path)))


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
