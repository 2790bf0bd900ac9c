"""The driver contract: storage of opaque job payloads with an atomic lifecycle.

A driver never parses a payload (JSON lives in :mod:`pubq.codec`), and never checks the numbers
of a push (the core checks them once, :func:`pubq.bounds`). Every method is one atomic step on the
backend (one Lua script, one transaction). Times are the backend's clock (Redis ``TIME``, the
database's ``now``) as float unix seconds, so workers on hosts with skewed clocks agree.

States of a job::

    push ─► waiting ──reserve──► reserved ──ack──► done (counted, payload dropped)
      │       ▲    ▲              │  │  │
      │       │    └───release────┘  │  └─retry_later─► delayed ─(due)─► waiting
      └─► delayed                    │
                                     └─fail─► failed, unsettled ──settle──► failed (registry)
                                                     │
                                                     └──unfail──► delayed / waiting

**Lease tokens.** Every reservation — by ``reserve``, ``ack_and_reserve`` or ``reclaim_expired`` —
carries a fresh ``token`` that no earlier reservation of that job had. Every write that settles a
reservation (``ack``, ``release``, ``retry_later``, ``extend``, ``fail``, ``settle``, ``unfail``)
takes the :class:`Reservation` and changes nothing, returning False, unless its token is the job's
current one. A worker whose job was reclaimed after its TTR can therefore never overwrite what the
reclaimer wrote: its late writes are refused, and it fires no event for that job.

**Each write has one source state.** ``ack``, ``release``, ``retry_later``, ``extend`` and ``fail``
act on a *reserved* job; ``settle`` and ``unfail`` on a *failed, unsettled* one. A failed attempt is
written at once with ``fail`` (the failure is visible immediately and survives a crash); the
worker runs the afterError handlers, then either ``settle``\\ s it (the final failure happened:
``failed_total`` counts it) or ``unfail``\\ s it (another attempt follows). A worker that dies in
between leaves an unsettled entry that ``reclaim_expired`` hands to another worker, with the
decision the dead worker had recorded (:attr:`FailureInfo.retry_delay`).

**Attempt history.** A job keeps the record of each failed attempt (error, message, traceback,
attempt number and time; the newest ``policy.history_limit``), written by ``fail`` and by
``retry_later`` given the failure, so that ``failed show`` has every attempt's traceback, not only
the last one. It lives as long as the job (dropped with it by ``ack``, ``remove``, ``clear``, a
purge or the registry's trim) and survives ``unfail`` and ``requeue_failed``.

**Bad values are not outages.** A backend that refuses a value (a number out of its range, a text it
cannot store) raises :class:`~pubq.errors.BackendDataError`, which is never retried; a job whose
stored state cannot be read is handed out with :attr:`Reservation.unreadable` set, never dropped.

**Policy once.** ``grace``, ``hold``, ``settle_within`` and the registry caps are settings of the
driver (:class:`Policy`), given when it is built, never per call.

**Operations** (seeing and steering live work, spec §7.2-7.4): a reserved job records its *holder*
(the worker id given to ``reserve``); workers register and beat into a registry whose entries
expire by themselves; ``pause`` is a flag the reserve step itself reads; ``cancel`` ends a waiting
or delayed job at once (as a failed, unsettled attempt the caller settles) and stores a request with
a reserved one that its holder acts on; ``progress`` is stored with the reservation. ``list_jobs``
pages one state with a keyset cursor.

**Per-key limits** (issue 16, spec §7.10): after a reserve, a worker whose job has a limit key asks
``limit_acquire`` for a run slot of that key. In the same atomic step the driver either records the
slot (tied to the reservation's lease token, so a slot whose lease ended — acked, failed, released,
removed, or reclaimed from a SIGKILLed worker — frees itself) and a start in the key's rate window,
or puts the job back delayed until the next free slot without counting the attempt. The state is
shared by every worker of the backend (:mod:`pubq.drivers.limiter` describes it).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Protocol, runtime_checkable

from ..bounds import DEFAULT_FAILED_LIMIT, DEFAULT_PRIORITY, UNIQUE_UNTIL

#: Failed attempts a job keeps in its history by default.
DEFAULT_HISTORY_LIMIT = 10

__all__ = [
    "CANCELLED_CODE", "DEFAULT_FAILED_LIMIT", "DEFAULT_HISTORY_LIMIT", "DEFAULT_PRIORITY", "Attempt", "BaseDriver",
    "CancelResult", "CancelState", "Counts", "Driver", "FailedJob", "FailureInfo", "FollowUpFailure", "JobInfo",
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
    """One failed attempt in a job's history (see "Attempt history" above)."""

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


@runtime_checkable
class Driver(Protocol):
    """One queue on one backend. Instances are per process; not shared across ``fork``."""

    #: The queue's channel (Redis key prefix / db channel column).
    channel: str
    #: The settings given when the driver was built.
    policy: Policy

    # -- producing ----------------------------------------------------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        """Store one job; returns its id.

        Ids are integers increasing per queue and never reused, not even after ``clear``. A job with
        ``delay`` > 0 is delayed until ``now + delay``, else waiting at once; a blocked ``reserve``
        of any process wakes up for it.
        """
        ...

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        """Store many jobs in as few round trips as the backend allows; ids in input order.

        All or nothing per backend step; an empty sequence stores nothing and returns ``[]``.
        """
        ...

    def push_unique(
        self, payload: bytes, *, ttr: int, unique: UniqueSpec, delay: float = 0, priority: int = DEFAULT_PRIORITY,
    ) -> tuple[int, bool]:
        """Store one job unless ``unique.key`` is held; ``(id, True)`` for a new job, ``(id of the
        holder, False)`` for a duplicate. One atomic step with the push.

        A key is *held* by the job last pushed under it until its release point
        (:data:`UNIQUE_UNTIL`) or its ``ttl``, whichever comes first. Release is read, not written:
        the push checks the holder's current state, so every way a job ends (ack, settle, remove,
        cancel, clear, the failed registry's trim, a reclaim after a SIGKILL) releases the key without
        any change to those paths. Records of released keys are swept a few at a time by later
        unique pushes.
        """
        ...

    def mark_get(self, name: str) -> float | None:
        """A named time stored with the queue (a scheduler's last tick); None when never set."""
        ...

    def mark_advance(self, name: str, value: float) -> float:
        """Store ``value`` under ``name`` unless a later one is stored; returns the stored value.

        One atomic step, so concurrent writers (schedulers on several hosts) never move it back.
        """
        ...

    # -- consuming ----------------------------------------------------------------------

    def reserve(self, timeout: float = 0, *, holder: str = "") -> Reservation | None:
        """Take the next due job in one atomic step, under a new lease, recording ``holder`` (the
        reserving worker's id) with it.

        Nothing is taken while the queue is paused (the step itself reads the flag). Due delayed
        jobs become waiting first. Order: lowest priority value, then push order. The
        attempt count goes up by one and the deadline is ``now + ttr``; reclaim may take the job
        after ``deadline + grace``. ``timeout`` > 0 waits up to that many seconds (a blocking
        wake-up, shortened to the next delayed job's due time) while nothing is due; 0 returns at
        once. None when nothing became due. A worker killed while waiting holds no job.
        """
        ...

    def ack(self, r: Reservation) -> bool:
        """Done: count it in ``done`` and drop the payload. False (nothing counted) if ``r`` is stale."""
        ...

    def ack_and_reserve(self, r: Reservation, *, holder: str = "") -> tuple[bool, Reservation | None]:
        """``ack(r)``, then ``reserve(0, holder=holder)``, in one round trip where the backend allows it.

        The reserve happens whether or not the ack was accepted.
        """
        ...

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "") -> list[Reservation]:
        """Take up to ``n`` due jobs in one atomic step (one script call, one transaction), each as
        ``reserve`` would take it: its own new lease, attempt + 1, deadline ``now + ttr``.

        For a worker with ``n`` free slots (``--concurrency``): it asks for exactly what it can start
        at once, so every TTR clock starts when its job can run. In run order (priority, then push
        order). ``timeout`` > 0 waits like ``reserve`` while nothing is due, and returns as soon as
        at least one job is; ``[]`` when none became due or ``n`` < 1.
        """
        ...

    def ack_and_reserve_many(self, acks: Sequence[Reservation], n: int, *,
                             holder: str = "") -> tuple[list[bool], list[Reservation]]:
        """``ack`` each of ``acks``, then ``reserve_many(n, 0, holder=holder)``, in one round trip
        where the backend allows it: a concurrent worker's hot path, settling what finished and
        filling the freed slots in one step. Returns one flag per ack (False: stale, not counted)
        and the new reservations; the reserve happens whatever the acks answered.
        """
        ...

    def extend(self, r: Reservation, seconds: float) -> bool:
        """Keep holding ``r`` for ``seconds`` more from now (no reclaim before then); same token.

        For a worker whose job ran long and that must know it still holds it before it fires
        afterExec. False if ``r`` is stale: the job was reclaimed and belongs to someone else.
        """
        ...

    def release(self, r: Reservation) -> bool:
        """Put a held job back to waiting at the front of its priority, without counting the attempt.

        For a hard stop (second signal): the job was interrupted, not failed. False if ``r`` is stale.
        """
        ...

    def retry_later(self, r: Reservation, delay: float, info: FailureInfo | None = None) -> bool:
        """The attempt failed and another follows: delayed for ``delay`` s (0: waiting at once).

        From reserved only. Used when nothing can change the decision (no afterError handlers);
        otherwise the worker goes through ``fail`` and ``unfail``. ``info`` (the failure) goes into
        the job's attempt history. False if ``r`` is stale.
        """
        ...

    def fail(self, r: Reservation, info: FailureInfo) -> bool:
        """Write a failed attempt at once: reserved → the failed registry, *unsettled*.

        The entry keeps payload, attempts and ``info`` (error and the worker's decision), and
        ``info`` joins the job's attempt history. It stays unsettled for ``policy.settle_within`` s;
        past that, ``reclaim_expired`` hands it out again. Trims the registry to
        ``policy.failed_limit``. False if ``r`` is stale.
        """
        ...

    def settle(self, r: Reservation) -> bool:
        """The final failure happened: its handlers ran. Unsettled → settled; ``failed_total`` +1.

        From failed-unsettled with ``r``'s token only, so it counts once. False otherwise.
        """
        ...

    def unfail(self, r: Reservation, delay: float) -> bool:
        """Another attempt follows after all: failed-unsettled → delayed for ``delay`` s (0: waiting).

        The attempt count is kept (the next reserve is attempt + 1); ``failed_total`` is untouched.
        False if ``r``'s token is not the entry's or the entry is settled.
        """
        ...

    def reclaim_expired(self, limit: int = 100) -> list[Reclaimed]:
        """Hand out up to ``limit`` lost reservations (past deadline + grace) and unsettled failures
        (past their settle deadline), lost ones first, each under a new token held for
        ``policy.hold`` s so that no other worker gets it meanwhile. ``[]`` when there is none."""
        ...

    # -- inspection and maintenance ------------------------------------------------------

    def status(self, job_id: int) -> JobStatus:
        """The job's state; DONE for an id that is not stored (acked, removed, or never pushed)."""
        ...

    def get(self, job_id: int) -> JobInfo | None:
        """The job as stored now; None when the id is not waiting/delayed/reserved/failed.

        A delayed job already due reports WAITING (a reserve would take it).
        """
        ...

    def counts(self) -> Counts:
        """The info counters in one consistent read, O(1)."""
        ...

    def remove(self, job_id: int) -> bool:
        """Delete the job from whatever state it is in (failed registry included); False if absent.

        A holder's later writes for it are refused.
        """
        ...

    def clear(self) -> int:
        """Delete this queue's jobs, failed entries and follow-up records (never another queue's).

        The id sequence and the done / failed_total / follow-up totals are kept. Returns how many
        waiting, delayed and reserved jobs went.
        """
        ...

    def failed_list(self, offset: int = 0, limit: int = 50) -> list[FailedJob]:
        """A page of the failed registry, newest first; ``[]`` past its end."""
        ...

    def failed_get(self, job_id: int) -> FailedJob | None:
        """One registry entry with its attempt history; None when the id is not in the registry."""
        ...

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        """Operator retry: registry entry → waiting (or delayed), attempts reset unless told not to.

        Settled or not: an unsettled entry's holder then finds its token stale. False if absent.
        """
        ...

    def failed_purge(self) -> int:
        """Empty the failed registry; returns how many entries went."""
        ...

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        """Keep a raising handler's error (the newest ``policy.follow_up_limit``) and count it."""
        ...

    def follow_up_list(self, offset: int = 0, limit: int = 50) -> list[FollowUpFailure]:
        """A page of follow-up failure records, newest first."""
        ...

    def now(self) -> float:
        """The backend's clock, unix seconds."""
        ...

    def ping(self) -> None:
        """Raise :class:`~pubq.errors.DriverError` when the backend does not answer."""
        ...

    def close(self) -> None:
        """Release connections this driver opened; the driver may be used again (it reconnects)."""
        ...

    # -- operations: listing, pause, cancel, progress, the worker registry -----------------

    def list_jobs(self, state: JobStatus, limit: int = 50, after: int | None = None) -> JobPage:
        """A page of the jobs in ``state`` (waiting, delayed, reserved or failed), in its order.

        Orders: waiting by priority then push order (the run order), delayed by due time, reserved
        by deadline, failed by failure time; ties by id. ``after`` is the id of the last job of the
        previous page (``JobPage.next_after``): a keyset cursor, so a deep page costs what the
        first one does. When that job has left the state meanwhile, the page continues from where
        it sorted if the backend still knows (waiting), else from the start. A delayed job already
        due is listed as delayed until a reserve promotes it.
        """
        ...

    def pause(self) -> None:
        """Stop every reserve of this queue (stored with the queue; running jobs go on; pushes work)."""
        ...

    def resume(self) -> None:
        """Undo ``pause`` and wake blocked reserves at once."""
        ...

    def paused(self) -> bool:
        """Whether the queue is paused (one cheap read)."""
        ...

    def cancel(self, job_id: int, reason: str = "") -> CancelResult:
        """Cancel one job (spec §7.4).

        Waiting or delayed: it becomes a failed, *unsettled* attempt with ``JobCancelledError``
        (code :data:`CANCELLED_CODE`, message ``reason``, decision final) under a new lease, given
        back in the result: the caller fires afterError (retry false) and ``settle``\\ s it; if it
        dies first, ``reclaim_expired`` hands the entry out like any unsettled failure. Reserved:
        the request is stored with the job (``cancel_requested``); a dead holder's reclaimer gets
        it in :attr:`Reclaimed.cancel_reason`. Failed or done: FINISHED; never handed out: NOT_FOUND.
        """
        ...

    def cancel_requested(self, r: Reservation) -> str | None:
        """The reason of a cancel requested for the reserved job ``r`` (None: none). One cheap read."""
        ...

    def progress(self, r: Reservation, fraction: float, message: str = "") -> bool:
        """Store the running job's progress (0…1, clamped) with its reservation. False if ``r`` is stale."""
        ...

    def register_worker(self, info: WorkerInfo) -> None:
        """Add a worker to the registry (its first beat)."""
        ...

    def heartbeat(self, info: WorkerInfo) -> None:
        """Refresh a worker's entry with ``info`` in one backend command; it expires by itself
        ``info.ttl`` seconds after the last beat."""
        ...

    def unregister_worker(self, worker_id: str) -> None:
        """Drop a worker's entry at once (a clean stop)."""
        ...

    def workers(self, *, sweep: bool = True) -> list[WorkerInfo]:
        """This queue's registered workers, oldest first, ``last_seen``/``lost`` filled in; expired
        entries are dropped (swept by the reader where the backend has no key expiry).

        ``sweep=False`` is a pure read for viewers that must never write (the dashboard): expired
        entries are left in place and only filtered out of the answer.
        """
        ...

    def record_throughput(self, done: int, failed: int, minute: int | None = None) -> None:
        """Add ``done`` and ``failed`` jobs to the queue's per-minute throughput bucket ``minute``
        (unix minutes; None: the backend clock's current minute), in one backend command.

        Called off the hot path (a worker's heartbeat adds what it finished since its last beat), so
        the drain never pays for it. Buckets older than :data:`THROUGHPUT_KEEP` minutes before the
        backend's current minute are dropped by these writes (or expire by themselves)."""
        ...

    def throughput(self, since: int) -> list[ThroughputBucket]:
        """The stored buckets with ``minute >= since``, oldest first; minutes with nothing finished are
        absent. A pure read (viewers such as the dashboard call it)."""
        ...

    # -- per-key limits ----------------------------------------------------------------------

    def limit_acquire(self, r: Reservation, key: str, *, concurrency: int = 0, rate: int = 0, per: float = 1.0,
                      jitter: float = 0.0, burst: int = 0) -> float | None:
        """Take a run slot of ``key`` for the reserved job ``r``, in one atomic step.

        Admitted (fewer than ``concurrency`` live slots of the key and fewer than ``rate`` starts
        in the last ``per`` seconds; 0 means no such limit): the slot and the start are recorded,
        returns 0.0. Refused: the job goes back delayed until the key's next free slot plus
        ``jitter`` seconds, its attempt count as before this reserve, ``Counts.limited`` + 1, and
        the delay is returned; refused for concurrency, it also waits on the key (``limit_release``
        wakes it). None when ``r`` is stale (nothing changes). A cancel requested for ``r`` before
        a refusal is not dropped: the refused job is then cancelled (a failed, unsettled attempt
        with ``JobCancelledError``, whose afterError the reclaiming worker runs, as for any cancel
        whose caller did not settle it).

        ``burst`` > 0 (with a rate) makes the rate a token bucket: ``burst`` starts at once, then
        one every ``per / rate`` seconds (:mod:`pubq.drivers.limiter`).
        """
        ...

    def limit_release(self, r: Reservation, key: str) -> None:
        """``r``'s attempt ended (after its outcome was written): drop its slot of ``key`` and make
        the key's first waiting job due now. Never needed for correctness (a slot whose lease ended
        is not counted), only for promptness."""
        ...


class BaseDriver:
    """Defaults shared by drivers; a concrete driver overrides what it can do in fewer round trips."""

    channel: str = ""
    policy: Policy = Policy()

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        return [self.push(i.payload, ttr=i.ttr, delay=i.delay, priority=i.priority) for i in items]  # type: ignore[attr-defined]

    def ack_and_reserve(self, r: Reservation, *, holder: str = "") -> tuple[bool, Reservation | None]:
        ok = self.ack(r)  # type: ignore[attr-defined]
        return ok, self.reserve(0, holder=holder)  # type: ignore[attr-defined]

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "") -> list[Reservation]:
        first = self.reserve(timeout, holder=holder) if n > 0 else None  # type: ignore[attr-defined]
        out = [] if first is None else [first]
        while 0 < len(out) < n and (r := self.reserve(0, holder=holder)) is not None:  # type: ignore[attr-defined]
            out.append(r)
        return out

    def ack_and_reserve_many(self, acks: Sequence[Reservation], n: int, *,
                             holder: str = "") -> tuple[list[bool], list[Reservation]]:
        flags = [self.ack(r) for r in acks]  # type: ignore[attr-defined]
        return flags, self.reserve_many(n, 0, holder=holder)

    def register_worker(self, info: WorkerInfo) -> None:
        self.heartbeat(info)  # type: ignore[attr-defined]

    def status(self, job_id: int) -> JobStatus:
        info = self.get(job_id)  # type: ignore[attr-defined]
        return JobStatus.DONE if info is None else info.status
