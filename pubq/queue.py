"""Queue: push jobs, and turn a reservation's outcome into driver writes and events.

The queue owns the JSON codec, the events and the retry decision; the driver only stores bytes. The
worker (and the isolate parent) call :meth:`Queue.begin`, run the job, then :meth:`Queue.succeeded`
or :meth:`Queue.failed`: every event fires in this process, never in an isolated child, so
afterError cannot fire twice for one attempt (spec §5.2).
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import events as ev
from .config import QueueConfig
from .drivers.base import (
    DEFAULT_PRIORITY,
    Driver,
    FailedJob,
    FailureInfo,
    FollowUpFailure,
    PushItem,
    Reclaimed,
    ReclaimKind,
    Reservation,
    check_priority,
)
from .errors import (
    InvalidJobError,
    JobError,
    PayloadTooLargeError,
    PermanentError,
    TtrExceededError,
    UsageError,
)
from .events import EventBus, ExecEvent, HandlerFailure, PushEvent
from .job import Job, JobRegistry, peek_name
from .retry import backoff_delay

if TYPE_CHECKING:  # pragma: no cover
    from .app import App

log = logging.getLogger("pubq.queue")

#: Seconds a final failure may stay unsettled (handlers running) before another worker re-runs them.
SETTLE_WITHIN = 60.0


@dataclass
class JobContext:
    """What a running job may use: its queue, the app (other queues, services) and its identity."""

    queue: Queue
    job_id: int
    attempt: int
    log: logging.Logger

    @property
    def app(self) -> App | None:
        return self.queue.app


@dataclass
class Outcome:
    """What running a job produced, in-process or reported by an isolated child."""

    ok: bool
    result: Any = None
    error: BaseException | None = None
    traceback: str = ""
    duration: float | None = None
    memory_mib: float | None = None


class RecordedError(JobError):
    """A failure known only from its stored record (re-running handlers of an unsettled failure)."""

    code = "recorded"

    def __init__(self, error_class: str, message: str, code: str = "") -> None:
        super().__init__(message)
        self.error_class = error_class
        self.error_code = code

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


def error_name(error: BaseException) -> str:
    if isinstance(error, RecordedError):
        return error.error_class
    return type(error).__name__


def failure_info(error: BaseException, traceback: str = "") -> FailureInfo:
    code = getattr(error, "error_code", None) or getattr(error, "code", "")
    return FailureInfo(
        error_class=error_name(error),
        message=str(error),
        traceback=traceback,
        code=code if isinstance(code, str) else str(code),
    )


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
    ) -> None:
        self.config = config
        self.name = config.name
        self.driver = driver
        self.registry = registry
        self.app = app
        self.bus = bus or EventBus()
        self.log = log
        #: Whether push() runs the job at once (``driver: sync``).
        self.runs_inline = bool(getattr(driver, "runs_inline", False)) or config.driver == "sync"

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
        if self.runs_inline:
            self._run_inline()
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
        if self.runs_inline and stored:
            self._run_inline()
        return ids

    def _push_many_fast(self, jobs: list[Job], delay: float, ttr: int | None, priority: int | None) -> list[int]:
        """No push handlers: validate the shared options once, then encode and store in bulk."""
        items = []
        checked: set[int] = set()
        for job in jobs:
            job_ttr = ttr or job.ttr or self.config.ttr
            if job_ttr not in checked:
                event = self._before_push(job, delay, job_ttr, priority)
                assert event is not None  # no beforePush handlers
                checked.add(job_ttr)
            elif not isinstance(job, Job):
                raise UsageError(f"push() takes a pubq.Job instance, not {type(job).__name__}")
            items.append(PushItem(self._encode(job), ttr=job_ttr, delay=delay,
                                  priority=DEFAULT_PRIORITY if priority is None else priority))
        ids = self.driver.push_many(items) if items else []
        if self.runs_inline and ids:
            self._run_inline()
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
        if isinstance(event.ttr, bool) or not isinstance(event.ttr, int) or event.ttr < 1:
            raise UsageError(f"job TTR must be an integer ≥ 1 (got {event.ttr!r})")
        if isinstance(event.delay, bool) or not isinstance(event.delay, (int, float)) or not event.delay >= 0:
            raise UsageError(f"job delay must be a number ≥ 0 (got {event.delay!r})")
        try:
            check_priority(event.priority)
        except ValueError as exc:
            raise UsageError(f"{exc} (got {event.priority!r})") from None
        return event

    def _encode(self, job: Job) -> bytes:
        payload = self.registry.encode(job)
        if len(payload) > self.config.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {job.job_name()} is {len(payload)} bytes; queue {self.name} accepts at most "
                f"{self.config.max_payload_bytes} (max_payload_bytes)"
            )
        return payload

    def _run_inline(self) -> None:
        from .worker import Worker  # local: the sync driver is the only producer that runs jobs

        Worker(self, isolate=False, install_signals=False).drain()

    # -- consuming: the pipeline the worker drives ---------------------------------------

    def begin(self, r: Reservation) -> ExecEvent:
        """Decode a reservation and fire beforeExec. ``event.error`` is set for an invalid job."""
        event = self._decode(r)
        if event.error is None and self.bus.has(ev.BEFORE_EXEC):
            self.bus.trigger(ev.BEFORE_EXEC, event)
        return event

    def _decode(self, r: Reservation) -> ExecEvent:
        event = ExecEvent(queue=self, id=r.job_id, job=None, ttr=r.ttr, attempt=r.attempt, payload=r.payload)
        limit = self.config.max_payload_bytes
        try:
            if len(r.payload) > limit:
                # The limit holds on pop too (spec §3: validated on push and on pop): a payload
                # stored past push's check (another producer, a lowered limit) is an invalid job and
                # is never decoded. The soak of issue #6 saw a 10 MB body run as a normal job.
                raise InvalidJobError(
                    f"payload is {len(r.payload)} bytes; queue {self.name} accepts at most {limit} "
                    f"(max_payload_bytes)"
                )
            event.job = self.registry.decode(r.payload)
            event.job_name = event.job.job_name()
        except InvalidJobError as exc:
            event.error = exc
            event.job_name = "unknown job"
        return event

    def execute(self, event: ExecEvent) -> Outcome:
        """Run the job's code in this process and capture what happened (no events, no writes)."""
        assert event.job is not None
        ctx = JobContext(queue=self, job_id=event.id, attempt=event.attempt, log=log)
        started = time.perf_counter()
        try:
            result = event.job.execute(ctx)
        except Exception as exc:  # noqa: BLE001 - a job's failure is data, not a crash
            return Outcome(ok=False, error=exc, traceback=tb.format_exc(), duration=time.perf_counter() - started)
        return Outcome(ok=True, result=result, duration=time.perf_counter() - started)

    def succeeded(self, event: ExecEvent, outcome: Outcome) -> None:
        """afterExec. Raising handlers become follow-up failures; the job stays done."""
        event.result = outcome.result
        event.duration = outcome.duration
        event.memory_mib = outcome.memory_mib
        self._keep_follow_ups(event, self.bus.trigger(ev.AFTER_EXEC, event))

    def failed(self, event: ExecEvent, error: BaseException, traceback: str = "", *,
               outcome: Outcome | None = None) -> bool:
        """Decide retry, write it at once, fire afterError, apply a handler's change, settle.

        Returns False when this worker no longer held the job (reclaimed elsewhere): then nothing
        is written and no handler runs, so the final failure still happens exactly once.
        """
        event.error = error
        event.traceback = traceback
        if outcome is not None:
            event.duration = outcome.duration
            event.memory_mib = outcome.memory_mib
        retry = self.decide_retry(event.job, event.attempt, error)
        info = failure_info(error, traceback)
        if not self._write_outcome(event.id, event.attempt, retry, info):
            log.warning(
                "[%s] %s (attempt: %s) failed but its reservation was reclaimed; outcome not recorded",
                event.id, event.job_name, event.attempt,
            )
            return False
        event.retry = retry
        self._keep_follow_ups(event, self.bus.trigger(ev.AFTER_ERROR, event))
        if bool(event.retry) != retry:
            # A handler changed the decision: a second step guarded by (job id, attempt) (spec §5.1).
            self._write_outcome(event.id, event.attempt, bool(event.retry), info)
        if not event.retry:
            self.driver.settle(event.id, event.attempt)
        return True

    def _write_outcome(self, job_id: int, attempt: int, retry: bool, info: FailureInfo) -> bool:
        if retry:
            return self.driver.retry_later(job_id, attempt, backoff_delay(self.config.retry, attempt))
        return self.driver.fail(job_id, attempt, info, settle_within=SETTLE_WITHIN)

    def decide_retry(self, job: Job | None, attempt: int, error: BaseException) -> bool:
        """attempts, then the job's can_retry (spec §5.1); permanent and invalid jobs never retry."""
        if job is None or isinstance(error, PermanentError):
            return False
        limit = job.attempts or self.config.attempts
        if attempt >= limit:
            return False
        try:
            return bool(job.can_retry(attempt, error))
        except Exception:  # noqa: BLE001 - a broken can_retry must not crash the worker
            log.exception("[%s] %s.can_retry raised; not retrying", attempt, type(job).__name__)
            return False

    def _keep_follow_ups(self, event: ExecEvent, failures: Sequence[HandlerFailure]) -> None:
        for f in failures:
            log.error(
                "[%s] %s (attempt: %s) %s handler %s raised %s: %s\n%s",
                event.id, event.job_name, event.attempt, f.event, f.handler,
                type(f.error).__name__, f.error, f.traceback,
            )
            try:
                self.driver.record_follow_up(FollowUpFailure(
                    job_id=event.id, attempt=event.attempt, event=f.event, handler=f.handler,
                    error_class=type(f.error).__name__, message=str(f.error), traceback=f.traceback,
                    at=time.time(),
                ))
            except Exception:  # noqa: BLE001 - keeping the record must not take the worker down
                log.exception("[%s] could not record follow-up failure", event.id)

    # -- lost workers ----------------------------------------------------------------------

    def recover(self, item: Reclaimed) -> None:
        """Finish what a dead worker left: a lost reservation or an unsettled final failure."""
        r = item.reservation
        if item.kind is ReclaimKind.LOST:
            event = self.begin_quiet(r)
            # An invalid payload whose worker died before failing it is recorded with why it can
            # never run, not as a lost worker (issue #6 soak: a wrong-args payload shown as a TTR).
            error = event.error or TtrExceededError(
                f"TTR exceeded / worker lost: no outcome within the job's TTR of {r.ttr} s"
            )
            self.failed(event, error, "")
            return
        failure: FailedJob | None = item.failure
        event = self.begin_quiet(r)
        event.error = RecordedError(
            failure.error_class if failure else "WorkerLostError",
            failure.message if failure else "the worker was lost before afterError ran",
            failure.code if failure else "",
        )
        event.traceback = failure.traceback if failure else ""
        event.retry = False
        self._keep_follow_ups(event, self.bus.trigger(ev.AFTER_ERROR, event))
        if event.retry:
            self.driver.retry_later(r.job_id, r.attempt, backoff_delay(self.config.retry, r.attempt))
        else:
            self.driver.settle(r.job_id, r.attempt)

    def begin_quiet(self, r: Reservation) -> ExecEvent:
        """Decode without firing beforeExec (for recovery paths that do not run the job)."""
        event = self._decode(r)
        if event.error is not None:
            event.job_name = peek_name(r.payload) or "unknown job"
        return event

    def close(self) -> None:
        self.driver.close()
