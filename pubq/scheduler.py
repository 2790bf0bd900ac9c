"""The scheduler: pushes each due tick of every schedule once, however many schedulers run.

Each tick is pushed under its unique key (schedule name, UTC fire second; :meth:`Schedule.tick_key`)
held for 24 h after the fire time, so a second scheduler, on this host or another, gets a
duplicate instead of a second job: no leader lock that could be lost while two think they lead.
The last time a schedule was looked at is a *mark* stored with its queue in the backend
(``mark_advance`` never moves it back), shared by every scheduler and by ``pubq schedule tick``.

Misfires (spec §7.8): a tick more than ``misfire_grace`` seconds old when first seen (the
schedulers were down) is *missed*: ``skip`` pushes nothing for it, ``once`` pushes one job for the
newest missed tick. A schedule seen for the first time starts from now (nothing before it is due).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .queue import Queue
from .schedules import TICK_KEY_LIFE, Schedule, utc_text

log = logging.getLogger("pubq.scheduler")

#: Longest sleep of ``run`` between two looks (a stop request is seen this fast).
MAX_SLEEP = 1.0


@dataclass(frozen=True)
class Pushed:
    """One tick a scheduler handled."""

    schedule: str
    fire: int
    job_id: int | None
    #: False: another scheduler had pushed it (a duplicate of its unique key).
    created: bool
    #: The one job ``misfire: once`` pushes for the newest missed tick.
    catch_up: bool = False


def mark_name(schedule: Schedule) -> str:
    return f"schedule:{schedule.name}"


class Scheduler:
    """Ticks the given schedules; ``queue_for`` opens a schedule's queue, ``clock`` is the time."""

    def __init__(self, schedules: Mapping[str, Schedule], queue_for: Callable[[str], Queue], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.schedules = dict(schedules)
        self._queue_for = queue_for
        self._clock = clock

    def last_tick(self, schedule: Schedule) -> float | None:
        return self._queue_for(schedule.queue).driver.mark_get(mark_name(schedule))

    def tick(self, now: float | None = None) -> list[Pushed]:
        """Push what fell due since the last look (every schedule), then advance the marks."""
        now = self._clock() if now is None else now
        out: list[Pushed] = []
        for schedule in self.schedules.values():
            out += self._tick_one(schedule, now)
        return out

    def _tick_one(self, schedule: Schedule, now: float) -> list[Pushed]:
        queue = self._queue_for(schedule.queue)
        mark = mark_name(schedule)
        last = queue.driver.mark_get(mark)
        if last is None:  # first sight: due from now on
            queue.driver.mark_advance(mark, now)
            return []
        cutoff = now - schedule.misfire_grace
        due = [(fire, False) for fire in schedule.fires_between(max(last, cutoff), now)]
        if schedule.misfire == "once" and last < cutoff:
            missed = schedule.last_fire_at_or_before(cutoff)
            if missed is not None and missed > last:
                due.insert(0, (missed, True))
        elif last < cutoff and (schedule.last_fire_at_or_before(cutoff) or 0) > last:
            log.info("schedule %s: skipping the ticks missed since %s (misfire: skip)", schedule.name,
                     utc_text(last))
        out = [self._push(queue, schedule, fire, now, catch_up) for fire, catch_up in due]
        queue.driver.mark_advance(mark, now)
        return out

    def _push(self, queue: Queue, schedule: Schedule, fire: int, now: float, catch_up: bool) -> Pushed:
        pushed = queue.submit_name(
            schedule.job, schedule.args, priority=schedule.priority, unique_key=schedule.tick_key(fire),
            unique_for=max(fire + TICK_KEY_LIFE - now, 60.0), unique_until="ttl",
        )
        what = "catch-up of the newest missed tick" if catch_up else "tick"
        if pushed.duplicate:
            log.debug("schedule %s: %s %s already pushed as job %s", schedule.name, what, utc_text(fire),
                      pushed.job_id)
        else:
            log.info("schedule %s: %s %s pushed as job %s on queue %s", schedule.name, what, utc_text(fire),
                     pushed.job_id, schedule.queue)
        return Pushed(schedule.name, fire, pushed.job_id, not pushed.duplicate, catch_up)

    def next_wake(self, now: float) -> float:
        """Seconds until the earliest next fire of any schedule (at most MAX_SLEEP)."""
        soonest = min((next(s.fires(now)) for s in self.schedules.values()), default=now + MAX_SLEEP)
        return max(0.0, min(soonest - now, MAX_SLEEP))

    def run(self, stop: threading.Event, *, on_tick: Callable[[list[Pushed]], None] | None = None) -> None:
        """Tick until ``stop`` is set, sleeping until the next fire time (at most MAX_SLEEP)."""
        while not stop.is_set():
            pushed = self.tick()
            if on_tick is not None and pushed:
                on_tick(pushed)
            stop.wait(self.next_wake(self._clock()) + 0.01)
