"""``pubq QUEUE run|listen|info|clear|remove|push``: written once for every driver."""

from __future__ import annotations

import faulthandler
import json
import re
import sys
import time
from typing import Any

import click

from .. import bounds
from ..config import QueueConfig
from ..errors import JobNotFoundError, UsageError
from .failed import failed_group
from .ops import add_queue_commands
from .options import HelpGroup, color_option, confirm, console, current_queue, emit_json, json_option, state
from .params import Bounded
from .render import info_text
from .worker_metrics import attach_worker_metrics, worker_metrics_option

_NUMBER = re.compile(r"^-?\d+(\.\d*)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")


def _configure_worker_logging() -> None:
    from ..logs import configure_logging

    configure_logging(state().config.log)


def _worker_options(fn: Any) -> Any:
    fn = click.option("--memory-limit", type=Bounded(bounds.MEMORY_LIMIT), metavar="MIB",
                      help="Stop after a job once the worker's RSS exceeds MIB.")(fn)
    fn = click.option("--max-seconds", type=Bounded(bounds.MAX_SECONDS), metavar="S",
                      help="Stop after S seconds (the running job finishes).")(fn)
    fn = click.option("--max-jobs", type=Bounded(bounds.MAX_JOBS), metavar="N", help="Stop after N jobs.")(fn)
    fn = click.option("--concurrency", "-c", type=Bounded(bounds.CONCURRENCY), metavar="N",
                      help="Run up to N jobs at once: threads (async jobs on one event loop) with --no-isolate, "
                           "N children with --isolate (default: the queue's concurrency, 1).")(fn)
    fn = color_option(fn)
    fn = worker_metrics_option(fn)
    fn = click.option("--isolate/--no-isolate", default=True,
                      help="Run each job in a forked child killed at its TTR (default on; --isolate=0 too).")(fn)
    fn = click.option("-v", "--verbose/--no-verbose", default=False, help="Print Yii-style job lines.")(fn)
    return fn


def _start_worker(verbose: bool, isolate: bool, color: bool | None, max_jobs: int | None,
                  max_seconds: float | None, memory_limit: int | None, metrics_port: int | None = None,
                  metrics_textfile: str | None = None, concurrency: int | None = None) -> Any:
    from ..behaviors.verbose import VerboseBehavior
    from ..worker import Worker

    _configure_worker_logging()
    _crash_tracebacks()
    queue = current_queue()
    attach_worker_metrics(queue, metrics_port, metrics_textfile)
    if not verbose:
        return Worker(queue, isolate=isolate, max_jobs=max_jobs, max_seconds=max_seconds, concurrency=concurrency,
                      memory_limit_mib=memory_limit, on_put_back=_put_back_notice)
    # Attached last, so the Done/Error line sees which afterExec/afterError handlers raised.
    console = VerboseBehavior(sys.stdout, color=state().use_color(color))
    console.attach(queue)
    return Worker(queue, isolate=isolate, max_jobs=max_jobs, max_seconds=max_seconds, concurrency=concurrency,
                  memory_limit_mib=memory_limit, on_backend_lost=console.backend_lost,
                  on_backend_back=console.backend_back, on_put_back=console.put_back)


def _crash_tracebacks() -> None:
    """A worker that dies on a fatal signal (a C extension's crash) prints every thread's Python stack
    on stderr first, so the crash can be traced (a stopping worker may leave threads blocked in a
    hung backend's socket)."""
    if faulthandler.is_enabled() or sys.__stderr__ is None:
        return
    try:
        faulthandler.enable(file=sys.__stderr__)
    except (OSError, ValueError, AttributeError):  # no file descriptor behind stderr
        pass


def _put_back_notice(event: Any) -> None:
    """Without --verbose a second Ctrl-C still says what became of the job (on stderr)."""
    click.echo(f"Second stop signal: job {event.id} ({event.job_name}) is put back to waiting; the worker stops.",
               err=True)


def make_queue_group(name: str, qc: QueueConfig) -> click.Group:
    help_text = qc.description or f"Queue {name} ({qc.driver}, channel {qc.channel})."

    @click.group(name=name, cls=HelpGroup, invoke_without_command=True, help=help_text)
    @click.pass_context
    def group(ctx: click.Context) -> None:
        if ctx.invoked_subcommand is None:
            ctx.invoke(info_cmd)

    group.add_command(run_cmd)
    group.add_command(listen_cmd)
    group.add_command(info_cmd)
    group.add_command(clear_cmd)
    group.add_command(remove_cmd)
    group.add_command(push_cmd)
    group.add_command(failed_group)
    add_queue_commands(group)
    return group


@click.command("run")
@_worker_options
def run_cmd(verbose: bool, isolate: bool, color: bool | None, max_jobs: int | None, concurrency: int | None,
            max_seconds: float | None, memory_limit: int | None, metrics_port: int | None,
            metrics_textfile: str | None) -> int:
    """Run jobs until none is due, then exit 0 (for cron)."""
    worker = _start_worker(verbose, isolate, color, max_jobs, max_seconds, memory_limit, metrics_port,
                           metrics_textfile, concurrency)
    code = worker.run()
    if worker.stop_reason == "paused":
        click.echo(f"The queue {worker.queue.name} is paused.")
    return code


@click.command("listen", context_settings={"ignore_unknown_options": True})
@click.argument("timeout_args", nargs=-1, metavar="[TIMEOUT]")
@_worker_options
def listen_cmd(timeout_args: tuple[str, ...], verbose: bool, isolate: bool, color: bool | None,
               max_jobs: int | None, concurrency: int | None, max_seconds: float | None, memory_limit: int | None,
               metrics_port: int | None, metrics_textfile: str | None) -> int:
    """Work forever; TIMEOUT (≥ 1, default 3) is the longest single wait in seconds."""
    # Unknown options are let through only so that ``listen -3`` reads as a (bad) timeout.
    for token in timeout_args:
        if token.startswith("-") and not _NUMBER.match(token):
            raise click.NoSuchOption(token)
    if len(timeout_args) > 1:
        raise click.UsageError(f"Got unexpected extra argument ({timeout_args[1]})")
    seconds = listen_timeout(timeout_args[0] if timeout_args else "3")
    worker = _start_worker(verbose, isolate, color, max_jobs, max_seconds, memory_limit, metrics_port,
                           metrics_textfile, concurrency)
    return worker.listen(seconds)


def listen_timeout(text: str) -> int:
    """Yii's two messages: not a whole number → "Timeout must be numeric.", below 1 → "… greater
    than zero." Usage errors exit 2 (README, "Exit codes")."""
    if not _INTEGER.match(text.strip()):
        raise UsageError("Timeout must be numeric.")
    seconds = int(text)
    if seconds < 1:
        raise UsageError("Timeout must be greater than zero.")
    return int(Bounded(bounds.WAIT, "TIMEOUT").convert(seconds, None, None))  # and not past its range


@click.command("info")
@json_option
@color_option
@click.option("--watch", is_flag=True, help="Refresh until interrupted.")
@click.option("--interval", type=Bounded(bounds.REFRESH), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
def info_cmd(as_json: bool, color: bool | None, watch: bool, interval: float) -> None:
    """Job counts: waiting, delayed, reserved, done, failed (stored counters, O(1)).

    With --watch the counts refresh in place every --interval seconds until Ctrl-C; with --watch
    --json each snapshot is one compact JSON line (for a pipe); piped text appends the snapshots.
    """
    queue = current_queue()
    con = console(state().use_color(color))

    def snapshot() -> dict[str, Any]:
        return {"queue": queue.name, "driver": queue.config.driver, **queue.driver.counts().as_dict(),
                "paused": queue.driver.paused()}

    def text() -> Any:
        return info_text(queue.driver.counts(), paused=queue.driver.paused())

    if not watch:
        if as_json:
            emit_json(snapshot())
        else:
            con.print(text())
        return
    try:
        if as_json:
            while True:
                click.echo(json.dumps(snapshot(), separators=(",", ":")))
                sys.stdout.flush()
                time.sleep(interval)
        elif not con.is_terminal:
            while True:
                con.print(text())
                con.print()
                time.sleep(interval)
        else:
            from rich.live import Live

            with Live(text(), console=con, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(text(), refresh=True)
    except KeyboardInterrupt:
        return


@click.command("clear")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask.")
@click.option("--interactive/--no-interactive", default=True, help="--interactive=0 answers yes (Yii).")
def clear_cmd(assume_yes: bool, interactive: bool) -> None:
    """Delete every job of this queue (ids keep increasing)."""
    queue = current_queue()
    if not assume_yes and interactive and not confirm("Are you sure?"):
        return
    removed = queue.driver.clear()
    click.echo(f"Removed {removed} job{'s' if removed != 1 else ''}.")


@click.command("remove")
@click.argument("job_id", metavar="ID", type=Bounded(bounds.JOB_ID, "job id"))
def remove_cmd(job_id: int) -> None:
    """Remove job ID from any state."""
    if not current_queue().driver.remove(job_id):
        raise JobNotFoundError("The job is not found.")


def _complete_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of ``push JOB``: the registered job names (``pubq jobs``)."""
    from click.shell_completion import CompletionItem

    from . import _root_state

    try:
        names = _root_state(ctx).app.registry.names()
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


@click.command("push")
@click.argument("job_name", metavar="JOB", shell_complete=_complete_job_names)
@click.option("--args", "args_json", default="{}", metavar="JSON", help="Job arguments as a JSON object.")
@click.option("--delay", type=Bounded(bounds.DELAY), default=0, help="Seconds before the job is due.")
@click.option("--priority", type=Bounded(bounds.PRIORITY), default=None, help="Lower runs first (default 1024).")
@click.option("--ttr", type=Bounded(bounds.TTR), default=None, help="Seconds the job may run.")
@click.option("--unique-key", default=None, metavar="K",
              help="Push only if no job holds key K; a duplicate prints the holder's id (exit 0).")
@click.option("--unique-for", type=Bounded(bounds.UNIQUE_FOR), default=None, metavar="S",
              help="Seconds the unique key lives at most.")
@click.option("--unique-until", type=click.Choice(bounds.UNIQUE_UNTIL), default=None,
              help="When the key is released: done (a final state; default), start, ttl (only at --unique-for).")
@json_option
def push_cmd(job_name: str, args_json: str, delay: float, priority: int | None, ttr: int | None,
             unique_key: str | None, unique_for: float | None, unique_until: str | None, as_json: bool) -> None:
    """Push job JOB with --args JSON; prints the new id.

    JOB is a registered job name (``pubq jobs`` lists them with their arguments). With a unique key
    (--unique-key, or the job class's ``unique``) a duplicate stores nothing and prints
    ``Job ID already queued (unique key K)``.
    """
    try:
        args = json.loads(args_json)
    except ValueError as exc:
        raise UsageError(f"--args is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError("--args is nested too deeply") from None
    if not isinstance(args, dict):
        raise UsageError("--args must be a JSON object")
    queue = current_queue()
    pushed = queue.submit_name(job_name, args, delay=delay, ttr=ttr, priority=priority, unique_key=unique_key,
                               unique_for=unique_for, unique_until=unique_until)
    if as_json:
        out: dict[str, Any] = {"queue": queue.name, "id": pushed.job_id, "duplicate": pushed.duplicate}
        if pushed.unique_key is not None:
            out["unique_key"] = pushed.unique_key
        emit_json(out)
    elif pushed.job_id is None:
        click.echo("cancelled by a beforePush handler")
    elif pushed.duplicate:
        click.echo(f"Job {pushed.job_id} already queued (unique key {pushed.unique_key})")
    else:
        click.echo(str(pushed.job_id))
