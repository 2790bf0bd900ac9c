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

**Prefetch** (issue 17): a driver whose ``prefetch`` is true takes ``ahead=k`` in ``reserve_many``
and ``ack_and_reserve_many``: the last ``k`` of the jobs taken are *held ahead* of their start by a
worker that runs one job at a time and buffers the rest. Such a job is reserved like any other (its
lease, its attempt, its holder), but when ``reclaim_expired`` finds it past its deadline it goes back
to waiting uncounted, at the front of its priority, instead of failing as lost: its worker died
before it could tell whether the job started. ``ack`` / ``fail`` / ``release`` / ``extend`` treat it
as any reservation. Drivers without it (one round trip costs them little) are never asked.

**Per-key limits** (issue 16, spec §7.10): after a reserve, a worker whose job has a limit key asks
``limit_acquire`` for a run slot of that key. In the same atomic step the driver either records the
slot (tied to the reservation's lease token, so a slot whose lease ended — acked, failed, released,
removed, or reclaimed from a SIGKILLed worker — frees itself) and a start in the key's rate window,
or puts the job back delayed until the next free slot without counting the attempt. The state is
shared by every worker of the backend (:mod:`pubq.drivers.limiter` describes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .contract_ops import OperationsContract
from .records import (  # the contract's values live in records; importers may still name them here
    CANCELLED_CODE,
    DEFAULT_FAILED_LIMIT,
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_PRIORITY,
    LISTABLE_STATES,
    LOST_BEATS,
    THROUGHPUT_KEEP,
    UNIQUE_UNTIL,
    WORKER_EXPIRY_BEATS,
    Attempt,
    CancelResult,
    CancelState,
    Counts,
    FailedJob,
    FailureInfo,
    FollowUpFailure,
    JobInfo,
    JobPage,
    JobStatus,
    Policy,
    PushItem,
    Reclaimed,
    ReclaimKind,
    Reservation,
    ThroughputBucket,
    UniqueSpec,
    WorkerInfo,
)

__all__ = [
    "BaseDriver", "Driver", "CANCELLED_CODE", "DEFAULT_FAILED_LIMIT", "DEFAULT_HISTORY_LIMIT", "DEFAULT_PRIORITY",
    "LISTABLE_STATES", "LOST_BEATS", "THROUGHPUT_KEEP", "UNIQUE_UNTIL", "WORKER_EXPIRY_BEATS", "Attempt",
    "CancelResult", "CancelState", "Counts", "FailedJob", "FailureInfo", "FollowUpFailure", "JobInfo", "JobPage",
    "JobStatus", "Policy", "PushItem", "Reclaimed", "ReclaimKind", "Reservation", "ThroughputBucket", "UniqueSpec",
    "WorkerInfo",
]


@runtime_checkable
class Driver(OperationsContract, Protocol):
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


class BaseDriver:
    """Defaults shared by drivers; a concrete driver overrides what it can do in fewer round trips."""

    channel: str = ""
    policy: Policy = Policy()
    #: Whether ``reserve_many``/``ack_and_reserve_many`` take ``ahead`` (module docstring, **Prefetch**).
    prefetch: bool = False

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
