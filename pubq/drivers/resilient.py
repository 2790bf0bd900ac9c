"""A driver that rides out backend outages: say so, back off, reconnect, go on.

:class:`ResilientDriver` implements the :class:`~pubq.drivers.base.Driver` contract by calling the
same method of the driver it wraps, retrying a :class:`~pubq.errors.DriverError` with backoff until
its :class:`OutageBudget` runs out. Each wrapped call is one atomic driver step, so retrying it after
a connection error is safe, except for a step that landed just before the connection broke: a
settling write that then answers False on the retry is reported as done (its first try landed).
A :class:`~pubq.errors.BackendDataError` (the backend refused a value) is not an outage: it is
raised at once, never retried.

The budget belongs to whoever runs the command: one-shot commands get one budget for the whole
command (``give_up_after`` seconds, 10 by default), ``run`` ends with ``--max-seconds``, ``listen``
never gives up. A worker takes its own view with :meth:`ResilientDriver.with_budget`; the queue's
driver is never swapped or mutated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import BackendDataError, BackendUnavailableError, DriverError
from .base import (
    DEFAULT_PRIORITY,
    CancelResult,
    Counts,
    Driver,
    FailedJob,
    FailureInfo,
    FollowUpFailure,
    JobInfo,
    JobPage,
    JobStatus,
    Policy,
    PushItem,
    Reclaimed,
    Reservation,
    ThroughputBucket,
    UniqueSpec,
    WorkerInfo,
)

log = logging.getLogger("pubq.driver")
T = TypeVar("T")

#: Longest single sleep between two checks of ``abort`` (a stop request is noticed this fast).
_SLICE = 0.1


@dataclass(frozen=True)
class OutageBudget:
    """How long calls keep retrying an unreachable backend, and whom to tell."""

    #: Seconds one continuous outage may last before a call gives up; None: never.
    give_up_after: float | None = 10.0
    #: Monotonic time after which no call retries any more (a whole command's budget); None: none.
    deadline: float | None = None
    #: Checked while waiting: True stops retrying at once (the worker is stopping).
    abort: Callable[[], bool] | None = None
    #: Called once when an outage starts (with the error) and once when it ends (with its length).
    on_lost: Callable[[DriverError], None] | None = None
    on_back: Callable[[float], None] | None = None


def _landed(result: Any) -> Any:
    """A settling write refused on its retry: its first try landed before the link broke."""
    if result is False:
        return True
    if isinstance(result, tuple) and result and result[0] is False:  # ack_and_reserve
        return (True, *result[1:])
    if isinstance(result, tuple) and result and isinstance(result[0], list):  # ack_and_reserve_many
        return ([True] * len(result[0]), *result[1:])
    return result


class ResilientDriver:
    """Retries another driver's steps through outages, within an :class:`OutageBudget`."""

    def __init__(
        self,
        driver: Driver,
        *,
        budget: OutageBudget | None = None,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        label: str = "",
        holder: str = "",
    ) -> None:
        self.inner = driver
        #: The worker id this view reserves under (a worker's view); '' for a command's.
        self.holder = holder
        self.budget = budget or OutageBudget()
        self.max_backoff = max_backoff
        self._sleep = sleep
        #: Who is speaking in messages ("queue copy-asset"); the inner driver's errors name only
        #: the backend, so a message names the queue once.
        self.label = label
        #: Monotonic time the current outage began (None while the backend answers).
        self._down_since: float | None = None

    def with_budget(self, budget: OutageBudget, *, holder: str | None = None) -> ResilientDriver:
        """Another view of the same driver with its own budget (a worker's, a command's) and, for a
        worker, the holder id its reserves record."""
        return ResilientDriver(self.inner, budget=budget, max_backoff=self.max_backoff, sleep=self._sleep,
                               label=self.label, holder=self.holder if holder is None else holder)

    @property
    def channel(self) -> str:
        return self.inner.channel

    @property
    def policy(self) -> Policy:
        return self.inner.policy

    # -- the retry loop -------------------------------------------------------------------

    def _call(self, name: str, fn: Callable[..., T], *args: Any, settles: bool = False, **kwargs: Any) -> T:
        delay = 0.1
        retried = False
        while True:
            try:
                result = fn(*args, **kwargs)
            except BackendDataError:
                raise  # the backend answered: the input is bad, retrying cannot help (#11)
            except DriverError as exc:
                retried = True
                self._wait_or_give_up(name, exc, delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            if self._down_since is not None:
                self._back()
            if retried and settles:
                return _landed(result)
            return result

    def _prefix(self) -> str:
        return f"{self.label}: " if self.label else ""

    def _wait_or_give_up(self, name: str, exc: DriverError, delay: float) -> None:
        now = time.monotonic()
        budget = self.budget
        if self._down_since is None:
            self._down_since = now
            log.warning("%sbackend lost (%s): %s; retrying with backoff", self._prefix(), name, exc)
            if budget.on_lost is not None:
                budget.on_lost(exc)
        down = now - self._down_since
        left = [] if budget.give_up_after is None else [budget.give_up_after - down]
        if budget.deadline is not None:
            left.append(budget.deadline - now)
        if left and min(left) <= 0:
            raise BackendUnavailableError(f"{self._prefix()}backend unavailable for {down:.0f} s: {exc}") from exc
        self._check_abort(exc)
        pause = min([delay, *left]) if left else delay
        end = now + max(pause, 0.01)
        while (remaining := end - time.monotonic()) > 0:
            self._sleep(min(remaining, _SLICE))
            self._check_abort(exc)

    def _check_abort(self, exc: DriverError) -> None:
        """Stop retrying at once when the owner is stopping (an idle worker exits at once)."""
        if self.budget.abort is not None and self.budget.abort():
            raise BackendUnavailableError(f"{self._prefix()}backend unavailable: {exc}") from exc

    def _back(self) -> None:
        down = time.monotonic() - (self._down_since or time.monotonic())
        self._down_since = None
        log.warning("%sbackend is back after %.1f s", self._prefix(), down)
        if self.budget.on_back is not None:
            self.budget.on_back(down)

    # -- the Driver contract, each step through the retry loop ----------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        return self._call("push", self.inner.push, payload, ttr=ttr, delay=delay, priority=priority)

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        return self._call("push_many", self.inner.push_many, items)

    def push_unique(
        self, payload: bytes, *, ttr: int, unique: UniqueSpec, delay: float = 0, priority: int = DEFAULT_PRIORITY,
    ) -> tuple[int, bool]:
        # Retrying is safe: a push that landed before the link broke holds the key, so its retry
        # answers (that id, False), and the job is stored once.
        return self._call("push_unique", self.inner.push_unique, payload, ttr=ttr, unique=unique, delay=delay,
                          priority=priority)

    def mark_get(self, name: str) -> float | None:
        return self._call("mark_get", self.inner.mark_get, name)

    def mark_advance(self, name: str, value: float) -> float:
        return self._call("mark_advance", self.inner.mark_advance, name, value)

    def reserve(self, timeout: float = 0, *, holder: str = "") -> Reservation | None:
        return self._call("reserve", self.inner.reserve, timeout, holder=holder or self.holder)

    def ack(self, r: Reservation) -> bool:
        return self._call("ack", self.inner.ack, r, settles=True)

    def ack_and_reserve(self, r: Reservation, *, holder: str = "") -> tuple[bool, Reservation | None]:
        return self._call("ack_and_reserve", self.inner.ack_and_reserve, r, settles=True,
                          holder=holder or self.holder)

    @property
    def prefetch(self) -> bool:
        return bool(getattr(self.inner, "prefetch", False))

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "", ahead: int = 0) -> list[Reservation]:
        extra = {"ahead": ahead} if ahead else {}
        return self._call("reserve_many", self.inner.reserve_many, n, timeout, holder=holder or self.holder,
                          **extra)

    def ack_and_reserve_many(self, acks: Sequence[Reservation], n: int, *, holder: str = "",
                             ahead: int = 0) -> tuple[list[bool], list[Reservation]]:
        """A retry after a lost link reports every ack as landed (see ``_landed``)."""
        extra = {"ahead": ahead} if ahead else {}
        flags, found = self._call("ack_and_reserve_many", self.inner.ack_and_reserve_many, acks, n, settles=True,
                                  holder=holder or self.holder, **extra)
        return flags, found

    def extend(self, r: Reservation, seconds: float) -> bool:
        return self._call("extend", self.inner.extend, r, seconds)

    def release(self, r: Reservation) -> bool:
        return self._call("release", self.inner.release, r, settles=True)

    def retry_later(self, r: Reservation, delay: float, info: FailureInfo | None = None) -> bool:
        return self._call("retry_later", self.inner.retry_later, r, delay, info, settles=True)

    def fail(self, r: Reservation, info: FailureInfo) -> bool:
        return self._call("fail", self.inner.fail, r, info, settles=True)

    def settle(self, r: Reservation) -> bool:
        return self._call("settle", self.inner.settle, r, settles=True)

    def unfail(self, r: Reservation, delay: float) -> bool:
        return self._call("unfail", self.inner.unfail, r, delay, settles=True)

    def reclaim_expired(self, limit: int = 100) -> list[Reclaimed]:
        return self._call("reclaim_expired", self.inner.reclaim_expired, limit)

    def status(self, job_id: int) -> JobStatus:
        return self._call("status", self.inner.status, job_id)

    def get(self, job_id: int) -> JobInfo | None:
        return self._call("get", self.inner.get, job_id)

    def counts(self) -> Counts:
        return self._call("counts", self.inner.counts)

    def remove(self, job_id: int) -> bool:
        return self._call("remove", self.inner.remove, job_id)

    def clear(self) -> int:
        return self._call("clear", self.inner.clear)

    def failed_list(self, offset: int = 0, limit: int = 50) -> list[FailedJob]:
        return self._call("failed_list", self.inner.failed_list, offset, limit)

    def failed_get(self, job_id: int) -> FailedJob | None:
        return self._call("failed_get", self.inner.failed_get, job_id)

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        return self._call("requeue_failed", self.inner.requeue_failed, job_id, reset_attempts=reset_attempts,
                          delay=delay)

    def failed_purge(self) -> int:
        return self._call("failed_purge", self.inner.failed_purge)

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        return self._call("record_follow_up", self.inner.record_follow_up, failure)

    def follow_up_list(self, offset: int = 0, limit: int = 50) -> list[FollowUpFailure]:
        return self._call("follow_up_list", self.inner.follow_up_list, offset, limit)

    def now(self) -> float:
        return self._call("now", self.inner.now)

    def ping(self) -> None:
        return self._call("ping", self.inner.ping)

    def list_jobs(self, state: JobStatus, limit: int = 50, after: int | None = None) -> JobPage:
        return self._call("list_jobs", self.inner.list_jobs, state, limit, after)

    def pause(self) -> None:
        return self._call("pause", self.inner.pause)

    def resume(self) -> None:
        return self._call("resume", self.inner.resume)

    def paused(self) -> bool:
        return self._call("paused", self.inner.paused)

    def cancel(self, job_id: int, reason: str = "") -> CancelResult:
        # A cancel that landed just before the link broke answers FINISHED on its retry; the
        # unsettled entry it left is then settled by a worker's reclaim (afterError runs there).
        return self._call("cancel", self.inner.cancel, job_id, reason)

    def cancel_requested(self, r: Reservation) -> str | None:
        return self._call("cancel_requested", self.inner.cancel_requested, r)

    def progress(self, r: Reservation, fraction: float, message: str = "") -> bool:
        return self._call("progress", self.inner.progress, r, fraction, message)

    def register_worker(self, info: WorkerInfo) -> None:
        return self._call("register_worker", self.inner.register_worker, info)

    def heartbeat(self, info: WorkerInfo) -> None:
        return self._call("heartbeat", self.inner.heartbeat, info)

    def unregister_worker(self, worker_id: str) -> None:
        return self._call("unregister_worker", self.inner.unregister_worker, worker_id)

    def workers(self, *, sweep: bool = True) -> list[WorkerInfo]:
        return self._call("workers", lambda: self.inner.workers(sweep=sweep))

    def record_throughput(self, done: int, failed: int, minute: int | None = None) -> None:
        # Not retried: a beat whose add may have landed before the link broke must not add twice;
        # the caller keeps the counts and adds them with its next beat.
        return self.inner.record_throughput(done, failed, minute)

    def throughput(self, since: int) -> list[ThroughputBucket]:
        return self._call("throughput", self.inner.throughput, since)

    def limit_acquire(self, r: Reservation, key: str, *, concurrency: int = 0, rate: int = 0, per: float = 1.0,
                      jitter: float = 0.0, burst: int = 0) -> float | None:
        return self._call("limit_acquire", self.inner.limit_acquire, r, key, concurrency=concurrency,
                          rate=rate, per=per, jitter=jitter, burst=burst)

    def limit_release(self, r: Reservation, key: str) -> None:
        return self._call("limit_release", self.inner.limit_release, r, key)

    def close(self) -> None:
        self.inner.close()

    def migrate(self) -> Any:
        """The db driver's schema migration, when the wrapped driver has one (``pubq db migrate``)."""
        migrate = getattr(self.inner, "migrate", None)
        return None if migrate is None else self._call("migrate", migrate)

    def __repr__(self) -> str:
        return f"ResilientDriver({self.inner!r})"
