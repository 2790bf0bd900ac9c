"""Queue: one configured queue — its driver, its job registry and its events — and the producer side.

``push`` turns a job into a payload, checks every number once (:mod:`pubq.bounds`; drivers trust
what they are given) and stores it. Running jobs and writing their outcomes is the business of
:class:`pubq.runner.JobRunner`, the one owner of those writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import bounds
from . import events as ev
from .config import QueueConfig
from .drivers.base import DEFAULT_PRIORITY, Driver, PushItem
from .errors import PayloadTooLargeError, UsageError
from .events import EventBus, PushEvent
from .job import Job, JobRegistry

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
        self, job: Job, *, delay: float = 0, ttr: int | None = None, priority: int | None = None
    ) -> int | None:
        """Store ``job``; returns its id, or None when a beforePush handler cancelled it."""
        event = self._before_push(job, delay, ttr, priority)
        if event is None:
            return None
        payload = self._encode(event.job)
        event.id = self.driver.push(payload, ttr=event.ttr, delay=event.delay, priority=event.priority)
        self.bus.trigger(ev.AFTER_PUSH, event)
        if self.run_inline is not None:
            self.run_inline(self)
        return event.id

    def push_many(
        self, jobs: Iterable[Job], *, delay: float = 0, ttr: int | None = None, priority: int | None = None
    ) -> list[int | None]:
        """Push many jobs in as few round trips as the driver allows; None for cancelled ones."""
        if not (self.bus.has(ev.BEFORE_PUSH) or self.bus.has(ev.AFTER_PUSH)):
            return self._push_many_fast(list(jobs), delay, ttr, priority)  # type: ignore[return-value]
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
        priority: int | None = None,
    ) -> int | None:
        """Push by registered job name (CLI, scripts); unknown names and bad args raise UsageError."""
        return self.push(self.registry.build(name, args), delay=delay, ttr=ttr, priority=priority)

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
            raise PayloadTooLargeError(
                f"payload of {job.job_name()} is {len(payload)} bytes; queue {self.name} accepts at most "
                f"{self.config.max_payload_bytes} (max_payload_bytes)"
            )
        return payload

    def close(self) -> None:
        self.driver.close()


def _check_options(ttr: object, delay: object, priority: object) -> None:
    """The one check of a push's numbers, before any driver sees them (the same on every driver)."""
    for bound, value, field in ((bounds.TTR, ttr, "job TTR"), (bounds.DELAY, delay, "job delay"),
                                (bounds.PRIORITY, priority, "job priority")):
        try:
            bound.check(value, field)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
