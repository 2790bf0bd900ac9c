"""``pubq schedule run | tick | list``: the periodic pushes of ``schedules:`` (see pubq.scheduler)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import click

from ..errors import UsageError
from ..schedules import utc_text
from .options import HelpGroup, color_option, console, emit_json, json_option, state


def _scheduler(names: tuple[str, ...]) -> Any:
    from ..scheduler import Scheduler

    app = state().app
    schedules = dict(app.config.schedules)
    if not schedules:
        raise UsageError(f"{app.config.source}: no schedules configured (add a schedules: section)")
    unknown = [n for n in names if n not in schedules]
    if unknown:
        raise UsageError(f"no schedule named {unknown[0]!r} (configured: {', '.join(schedules)})")
    if names:
        schedules = {n: schedules[n] for n in names}
    return Scheduler(schedules, app.queue)


def _say(pushed: list[Any]) -> None:
    for p in pushed:
        what = "catch-up" if p.catch_up else "tick"
        if p.created:
            click.echo(f"{p.schedule}: {what} {utc_text(p.fire)} pushed as job {p.job_id}")
        else:
            click.echo(f"{p.schedule}: {what} {utc_text(p.fire)} already pushed (job {p.job_id})")


@click.group("schedule", cls=HelpGroup)
def schedule_group() -> None:
    """Periodic jobs of the schedules: section (cron or every)."""


@schedule_group.command("run")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def run_cmd(names: tuple[str, ...]) -> None:
    """Push every tick as it falls due, until TERM/INT. Several may run (each tick is pushed once)."""
    scheduler = _scheduler(names)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"Scheduler is started ({len(scheduler.schedules)} schedules)")
    started = time.monotonic()
    scheduler.run(stop, on_tick=_say)
    click.echo(f"Scheduler is stopped ({time.monotonic() - started:.0f} s)")


@schedule_group.command("tick")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@json_option
def tick_cmd(names: tuple[str, ...], as_json: bool) -> None:
    """Push what fell due since the last tick, then exit (run it from cron every minute)."""
    pushed = _scheduler(names).tick()
    if as_json:
        emit_json([{"schedule": p.schedule, "fire": p.fire, "fire_utc": utc_text(p.fire), "id": p.job_id,
                    "duplicate": not p.created, "catch_up": p.catch_up} for p in pushed])
    else:
        _say(pushed)


@schedule_group.command("list")
@json_option
@color_option
def list_cmd(as_json: bool, color: bool | None) -> None:
    """Each schedule: what it pushes, its last tick and its next three fire times."""
    scheduler = _scheduler(())
    now = time.time()
    rows = []
    for s in scheduler.schedules.values():
        last = scheduler.last_tick(s)
        rows.append({
            "name": s.name, "queue": s.queue, "job": s.job, "when": s.describe(), "misfire": s.misfire,
            "last_tick": last, "next": s.next_fires(now, 3),
        })
    if as_json:
        emit_json(rows)
        return
    from .tables import Rows

    table = Rows("Schedule", "Queue", "Job", "When", "Last tick", "Next fire times (UTC)",
                 text=("When", "Next fire times (UTC)"))
    for r in rows:
        last = "never" if r["last_tick"] is None else utc_text(r["last_tick"])
        table.add(r["name"], r["queue"], r["job"], r["when"], last,
                      ", ".join(utc_text(t)[:-4] for t in r["next"]))
    table.print(console(state().use_color(color)))
