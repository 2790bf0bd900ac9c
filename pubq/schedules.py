"""Schedules: periodic pushes declared under ``schedules:`` (spec §7.8), and when they fire.

This module is pure (no backend): it validates a schedule and turns it into fire times, UTC unix
seconds. A tick's identity is (schedule name, fire second); :mod:`pubq.scheduler` pushes each tick
under that unique key, so several schedulers never push one tick twice.

Cron expressions are read by croniter in the schedule's ``timezone`` (zoneinfo), so daylight saving
changes behave as croniter documents: a wall time skipped in spring fires at the next valid time,
an hour repeated in autumn fires in both of its UTC instants. ``every`` intervals are counted from
the Unix epoch, so every scheduler agrees on the ticks whatever time it started.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import bounds

_KEYS = {"cron", "every", "queue", "job", "args", "timezone", "misfire", "priority", "misfire_grace"}
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
MISFIRE = ("skip", "once")
#: Seconds after its fire time a tick still counts as on time (pushed); older ones are missed.
DEFAULT_MISFIRE_GRACE = 60.0
#: How long a tick's unique key lives after its fire time (spec §7.8).
TICK_KEY_LIFE = 86_400.0
EVERY = bounds.Bound("every", 1, 366 * bounds.DAY, "s", integer=False)
MISFIRE_GRACE = bounds.Bound("misfire_grace", 1, bounds.DAY, "s", integer=False)


@dataclass(frozen=True)
class Schedule:
    name: str
    queue: str
    job: str
    args: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    misfire: str = "skip"
    priority: int | None = None
    misfire_grace: float = DEFAULT_MISFIRE_GRACE

    def describe(self) -> str:
        return f"cron {self.cron} ({self.timezone})" if self.cron else f"every {_fmt_every(self.every or 0)}"

    def fires(self, after: float) -> Iterator[int]:
        """Fire times strictly after ``after`` (UTC unix seconds), in order, forever."""
        if self.every is not None:
            step = self.every
            n = int(after // step) + 1
            while True:
                t = int(n * step)
                if t > after:
                    yield t
                n += 1
        else:
            from croniter import croniter  # imported where used: a worker never pays for it

            tz = ZoneInfo(self.timezone)
            it = croniter(self.cron, datetime.fromtimestamp(int(after), tz))
            while True:
                t = int(it.get_next(datetime).timestamp())
                if t > after:
                    yield t

    def fires_between(self, after: float, until: float) -> list[int]:
        """Fire times in ``(after, until]``."""
        out = []
        for t in self.fires(after):
            if t > until:
                return out
            out.append(t)
        return out  # pragma: no cover - fires() never ends

    def last_fire_at_or_before(self, t: float) -> int | None:
        """The newest fire time ``<= t``; None when there is none (a cron that never matched)."""
        if self.every is not None:
            return int((t // self.every) * self.every)
        from croniter import croniter

        it = croniter(self.cron, datetime.fromtimestamp(int(t) + 1, ZoneInfo(self.timezone)))
        fire = int(it.get_prev(datetime).timestamp())
        return fire if fire <= t else None

    def next_fires(self, after: float, n: int = 3) -> list[int]:
        it = self.fires(after)
        return [next(it) for _ in range(n)]

    def tick_key(self, fire: int) -> str:
        """The unique key of one tick: (schedule name, fire time in UTC to the second)."""
        return f"schedule:{self.name}:{fire}"


def _fmt_every(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def utc_text(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_every(value: Any) -> float:
    """``30s`` / ``5m`` / ``2h`` / ``1d`` / a number of seconds → seconds; ValueError when not one."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 30s, 5m, 2h, 1d (got {value!r})")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _EVERY.match(str(value))
        if not m:
            raise ValueError(f"must be a duration like 30s, 5m, 2h, 1d (got {value!r})")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    problem = EVERY.problem(seconds)
    if problem is not None:
        raise ValueError(problem)
    return seconds


def parse_schedule(name: Any, raw: Any, queues: set[str]) -> tuple[Schedule | None, str, str]:
    """``(schedule, '', '')``, or ``(None, key, problem)`` naming the first bad key under it."""
    if not isinstance(name, str) or not _NAME.match(name):
        return None, "", "a schedule name is letters, digits and _ . : - (at most 100)"
    if not isinstance(raw, dict):
        return None, "", f"must be a mapping (got {type(raw).__name__})"
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        return None, unknown[0], f"unknown key (allowed: {', '.join(sorted(_KEYS))})"
    if ("cron" in raw) == ("every" in raw):
        return None, "", "needs exactly one of cron or every"
    queue = raw.get("queue")
    if not isinstance(queue, str) or queue not in queues:
        return None, "queue", f"no queue named {queue!r} (configured: {', '.join(sorted(queues))})"
    job = raw.get("job")
    if not isinstance(job, str) or not job:
        return None, "job", "must be a registered job name"
    args = raw.get("args", {})
    if not isinstance(args, dict):
        return None, "args", "must be a mapping of the job's arguments"
    tz = raw.get("timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        return None, "timezone", f"unknown time zone {tz!r} (an IANA name such as Asia/Shanghai)"
    cron = every = None
    if "cron" in raw:
        from croniter import croniter

        cron = raw["cron"]
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            return None, "cron", f"not a cron expression: {cron!r}"
    else:
        try:
            every = parse_every(raw["every"])
        except ValueError as exc:
            return None, "every", str(exc)
    misfire = raw.get("misfire", "skip")
    if misfire not in MISFIRE:
        return None, "misfire", f"must be skip or once (got {misfire!r})"
    priority = raw.get("priority")
    if priority is not None and bounds.PRIORITY.problem(priority) is not None:
        return None, "priority", str(bounds.PRIORITY.problem(priority))
    grace = raw.get("misfire_grace", DEFAULT_MISFIRE_GRACE)
    if MISFIRE_GRACE.problem(grace) is not None:
        return None, "misfire_grace", str(MISFIRE_GRACE.problem(grace))
    return Schedule(name=name, queue=queue, job=job, args=dict(args), cron=cron, every=every, timezone=str(tz),
                    misfire=misfire, priority=priority, misfire_grace=float(grace)), "", ""
