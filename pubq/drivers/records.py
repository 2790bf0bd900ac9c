"""The values of the driver contract: what a driver takes and hands back, and its settings.

Frozen dataclasses and enums only, no behaviour beyond (de)serializing a worker entry: the meaning of
each state and write is the contract's, documented in :mod:`pubq.drivers.base` (lease tokens, one
source state per write, attempt history, operations, per-key limits). Kept apart from the
:class:`~pubq.drivers.base.Driver` protocol so that a module that only reads or builds these values
(the CLI's renderers, the dashboard, the SQL row mappers) needs nothing else of the contract.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, fields, replace

from ..bounds import DEFAULT_FAILED_LIMIT, DEFAULT_PRIORITY, UNIQUE_UNTIL

#: Failed attempts a job keeps in its history by default.
DEFAULT_HISTORY_LIMIT = 10

__all__ = [
    "CANCELLED_CODE", "DEFAULT_FAILED_LIMIT", "DEFAULT_HISTORY_LIMIT", "DEFAULT_PRIORITY", "Attempt",
    "CancelResult", "CancelState", "Counts", "FailedJob", "FailureInfo", "FollowUpFailure", "JobInfo",
    "JobPage", "JobStatus", "Policy", "PushItem", "Reclaimed", "ReclaimKind", "Reservation", "WorkerInfo",
    "LISTABLE_STATES", "THROUGHPUT_KEEP", "ThroughputBucket", "UNIQUE_UNTIL", "UniqueSpec",
]

#: Minutes of per-minute throughput a backend keeps (older buckets are dropped by the writes).
THROUGHPUT_KEEP = 120

#: The stable error code of a cancelled job (``JobCancelledError.code``); ``settle`` counts entries
#: carrying it in ``Counts.cancelled``.
CANCELLED_CODE = "cancelled"


class JobStatus(enum.Enum):
    WAITING = "waiting"
    DELAYED = "delayed"
    RESERVED = "reserved"
    DONE = "done"  # acked, or never known: ids are not kept after ack
    FAILED = "failed"  # in the failed registry


@dataclass(frozen=True)
class Policy:
    """How a driver treats reservations and its registries; fixed for the driver's lifetime."""

    #: Extra seconds past a reservation's TTR deadline before another worker may reclaim it.
    grace: float = 10.0
    #: Seconds a reclaimed job (lost, or an unsettled failure) is held by the worker recovering it.
    hold: float = 60.0
    #: Seconds a failed attempt may stay unsettled (its afterError handlers running) before another
    #: worker runs the handlers again.
    settle_within: float = 60.0
    #: Failed-registry size; the oldest entries are dropped past it.
    failed_limit: int = DEFAULT_FAILED_LIMIT
    #: Follow-up failure records kept; the oldest are dropped past it.
    follow_up_limit: int = DEFAULT_FAILED_LIMIT
    #: Failed attempts a job keeps in its history; the oldest are dropped past it.
    history_limit: int = DEFAULT_HISTORY_LIMIT


@dataclass(frozen=True)
class PushItem:
    """One job to store. The core has checked every field (:mod:`pubq.bounds`) before a driver sees it."""

    payload: bytes
    ttr: int
    delay: float = 0.0
    priority: int = DEFAULT_PRIORITY


#: Where a unique key is released (spec §7.9), :data:`pubq.bounds.UNIQUE_UNTIL`: ``done`` when the
#: job reaches a final state (done, failed finally, removed, cancelled); ``start`` when it is first
#: reserved; ``ttl`` only when its time runs out (``UniqueSpec.ttl``), whatever the job does meanwhile.


@dataclass(frozen=True)
class UniqueSpec:
    """The unique key of a push, and when it is released (the core has checked it)."""

    key: str
    #: One of :data:`UNIQUE_UNTIL`.
    until: str = "done"
    #: Seconds after the push at which the key is released at the latest; None: no time limit
    #: (required for ``until="ttl"``).
    ttl: float | None = None


@dataclass(frozen=True)
class Reservation:
    """A job held by one worker under one lease. ``attempt`` is 1 on the first run."""

    job_id: int
    payload: bytes
    attempt: int
    ttr: int
    #: Backend time (unix seconds) after which the job counts as lost (the policy's grace is added).
    deadline: float
    #: The lease token: unique among this job's reservations; settling writes must present it.
    token: int
    priority: int = DEFAULT_PRIORITY
    #: Backend time the job was first pushed.
    pushed_at: float = 0.0
    #: Why the job's stored state could not be read ('' when it could): a driver hands such a job
    #: out instead of dropping it, and the runner fails it as an invalid job, never runs it (#11).
    unreadable: str = ""


@dataclass(frozen=True)
class FailureInfo:
    """Why an attempt failed, and what the worker decided when it wrote the failure."""

    #: The exception's class name.
    error_class: str
    message: str
    traceback: str = ""
    #: Stable error code (``PubqError.code``) when there is one.
    code: str = ""
    #: Seconds until the next attempt when the worker decided to retry; None for a final failure.
    #: A recovering worker re-runs the handlers with this decision.
    retry_delay: float | None = None


@dataclass(frozen=True)
class Attempt:
    """One failed attempt in a job's history (see "Attempt history" in :mod:`pubq.drivers.base`)."""

    #: The attempt's number (1 on the first run; counting restarts after an operator's retry).
    attempt: int
    error_class: str
    message: str
    traceback: str
    code: str
    #: Backend time the failure was written.
    failed_at: float


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
    #: True while the attempt's afterError handlers are not known to have run (see ``settle``).
    unsettled: bool = False
    #: The recorded decision of an unsettled entry: seconds to the next attempt, None when final.
    retry_delay: float | None = None
    #: Every failed attempt kept for this job, oldest first (``failed_get`` fills it; a listing may not).
    history: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class FollowUpFailure:
    """A raising afterExec/afterError handler, kept so it can be counted and listed."""

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
    #: A reservation whose deadline (+ grace) passed: the worker died or hung. It is re-reserved
    #: for the caller (same attempt, a new token, deadline now + hold), who runs the failure path
    #: with a WorkerLostError/TtrExceededError.
    LOST = "lost"
    #: A failed attempt whose afterError handlers were never confirmed (the worker died after
    #: ``fail``). It gets a new token and settle deadline; the caller runs the handlers, then
    #: settles or unfails it.
    UNSETTLED = "unsettled"


@dataclass(frozen=True)
class Reclaimed:
    kind: ReclaimKind
    reservation: Reservation
    #: For UNSETTLED: the stored failure, so the handlers see the original error and decision.
    failure: FailedJob | None = None
    #: For LOST: how far past its TTR deadline the job was found (seconds).
    overdue: float = 0.0
    #: For LOST: the reason of a cancel requested while the dead worker held it (None: none). The
    #: recovering worker then ends the job as cancelled instead of as lost.
    cancel_reason: str | None = None


@dataclass(frozen=True)
class Counts:
    """Stored counters; reading them is O(1) on every driver."""

    waiting: int = 0
    delayed: int = 0
    reserved: int = 0
    #: Successes since the queue was created.
    done: int = 0
    #: The failed registry's current size (unsettled entries included).
    failed: int = 0
    #: Final failures since the queue was created (counted when settled).
    failed_total: int = 0
    follow_up_failed: int = 0
    #: Failed attempts followed by another attempt (``retry_later`` and ``unfail``) since creation.
    retried: int = 0
    #: Settled final failures that were cancels (error code ``cancelled``) since creation; they are
    #: also counted in ``failed_total``.
    cancelled: int = 0
    #: Reservations put back because their limit key was at its limit (``limit_acquire``) since
    #: creation; not attempts, so counted nowhere else.
    limited: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "waiting": self.waiting,
            "delayed": self.delayed,
            "reserved": self.reserved,
            "done": self.done,
            "failed": self.failed,
            "failed_total": self.failed_total,
            "follow_up_failed": self.follow_up_failed,
            "retried": self.retried,
            "cancelled": self.cancelled,
            "limited": self.limited,
        }


@dataclass(frozen=True)
class JobInfo:
    """What a driver knows of one job id now."""

    job_id: int
    status: JobStatus
    payload: bytes
    attempt: int
    ttr: int
    priority: int
    pushed_at: float
    #: Delayed: when the job is due (a driver may also give it for a waiting job).
    due_at: float | None = None
    #: Reserved: the current lease's TTR deadline.
    deadline: float | None = None
    #: Failed: when, why, and whether its handlers are still unconfirmed.
    failed_at: float | None = None
    error_class: str = ""
    message: str = ""
    code: str = ""
    unsettled: bool = False
    #: Reserved: the worker id of the holder ('' when the reserve named none).
    holder: str = ""
    #: Reserved: the last progress the job reported (0…1) and its message; None before any.
    progress: float | None = None
    progress_message: str = ""
    #: Reserved: the reason of a pending cancel request (None: no request).
    cancel_reason: str | None = None

    @property
    def started_at(self) -> float | None:
        """Reserved: when this attempt was reserved (backend time)."""
        return None if self.deadline is None else self.deadline - self.ttr


#: States ``list_jobs`` pages through.
LISTABLE_STATES = (JobStatus.WAITING, JobStatus.DELAYED, JobStatus.RESERVED, JobStatus.FAILED)


@dataclass(frozen=True)
class JobPage:
    """One page of ``list_jobs``: the jobs in the state's order, and the cursor of the next page."""

    jobs: list[JobInfo]
    #: Give it as ``after`` to get the next page; None when this page is the last.
    next_after: int | None = None


class CancelState(enum.Enum):
    #: Was waiting or delayed: now a failed, unsettled attempt under ``CancelResult.reservation``;
    #: the caller runs the afterError handlers (retry false) and settles it, as for any failure.
    CANCELLED = "cancelled"
    #: Is reserved: a cancel request is stored with the job; its holder acts on it.
    REQUESTED = "requested"
    #: Already done or in the failed registry (or an id this queue handed out and no longer holds).
    FINISHED = "finished"
    #: An id this queue never handed out.
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class CancelResult:
    state: CancelState
    reservation: Reservation | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """One worker's registry entry, as it beats it (``last_seen`` and ``lost`` are the reader's).

    Stored as opaque JSON by the drivers; ``heartbeat`` is the worker's beat interval: it is *lost*
    when ``last_seen`` is older than 3 beats, and its entry expires after :data:`WORKER_EXPIRY_BEATS`.
    """

    worker_id: str
    queue: str
    host: str
    pid: int
    started_at: float
    #: idle | busy | paused | stopping
    state: str = "idle"
    heartbeat: float = 2.0
    #: The oldest job in flight (the ``job_*``, ``attempt`` and ``progress*`` fields are its own).
    job_id: int | None = None
    job_name: str = ""
    attempt: int = 0
    job_started_at: float | None = None
    job_deadline: float | None = None
    progress: float | None = None
    progress_message: str = ""
    done: int = 0
    failed: int = 0
    rss_mib: float = 0.0
    #: Jobs the worker may run at once (``--concurrency``), how many run now, and their ids, oldest
    #: first (an entry written before these fields existed reads as 1, 0, none).
    concurrency: int = 1
    in_flight: int = 0
    job_ids: list[int] = field(default_factory=list)
    #: Backend time of the last beat (set by the driver when read).
    last_seen: float = 0.0
    #: Set when read: no beat for 3 intervals.
    lost: bool = False

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k not in ("last_seen", "lost")}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, last_seen: float, now: float) -> WorkerInfo | None:
        """The entry read back; None when it is not one (written by something else)."""
        try:
            data = json.loads(text)
            names = {f.name for f in fields(cls)}
            info = cls(**{k: v for k, v in data.items() if k in names})
        except (TypeError, ValueError):
            return None
        return replace(info, last_seen=last_seen, lost=now - last_seen > LOST_BEATS * info.heartbeat)

    @property
    def ttl(self) -> float:
        """Seconds the entry lives after a beat."""
        return WORKER_EXPIRY_BEATS * max(self.heartbeat, 0.1)


#: A worker is lost after this many beats without one (spec §7.2) ...
LOST_BEATS = 3
#: ... and its entry is dropped after this many.
WORKER_EXPIRY_BEATS = 10


@dataclass(frozen=True)
class ThroughputBucket:
    """Jobs of one queue that finished in one minute (``minute`` = unix seconds // 60, backend clock):
    ``done`` acked, ``failed`` failed attempts (a retried attempt counts too)."""

    minute: int
    done: int
    failed: int
