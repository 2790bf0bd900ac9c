"""JobRunner: turns a reservation into a run and its outcome into driver writes and events.

It is the one owner of a job's outcome: ``ack`` (also fused with the next reserve), ``retry_later``,
``fail``, ``settle``, ``unfail``, ``release`` — for the worker, for the isolate parent (which runs the
job in a child but fires every event and does every write here, so afterError can never fire in
both), for jobs recovered from a dead worker, and for the ``sync`` driver's inline runs.

Every write presents the reservation's lease token. A write that is refused means the lease was
taken (the job was reclaimed after its TTR, removed, or retried by an operator): the runner then
fires no event for that job and logs one warning, so a late worker can never double an outcome.
"""

from __future__ import annotations

import inspect
import logging
import random
import resource
import time
import traceback as tb
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from . import bounds
from . import events as ev
from .drivers.base import Driver, FollowUpFailure, Reclaimed, ReclaimKind, Reservation
from .errors import InvalidJobError, JobCancelledError, PermanentError, RecordedError, TtrExceededError
from .events import ExecEvent, HandlerFailure
from .job import Job, peek_name
from .limits import LimitKey, Limits
from .outcome import Outcome, error_message, failure_info, storable
from .retry import backoff_delay

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .queue import Queue

log = logging.getLogger("pubq.queue")

#: Most jitter (seconds) added to a limited job's delay, so jobs refused together do not all come
#: back at the same instant.
LIMIT_JITTER = 0.02


class JobReporter(Protocol):
    """Where a running job's progress goes and where its cancel request comes from: the worker's
    presence (:mod:`pubq.heartbeat`) in process, the report pipe in an isolated child."""

    def report_progress(self, fraction: float, message: str = "") -> None: ...

    def cancel_reason(self, job_id: int) -> str | None: ...


class RunHooks(JobReporter, Protocol):
    """What a worker's presence learns from the runner (called in the worker's main thread)."""

    def job_started(self, r: Reservation, event: ExecEvent) -> None: ...

    def job_finished(self, r: Reservation, ok: bool | None) -> None:
        """The attempt ended: done (True), failed (False) or put back uncounted (None)."""


@dataclass
class JobContext:
    """What a running job may use: its queue, the app (other queues, services) and its identity;
    ``progress`` to report how far it got, ``cancelled``/``checkpoint`` to stop when cancelled."""

    queue: Queue
    job_id: int
    attempt: int
    log: logging.Logger
    reporter: JobReporter | None = None

    @property
    def app(self) -> App | None:
        return self.queue.app

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0…1) and a short message; cheap to call often (written a few times a
        second at most), shown by ``pubq workers``, ``jobs --state reserved`` and ``show``."""
        if self.reporter is not None:
            self.reporter.report_progress(fraction, message)

    @property
    def cancelled(self) -> bool:
        """Whether an operator cancelled this job (``pubq QUEUE cancel``); no backend call."""
        return self.reporter is not None and self.reporter.cancel_reason(self.job_id) is not None

    def checkpoint(self) -> None:
        """Raise :class:`~pubq.errors.JobCancelledError` when the job was cancelled: call it between
        steps of a long job (without isolate nothing else can stop it)."""
        reason = None if self.reporter is None else self.reporter.cancel_reason(self.job_id)
        if reason is not None:
            raise JobCancelledError(reason)


class JobRunner:
    """Runs reservations of one queue through ``driver`` (the queue's own, or a worker's view of it
    with the worker's outage budget)."""

    def __init__(self, queue: Queue, driver: Driver | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        self.driver = driver if driver is not None else queue.driver
        self.clock = clock
        #: A worker's presence (pubq.heartbeat): told when jobs start and end, asked about cancels.
        self.hooks: RunHooks | None = None
        #: Where ``ctx.progress`` goes and ``ctx.cancelled`` asks (the hooks, or an isolated child's pipe).
        self.reporter: JobReporter | None = None
        #: Limit slots this runner holds: job id → (lease token, key), freed when the attempt ends.
        self._slots: dict[int, tuple[int, str]] = {}

    # -- starting --------------------------------------------------------------------------

    def begin(self, r: Reservation, *, limits: bool = True) -> ExecEvent:
        """Decode a reservation, take its limit slot, and fire beforeExec. ``event.error`` is set for
        an invalid job; ``event.limited`` when the job went back to wait for its limit key (then
        nothing else happens: no hook, no event)."""
        event = self.decode(r)
        if limits and event.error is None and not self.admit(r, event):
            event.limited = True
            return event
        if self.hooks is not None:
            self.hooks.job_started(r, event)
        if event.error is None and self.queue.bus.has(ev.BEFORE_EXEC):
            self.queue.bus.trigger(ev.BEFORE_EXEC, event)
        return event

    def decode(self, r: Reservation) -> ExecEvent:
        """The reservation as an event, without firing anything.

        Anything that goes wrong while turning stored bytes into a job makes an *invalid job*
        (``event.error``): a worker never dies because of one job's data.
        """
        queue = self.queue
        event = ExecEvent(queue=queue, id=r.job_id, job=None, ttr=r.ttr, attempt=r.attempt, payload=r.payload,
                          pushed_at=r.pushed_at or None, reserved_at=r.deadline - r.ttr)
        limit = queue.config.max_payload_bytes
        try:
            if len(r.payload) > limit:
                # The limit holds on pop too: a payload stored past push's check (another producer,
                # a lowered limit) is never decoded.
                raise InvalidJobError(
                    f"payload is {len(r.payload)} bytes; queue {queue.name} accepts at most {limit} "
                    f"(max_payload_bytes)"
                )
            if r.unreadable or not _stored_numbers_ok(r):
                raise InvalidJobError(_stored_problem(r))
            event.job = queue.registry.decode(r.payload)
            event.job_name = event.job.job_name()
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the job's, never the worker's
            event.error = exc if isinstance(exc, InvalidJobError) else InvalidJobError(
                f"cannot decode the payload: {type(exc).__name__}: {error_message(exc)}")
            event.job_name = _safe_name(r.payload)
        return event

    # -- per-key limits ---------------------------------------------------------------------------

    def limits_of(self, job: Job | None) -> Limits | None:
        """The job class's own limits, else the queue's."""
        if job is None:
            return None
        own = type(job).limits
        return own if isinstance(own, Limits) else self.queue.config.limits

    def limit_of(self, r: Reservation, job: Job) -> LimitKey | None:
        """The job's limit for this attempt: its class's ``limit_key`` when it has one, else the
        ``limits`` template filled with its fields. Raises what ``limit_key`` raises; KeyError
        names a field the template wants and the job lacks."""
        rule = self.limits_of(job)
        if type(job).limit_key is Job.limit_key:
            return None if rule is None else rule.resolve(job.to_args())
        got = job.limit_key(JobContext(queue=self.queue, job_id=r.job_id, attempt=r.attempt, log=log))
        if got is None or isinstance(got, LimitKey):
            return got
        if rule is None:
            raise InvalidJobError(f"{job.job_name()}.limit_key returned the key {got!r} but neither the class "
                                  f"nor queue {self.queue.name} has limits to apply to it")
        return LimitKey(str(got), rule.concurrency, rule.rate, rule.per, rule.burst)

    def admit(self, r: Reservation, event: ExecEvent) -> bool:
        """Take the job's limit slot; False when the job went back delayed (or its lease is gone).

        A job whose fields do not fill the key template is an invalid job (``event.error``); an
        error raised by its ``limit_key`` fails the attempt as if ``execute`` had raised it."""
        if event.job is None:
            return True
        try:
            limit = self.limit_of(r, event.job)
        except KeyError as exc:
            if type(event.job).limit_key is Job.limit_key:
                rule = self.limits_of(event.job)
                template = rule.key if rule is not None else ""
                event.error = InvalidJobError(f"limits.key {template!r}: job {event.job_name} has no field {exc}")
            else:
                event.error = exc
            return True
        except Exception as exc:  # noqa: BLE001 - the job's own code: its failure, never the worker's
            event.error = exc
            return True
        if limit is None:
            return True
        wait = self.driver.limit_acquire(r, limit.key, concurrency=limit.concurrency, rate=limit.rate, per=limit.per,
                                         jitter=random.uniform(0, LIMIT_JITTER), burst=limit.burst)
        if wait is None:
            log.warning("[%s] %s: lease taken before its limit slot was (removed or reclaimed); left as it is",
                        r.job_id, event.job_name)
            return False
        if wait > 0:
            log.debug("[%s] %s: limit key %r is at its limit (%s); back in %.3f s", r.job_id, event.job_name,
                      limit.key, limit.describe(), wait)
            return False
        if limit.concurrency:
            self._slots[r.job_id] = (r.token, limit.key)
        return True

    def free_slot(self, r: Reservation, event: ExecEvent | None = None) -> None:
        """The attempt ended: free its limit slot so the key's next waiting job runs now. A
        recovered job (``event`` given) frees the slot its lost worker held."""
        held = self._slots.pop(r.job_id, None)
        key = held[1] if held is not None else None
        if key is None and event is not None and event.job is not None:
            try:
                limit = self.limit_of(r, event.job)
            except Exception:  # noqa: BLE001 - only promptness is lost: the slot frees itself
                limit = None
            key = limit.key if limit is not None and limit.concurrency else None
        if key is None:
            return
        try:
            self.driver.limit_release(r, key)
        except Exception:  # noqa: BLE001 - only promptness is lost: the slot is not counted anyway
            log.warning("[%s] could not free its limit slot of %r now; the next job of that key waits for "
                        "its timer", r.job_id, key, exc_info=True)

    def execute(self, event: ExecEvent, reporter: JobReporter | None = None) -> Outcome:
        """Run the job's code in this process and capture what happened (no events, no writes).

        An ``async def execute`` runs to its end on an event loop of its own here; a concurrent
        worker runs such jobs on its shared loop instead (:meth:`execute_async`).
        """
        assert event.job is not None
        ctx = JobContext(queue=self.queue, job_id=event.id, attempt=event.attempt, log=log,
                         reporter=reporter or self.reporter or self.hooks)
        started = time.perf_counter()
        try:
            result = event.job.execute(ctx)
            if inspect.iscoroutine(result):
                import asyncio  # only jobs with ``async def execute`` pay for it

                result = asyncio.run(result)
        except Exception as exc:  # noqa: BLE001 - a job's failure is data, not a crash
            return Outcome(ok=False, error=exc, traceback=tb.format_exc(), duration=time.perf_counter() - started,
                           memory_mib=_peak_rss_mib())
        return Outcome(ok=True, result=result, duration=time.perf_counter() - started, memory_mib=_peak_rss_mib())

    async def execute_async(self, event: ExecEvent, reporter: JobReporter | None = None) -> Outcome:
        """``execute`` for a job whose ``execute`` is ``async def``, awaited on the caller's loop."""
        assert event.job is not None
        ctx = JobContext(queue=self.queue, job_id=event.id, attempt=event.attempt, log=log,
                         reporter=reporter or self.reporter or self.hooks)
        started = time.perf_counter()
        try:
            result = event.job.execute(ctx)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - a job's failure is data, not a crash
            return Outcome(ok=False, error=exc, traceback=tb.format_exc(), duration=time.perf_counter() - started,
                           memory_mib=_peak_rss_mib())
        return Outcome(ok=True, result=result, duration=time.perf_counter() - started, memory_mib=_peak_rss_mib())

    # -- success ------------------------------------------------------------------------------

    def succeeded(self, r: Reservation, event: ExecEvent, outcome: Outcome, *, held_since: float,
                  reserve_next: bool = False) -> tuple[bool, Reservation | None]:
        """afterExec, then ack (fused with the next reserve when ``reserve_next``).

        A job that ran past half its TTR may have lost its lease (nothing kills a job at its TTR
        without isolate): the lease is then renewed first, and when it is gone the job's late
        success fires no afterExec and is not counted. Returns (acked, next reservation).
        """
        if not self.confirm_success(r, event, outcome, held_since=held_since):
            return False, None
        return self.ack(r, reserve_next=reserve_next)

    def confirm_success(self, r: Reservation, event: ExecEvent, outcome: Outcome, *, held_since: float) -> bool:
        """The part of a success before its ack: renew a lease held past half the TTR, fire afterExec.
        False (nothing fired; do not ack) when the lease was taken meanwhile."""
        if self.clock() - held_since >= r.ttr / 2 and not self.driver.extend(r, self.queue.config.settle_within):
            log.warning("[%s] %s (attempt: %s) finished after its lease was taken (reclaimed past its TTR of "
                        "%s s): afterExec not fired, not counted", r.job_id, event.job_name, r.attempt, r.ttr)
            return False
        event.result = outcome.result
        event.duration = outcome.duration
        event.memory_mib = outcome.memory_mib
        self._keep_follow_ups(event, self.queue.bus.trigger(ev.AFTER_EXEC, event))
        return True

    def ack(self, r: Reservation, *, reserve_next: bool = False) -> tuple[bool, Reservation | None]:
        """Count the job done (a beforeExec handler's skip, or after afterExec)."""
        if reserve_next:
            ok, nxt = self.driver.ack_and_reserve(r)
        else:
            ok, nxt = self.driver.ack(r), None
        self.acked(r, ok)
        return ok, nxt

    def acked(self, r: Reservation, ok: bool) -> None:
        """After an ack was written (alone or in a batch): tell the hooks, warn when it was refused."""
        self.done(r)
        if not ok:
            self.ack_refused(r)

    def done(self, r: Reservation) -> None:
        """The job succeeded (its ack written now or in a later batch): free its slot, tell the hooks."""
        if self._slots:
            self.free_slot(r)
        if self.hooks is not None:
            self.hooks.job_finished(r, True)

    @staticmethod
    def ack_refused(r: Reservation) -> None:
        log.warning("[%s] late ack refused: the job's lease was taken after its TTR; it is not counted twice",
                    r.job_id)

    # -- failure ------------------------------------------------------------------------------

    def failed(self, r: Reservation, event: ExecEvent, error: BaseException, traceback: str = "", *,
               outcome: Outcome | None = None) -> bool:
        """Decide retry, write the failure at once, fire afterError, then settle or unfail it.

        Returns False when the lease was taken (reclaimed elsewhere): nothing is written and no
        handler runs, so the final failure still happens exactly once. A job whose cancel was seen
        while it ran ends as cancelled, whatever it failed with (its isolated child was killed).
        """
        if self._slots:
            self.free_slot(r)
        if self.hooks is not None:
            reason = self.hooks.cancel_reason(r.job_id)
            self.hooks.job_finished(r, False)
            if reason is not None and not isinstance(error, JobCancelledError):
                error, traceback = JobCancelledError(reason), ""
        event.error = error
        event.traceback = traceback
        if outcome is not None:
            event.duration = outcome.duration
            event.memory_mib = outcome.memory_mib
        retry = self.decide_retry(event.job, r.attempt, error)
        delay = backoff_delay(self.queue.config.retry, r.attempt) if retry else None
        if not self.queue.bus.has(ev.AFTER_ERROR):  # nothing can change the decision: one step
            info = failure_info(error, traceback)
            done = self.driver.retry_later(r, delay, info) if delay is not None else (
                self.driver.fail(r, info) and self.driver.settle(r))
            if not done:
                self._stale(r, event)
            return done
        if not self.driver.fail(r, failure_info(error, traceback, delay)):
            self._stale(r, event)
            return False
        event.retry = retry
        self._after_error(r, event, delay)
        return True

    def _after_error(self, r: Reservation, event: ExecEvent, delay: float | None) -> None:
        """Run the afterError handlers of a written failure, then apply their (possibly changed) decision."""
        self._keep_follow_ups(event, self.queue.bus.trigger(ev.AFTER_ERROR, event))
        if event.retry:
            if delay is None:  # a handler asked for another attempt
                delay = backoff_delay(self.queue.config.retry, r.attempt)
            done = self.driver.unfail(r, delay)
        else:
            done = self.driver.settle(r)
        if not done:
            log.warning("[%s] %s (attempt: %s): the failure was moved while its afterError handlers ran "
                        "(removed, retried by an operator, or past settle_within); left as it is",
                        r.job_id, event.job_name, r.attempt)

    def _stale(self, r: Reservation, event: ExecEvent) -> None:
        log.warning("[%s] %s (attempt: %s) failed after its lease was taken (reclaimed past its TTR): "
                    "outcome not recorded, no afterError", r.job_id, event.job_name, r.attempt)

    def decide_retry(self, job: Job | None, attempt: int, error: BaseException) -> bool:
        """Attempts, then the job's can_retry; permanent errors and invalid jobs never retry."""
        if job is None or isinstance(error, PermanentError):
            return False
        limit = job.attempts or self.queue.config.attempts
        if attempt >= limit:
            return False
        try:
            return bool(job.can_retry(attempt, error))
        except Exception:  # noqa: BLE001 - a broken can_retry must not crash the worker
            log.exception("[%s] %s.can_retry raised; not retrying", attempt, type(job).__name__)
            return False

    def release(self, r: Reservation) -> bool:
        """Put a held job back without counting the attempt (a hard stop)."""
        if self.hooks is not None:
            self.hooks.job_finished(r, None)
        done = self.driver.release(r)
        if self._slots:
            self.free_slot(r)
        return done

    def cancelled(self, r: Reservation, reason: str) -> None:
        """A waiting/delayed job the driver just cancelled (now a failed, unsettled attempt under
        ``r``): fire afterError with retry false and settle it, as for any final failure."""
        event = self.decode(r)
        event.error = JobCancelledError(reason)
        event.retry = False
        self._after_error(r, event, None)

    # -- what dead workers left -------------------------------------------------------------------

    def recover(self, item: Reclaimed) -> None:
        """Finish what a dead worker left: a lost reservation or an unsettled failure."""
        r = item.reservation
        event = self.decode(r)
        if item.kind is ReclaimKind.LOST:
            # An invalid payload whose worker died before failing it is recorded with why it can
            # never run, not as a lost worker.
            error = event.error or (JobCancelledError(item.cancel_reason) if item.cancel_reason is not None else
                                    TtrExceededError(f"TTR exceeded / worker lost: no outcome within the job's "
                                                     f"TTR of {r.ttr} s"))
            self.failed(r, event, error, "")
            self.free_slot(r, event)  # the lost worker's slot went with its lease: wake the key's next job
            return
        failure = item.failure
        event.error = RecordedError(
            failure.error_class if failure else "WorkerLostError",
            failure.message if failure else "the worker was lost before afterError ran",
            failure.code if failure else "",
        )
        event.traceback = failure.traceback if failure else ""
        delay = failure.retry_delay if failure else None
        event.retry = delay is not None
        self._after_error(r, event, delay)

    # -- follow-up failures -----------------------------------------------------------------------

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
                    error_class=type(f.error).__name__, message=storable(error_message(f.error)),
                    traceback=storable(f.traceback), at=time.time(),
                ))
            except Exception:  # noqa: BLE001 - keeping the record must not take the worker down
                log.exception("[%s] could not record follow-up failure", event.id)

    def drain(self) -> None:
        """Run everything due in this process, without signals or worker events (``driver: sync``)."""
        r = self.driver.reserve(0)
        while r is not None:
            held_since = self.clock()
            event = self.begin(r, limits=False)  # inline runs: limits are for workers
            if event.error is not None:
                self.failed(r, event, event.error)
                r = self.driver.reserve(0)
                continue
            if event.handled:
                r = self.ack(r, reserve_next=True)[1]
                continue
            outcome = self.execute(event)
            if outcome.ok:
                r = self.succeeded(r, event, outcome, held_since=held_since, reserve_next=True)[1]
            else:
                self.failed(r, event, outcome.error, outcome.traceback, outcome=outcome)  # type: ignore[arg-type]
                r = self.driver.reserve(0)


def _peak_rss_mib() -> float:
    """Peak RSS of the process that ran the job (an isolated child's own), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


_TTR, _ATTEMPT, _PRIORITY = bounds.TTR, bounds.ATTEMPT, bounds.PRIORITY


def _stored_numbers_ok(r: Reservation) -> bool:
    """The numbers stored with the job are in their ranges (the hot path: plain comparisons)."""
    return (_TTR.low <= r.ttr <= _TTR.high and _ATTEMPT.low <= r.attempt <= _ATTEMPT.high
            and _PRIORITY.low <= r.priority <= _PRIORITY.high)


def _stored_problem(r: Reservation) -> str:
    """Why a job's stored state cannot be trusted: it was written past the checks of push (another
    producer, a hand edit, an older version) or cannot be read at all. Such a job is failed as
    invalid instead of run: a TTR of 10^12 s would strand it for ages, a negative one break the
    isolate wait (#11)."""
    if r.unreadable:
        return f"the job's stored state cannot be read ({r.unreadable})"
    for bound, value in ((_TTR, r.ttr), (_ATTEMPT, r.attempt), (_PRIORITY, r.priority)):
        problem = bound.problem(value)
        if problem is not None:
            return f"stored {bound.name} {problem}"
    return "the job's stored state is out of range"


def _safe_name(payload: bytes) -> str:
    """The job name a payload claims, for display; never raises (the payload may be anything)."""
    try:
        return peek_name(payload) or "unknown job"
    except Exception:  # noqa: BLE001 - e.g. nesting too deep for the JSON parser
        return "unknown job"
