"""The driver contract: storage of opaque job payloads with an atomic lifecycle.

A driver never parses a payload (JSON lives in :mod:`pubq.queue`). Every method is one atomic step
on the backend (one Lua script, one transaction). Times are the backend's clock (Redis ``TIME``, the
database's ``now``) as float unix seconds, so workers on hosts with skewed clocks agree.

States of a job::

    push ──► waiting ──reserve──► reserved ──ack──► done (counted, payload dropped)
      │        ▲                    │  │
      └► delayed ◄──retry_later─────┘  └──fail──► failed registry (payload, error, attempts kept)
               ▲                                       │
               └──────────── requeue_failed ───────────┘

Every transition out of *reserved* is guarded by ``(job_id, attempt)``: a worker whose reservation
was reclaimed (TTR passed) gets ``False`` back and must not count the job again. That boolean is
what makes the final failure of a job happen exactly once.

Final failures are *settled* in two steps: :meth:`Driver.fail` writes the failed-registry entry at once
(failure is visible immediately) and marks it *unsettled* with a deadline; the worker then runs the
``afterError`` handlers and calls :meth:`Driver.settle`. A worker that dies in between leaves an
unsettled entry that :meth:`Driver.reclaim_expired` hands to another worker, which runs the handlers.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

#: Default priority; lower runs first. Range 0–1,000,000 (spec §5.6).
DEFAULT_PRIORITY = 1024
MIN_PRIORITY = 0
MAX_PRIORITY = 1_000_000
#: Failed-registry size cap; the oldest entries are dropped past it (spec §5.9).
DEFAULT_FAILED_LIMIT = 10_000


class JobStatus(enum.Enum):
    WAITING = "waiting"
    DELAYED = "delayed"
    RESERVED = "reserved"
    DONE = "done"  # acked, or never known: ids are not kept after ack
    FAILED = "failed"  # in the failed registry


@dataclass(frozen=True)
class PushItem:
    payload: bytes
    ttr: int
    delay: float = 0.0
    priority: int = DEFAULT_PRIORITY


@dataclass(frozen=True)
class Reservation:
    """A job held by one worker. ``attempt`` is 1 on the first run."""

    job_id: int
    payload: bytes
    attempt: int
    ttr: int
    #: Backend time (unix seconds) after which the job counts as lost (ttr; grace is added on top).
    deadline: float
    priority: int = DEFAULT_PRIORITY
    #: Backend time the job was first pushed.
    pushed_at: float = 0.0


@dataclass(frozen=True)
class FailureInfo:
    """Why an attempt failed. ``error_class`` is the exception's qualified name."""

    error_class: str
    message: str
    traceback: str = ""
    #: Stable error code (``PubqError.code``) when there is one.
    code: str = ""


@dataclass(frozen=True)
class FailedJob:
    """One entry of the failed registry."""

    job_id: int
    payload: bytes
    attempts: int
    error_class: str
    message: str
    traceback: str
    code: str
    pushed_at: float
    failed_at: float
    ttr: int = 0
    priority: int = DEFAULT_PRIORITY
    #: True until the final-failure handlers are known to have run (see :meth:`Driver.settle`).
    unsettled: bool = False


@dataclass(frozen=True)
class FollowUpFailure:
    """A raising afterExec/afterError handler, kept so it can be counted and listed (spec §3)."""

    job_id: int
    attempt: int
    event: str  # "afterExec" | "afterError"
    handler: str
    error_class: str
    message: str
    traceback: str
    at: float
    seq: int = 0


class ReclaimKind(enum.Enum):
    #: A reservation whose deadline (+ grace) passed: the worker died or hung. The job is
    #: re-reserved (same attempt, new deadline) for the caller, who runs the normal failure path
    #: with a WorkerLostError/TtrExceededError and then calls retry_later or fail.
    LOST = "lost"
    #: A final failure whose afterError handlers were never confirmed (the worker died after
    #: ``fail``). Its settle deadline was pushed forward; the caller runs the handlers, then settles.
    UNSETTLED = "unsettled"


@dataclass(frozen=True)
class Reclaimed:
    kind: ReclaimKind
    reservation: Reservation
    #: For UNSETTLED: the stored failure, so handlers see the original error.
    failure: FailedJob | None = None
    #: For LOST: how far past its ttr deadline the job was found (seconds).
    overdue: float = 0.0


@dataclass(frozen=True)
class Counts:
    """Stored counters; reading them is O(1) on every driver (spec §5.9)."""

    waiting: int = 0
    delayed: int = 0
    reserved: int = 0
    done: int = 0
    failed: int = 0
    failed_total: int = 0
    follow_up_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "waiting": self.waiting,
            "delayed": self.delayed,
            "reserved": self.reserved,
            "done": self.done,
            "failed": self.failed,
            "failed_total": self.failed_total,
            "follow_up_failed": self.follow_up_failed,
        }


@dataclass(frozen=True)
class JobInfo:
    """What a driver knows of one job id (``status``/inspection)."""

    job_id: int
    status: JobStatus
    payload: bytes | None = None
    attempt: int = 0
    ttr: int = 0
    priority: int = DEFAULT_PRIORITY
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Driver(Protocol):
    """One queue on one backend. Instances are per process; not shared across ``fork``."""

    #: The queue's channel (Redis key prefix / db channel column).
    channel: str

    # -- producing ----------------------------------------------------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        """Store a job; returns its id (integers increasing per queue, never reused, even after clear)."""
        ...

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        """Store many jobs in as few round trips as the backend allows; ids in input order."""
        ...

    # -- consuming ----------------------------------------------------------------------

    def reserve(self, timeout: float = 0, *, grace: float = 0) -> Reservation | None:
        """Take the next due job in one atomic step (due delayed jobs first become waiting).

        Order: lowest priority value first, then push order. Increments the attempt and records the
        deadline ``now + ttr`` (reclaim only after ``deadline + grace``). ``timeout`` > 0 waits up to
        that many seconds (blocking wake-up, shortened to the next delayed job's due time) while
        nothing is due; 0 returns at once. A worker killed while waiting holds no job.
        """
        ...

    def ack(self, r: Reservation) -> bool:
        """Job done: count it, drop the payload. False if this reservation was no longer held."""
        ...

    def ack_and_reserve(self, r: Reservation, *, grace: float = 0) -> tuple[bool, Reservation | None]:
        """``ack(r)`` then a non-blocking ``reserve`` fused into one round trip where possible."""
        ...

    def retry_later(self, job_id: int, attempt: int, delay: float) -> bool:
        """Schedule the next attempt after ``delay`` s (0 → waiting at once).

        Allowed from *reserved* holding ``attempt``, or from the failed registry when the entry's
        attempts equal ``attempt`` and it is still unsettled (an afterError handler set retry=True);
        that undoes the entry's ``failed_total`` increment, since the final failure did not happen.
        False otherwise (reclaimed, removed, already moved).
        """
        ...

    def fail(self, job_id: int, attempt: int, info: FailureInfo, *, settle_within: float = 60) -> bool:
        """Final failure: move to the failed registry at once, unsettled for ``settle_within`` s.

        Allowed from *reserved* holding ``attempt``, or from waiting/delayed when the job's attempt
        count equals ``attempt`` and no later reserve happened (an afterError handler set retry=False).
        Increments ``failed_total``; trims the registry to its cap. False if not allowed.
        """
        ...

    def settle(self, job_id: int, attempt: int) -> bool:
        """The final-failure handlers of (job_id, attempt) have run; False if nothing was pending."""
        ...

    def release(self, r: Reservation) -> bool:
        """Put a held job back to waiting without counting the attempt (hard stop, spec §5.8)."""
        ...

    def reclaim_expired(self, limit: int = 100, *, hold: float = 60) -> list[Reclaimed]:
        """Find lost reservations and unsettled failures past their deadline; claim them for ``hold`` s."""
        ...

    # -- inspection and maintenance ------------------------------------------------------

    def status(self, job_id: int) -> JobStatus:
        ...

    def get(self, job_id: int) -> JobInfo | None:
        """The job as stored now; None when the id is not waiting/delayed/reserved/failed."""
        ...

    def counts(self) -> Counts:
        ...

    def remove(self, job_id: int) -> bool:
        """Delete the job from whatever state it is in (failed registry included)."""
        ...

    def clear(self) -> int:
        """Delete this queue's jobs, failed entries and follow-up records (never another queue's).

        The id sequence and the done/failed_total counters are kept. Returns how many jobs went.
        """
        ...

    def failed_list(self, offset: int = 0, limit: int = 50) -> list[FailedJob]:
        """Newest first."""
        ...

    def failed_get(self, job_id: int) -> FailedJob | None:
        ...

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        """Operator retry: failed registry → waiting (or delayed). Settles the entry."""
        ...

    def failed_purge(self) -> int:
        ...

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        """Keep a raising handler's error (bounded list) and count it."""
        ...

    def follow_up_list(self, offset: int = 0, limit: int = 50) -> list[FollowUpFailure]:
        """Newest first."""
        ...

    def now(self) -> float:
        """The backend's clock, unix seconds."""
        ...

    def ping(self) -> None:
        """Raise DriverError when the backend does not answer."""
        ...

    def close(self) -> None:
        ...


class BaseDriver:
    """Defaults shared by drivers; a concrete driver overrides what it can do in fewer round trips."""

    channel: str = ""
    failed_limit: int = DEFAULT_FAILED_LIMIT
    follow_up_limit: int = DEFAULT_FAILED_LIMIT

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        return [self.push(i.payload, ttr=i.ttr, delay=i.delay, priority=i.priority) for i in items]  # type: ignore[attr-defined]

    def ack_and_reserve(self, r: Reservation, *, grace: float = 0) -> tuple[bool, Reservation | None]:
        ok = self.ack(r)  # type: ignore[attr-defined]
        return ok, self.reserve(0, grace=grace)  # type: ignore[attr-defined]

    def status(self, job_id: int) -> JobStatus:
        info = self.get(job_id)  # type: ignore[attr-defined]
        return JobStatus.DONE if info is None else info.status


def check_priority(priority: int) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError("priority must be an integer")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
    return priority
