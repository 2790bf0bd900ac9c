"""Queue: one configured queue — its driver, its job registry and its events — and the producer side.

``push`` turns a job into a payload, checks every number once (:mod:`pubq.bounds`; drivers trust
what they are given) and stores it. Running jobs and writing their outcomes is the business of
:class:`pubq.runner.JobRunner`, the one owner of those writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import bounds
from . import events as ev
from .config import QueueConfig
from .drivers.base import Driver
from .drivers.records import DEFAULT_PRIORITY, PushItem, UniqueSpec
from .errors import PayloadTooLargeError, UsageError
from .events import EventBus, PushEvent
from .job import Job, JobRegistry, unique_problem

if TYPE_CHECKING:  # pragma: no cover
    from .app import App

log = logging.getLogger("pubq.queue")


class Queue:
    """One configured queue: a driver, a job registry and an event bus."""

    def __init__(
        self,
        config: QueueConfig,
        driver: Driver,
        registry: JobRegistry,
        *,
        app: App | None = None,
        bus: EventBus | None = None,
        run_inline: Callable[[Queue], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.driver = driver
        self.registry = registry
        self.app = app
        self.bus = bus or EventBus()
        self.log = log
        #: ``driver: sync``: runs what was pushed at once, inside push() (set by whoever wires it).
        self.run_inline = run_inline

    # -- producing -----------------------------------------------------------------------

    def push(
        self, job: Job, *, delay: float = 0, ttr: int | None = None, priority: int | None = None,
        unique_key: str | None = None, unique_for: float | None = None, unique_until: str | None = None,
    ) -> int | None:
        """Store ``job``; returns its id, or None when a beforePush handler cancelled it.

        With a unique key (``unique_key``, or the job class's ``unique`` template) a push while
        another job holds the key stores nothing and returns that job's id (:meth:`submit` says
        which happened). ``unique_for``: seconds the key lives at most; ``unique_until``: "done"
        (default), "start" or "ttl" (see :data:`pubq.bounds.UNIQUE_UNTIL`).
        """
        if unique_key is None and unique_for is None and unique_until is None and self._plain(job):
            # the common push, without the Pushed record: every call here costs ~5-10 µs on a cold
            # CPU, and a producer pushing now and then always runs cold (bench/README, "Pickup latency")
            return self._push_plain(job, delay, ttr or job.ttr or self.config.ttr,
                                    DEFAULT_PRIORITY if priority is None else priority)
        return self.submit(job, delay=delay, ttr=ttr, priority=priority, unique_key=unique_key,
                           unique_for=unique_for, unique_until=unique_until).job_id

    def submit(
        self, job: Job, *, delay: float = 0, ttr: int | None = None, priority: int | None = None,
        unique_key: str | None = None, unique_for: float | None = None, unique_until: str | None = None,
    ) -> Pushed:
        """:meth:`push`, telling a new job from a duplicate of a held unique key."""
        if unique_key is None and unique_for is None and unique_until is None and self._plain(job):
            return Pushed(self._push_plain(job, delay, ttr or job.ttr or self.config.ttr,
                                           DEFAULT_PRIORITY if priority is None else priority))
        event = self._before_push(job, delay, ttr, priority)
        if event is None:
            return Pushed(None)
        spec = unique_spec(event.job, unique_key, unique_for, unique_until)
        payload = self._encode(event.job)
        if spec is None:
            event.id = self.driver.push(payload, ttr=event.ttr, delay=event.delay, priority=event.priority)
        else:
            event.id, created = self.driver.push_unique(payload, ttr=event.ttr, delay=event.delay,
                                                        priority=event.priority, unique=spec)
            if not created:
                return Pushed(event.id, duplicate=True, unique_key=spec.key)
        self.bus.trigger(ev.AFTER_PUSH, event)
        if self.run_inline is not None:
            self.run_inline(self)
        return Pushed(event.id, unique_key=None if spec is None else spec.key)

    def _plain(self, job: Job) -> bool:
        """No push handler, a job class without unique keys: the push needs no event objects."""
        cls = type(job)
        return (isinstance(job, Job) and cls.unique is None and cls.unique_key is Job.unique_key
                and not self.bus.has(ev.BEFORE_PUSH) and not self.bus.has(ev.AFTER_PUSH))

    def _push_plain(self, job: Job, delay: float, ttr: int, priority: int) -> int:
        """The common push (no handlers, not unique): no event objects; the usual numbers skip the
        full check (the same bounds, read as plain comparisons)."""
        if not (type(ttr) is int and type(priority) is int and (delay == 0 and type(delay) in (int, float))
                and _TTR.low <= ttr <= _TTR.high and _PRIORITY.low <= priority <= _PRIORITY.high):
            _check_options(ttr, delay, priority)
        payload = self.registry.encode(job)
        if len(payload) > self.config.max_payload_bytes:
            self._too_large(job, payload)
        job_id = self.driver.push(payload, ttr=ttr, delay=delay, priority=priority)
        if self.run_inline is not None:
            self.run_inline(self)
        return job_id

    def push_many(
        self, jobs: Iterable[Job], *, delay: float = 0, ttr: int | None = None, priority: int | None = None
    ) -> list[int | None]:
        """Push many jobs in as few round trips as the driver allows; None for cancelled ones.

        Jobs whose class has a ``unique`` template go one by one (each is one atomic unique push)."""
        jobs = list(jobs)
        if any(type(job).unique is not None for job in jobs):
            return [self.push(job, delay=delay, ttr=ttr, priority=priority) for job in jobs]
        if not (self.bus.has(ev.BEFORE_PUSH) or self.bus.has(ev.AFTER_PUSH)):
            return self._push_many_fast(jobs, delay, ttr, priority)  # type: ignore[return-value]
        pending: list[tuple[int, PushEvent, bytes]] = []
        ids: list[int | None] = []
        for job in jobs:
            event = self._before_push(job, delay, ttr, priority)
            ids.append(None)
            if event is not None:
                pending.append((len(ids) - 1, event, self._encode(event.job)))
        stored = self.driver.push_many(
            [PushItem(p, ttr=e.ttr, delay=e.delay, priority=e.priority) for _, e, p in pending]
        )
        for (index, event, _), job_id in zip(pending, stored, strict=True):
            event.id = job_id
            ids[index] = job_id
            self.bus.trigger(ev.AFTER_PUSH, event)
        if self.run_inline is not None and stored:
            self.run_inline(self)
        return ids

    def _push_many_fast(self, jobs: list[Job], delay: float, ttr: int | None, priority: int | None) -> list[int]:
        """No push handlers: check the shared options once per distinct TTR, then encode and store."""
        items = []
        checked: set[int] = set()
        for job in jobs:
            if not isinstance(job, Job):
                raise UsageError(f"push() takes a pubq.Job instance, not {type(job).__name__}")
            job_ttr = ttr or job.ttr or self.config.ttr
            if job_ttr not in checked:
                _check_options(job_ttr, delay, DEFAULT_PRIORITY if priority is None else priority)
                checked.add(job_ttr)
            items.append(PushItem(self._encode(job), ttr=job_ttr, delay=delay,
                                  priority=DEFAULT_PRIORITY if priority is None else priority))
        ids = self.driver.push_many(items) if items else []
        if self.run_inline is not None and ids:
            self.run_inline(self)
        return ids

    def push_name(
        self, name: str, args: dict[str, Any], *, delay: float = 0, ttr: int | None = None,
        priority: int | None = None, unique_key: str | None = None, unique_for: float | None = None,
        unique_until: str | None = None,
    ) -> int | None:
        """Push by registered job name (CLI, scripts); unknown names and bad args raise UsageError."""
        return self.submit_name(name, args, delay=delay, ttr=ttr, priority=priority, unique_key=unique_key,
                                unique_for=unique_for, unique_until=unique_until).job_id

    def submit_name(
        self, name: str, args: dict[str, Any], *, delay: float = 0, ttr: int | None = None,
        priority: int | None = None, unique_key: str | None = None, unique_for: float | None = None,
        unique_until: str | None = None,
    ) -> Pushed:
        """:meth:`push_name`, telling a new job from a duplicate (:meth:`submit`)."""
        return self.submit(self.registry.build(name, args), delay=delay, ttr=ttr, priority=priority,
                           unique_key=unique_key, unique_for=unique_for, unique_until=unique_until)

    def _before_push(self, job: Job, delay: float, ttr: int | None, priority: int | None) -> PushEvent | None:
        if not isinstance(job, Job):
            raise UsageError(f"push() takes a pubq.Job instance, not {type(job).__name__}")
        event = PushEvent(
            queue=self,
            job=job,
            ttr=ttr or job.ttr or self.config.ttr,
            delay=delay,
            priority=DEFAULT_PRIORITY if priority is None else priority,
        )
        if self.bus.has(ev.BEFORE_PUSH):
            self.bus.trigger(ev.BEFORE_PUSH, event)
            if event.handled:
                return None
        _check_options(event.ttr, event.delay, event.priority)
        return event

    def _encode(self, job: Job) -> bytes:
        payload = self.registry.encode(job)
        if len(payload) > self.config.max_payload_bytes:
            self._too_large(job, payload)
        return payload

    def _too_large(self, job: Job, payload: bytes) -> None:
        raise PayloadTooLargeError(
            f"payload of {job.job_name()} is {len(payload)} bytes; queue {self.name} accepts at most "
            f"{self.config.max_payload_bytes} (max_payload_bytes)"
        )

    def close(self) -> None:
        self.driver.close()


@dataclass(frozen=True)
class Pushed:
    """What a push did: the job's id (None: a beforePush handler cancelled it), and whether it was
    a duplicate of the job holding ``unique_key`` (then ``job_id`` is that job's)."""

    job_id: int | None
    duplicate: bool = False
    unique_key: str | None = None


def unique_spec(job: Job, key: str | None, unique_for: float | None, until: str | None) -> UniqueSpec | None:
    """The unique options of a push (given, else the job class's), checked once; None: not unique."""
    cls = type(job)
    if key is None:
        key = job.unique_key()
        if key is None:
            if unique_for is not None or until is not None:
                raise UsageError("unique_for and unique_until need a unique key (unique_key, or the job's unique)")
            return None
        unique_for = cls.unique_for if unique_for is None else unique_for
        until = cls.unique_until if until is None else until
    if not isinstance(key, str) or not key or len(key) > bounds.UNIQUE_KEY_MAX:
        raise UsageError(f"unique key must be a text of 1 to {bounds.UNIQUE_KEY_MAX} characters (got {key!r:.80})")
    problem = unique_problem(unique_for, until)
    if problem is not None:
        raise UsageError(problem)
    if until is None:
        until = "done" if unique_for is None else "ttl"
    return UniqueSpec(key, until, None if unique_for is None else float(unique_for))


def _check_options(ttr: object, delay: object, priority: object) -> None:
    """The one check of a push's numbers, before any driver sees them (the same on every driver)."""
    for bound, value, field in ((bounds.TTR, ttr, "job TTR"), (bounds.DELAY, delay, "job delay"),
                                (bounds.PRIORITY, priority, "job priority")):
        try:
            bound.check(value, field)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


_TTR, _PRIORITY = bounds.TTR, bounds.PRIORITY
