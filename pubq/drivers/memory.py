"""In-process driver: the reference implementation of the driver contract, and the ``sync`` driver.

Everything lives in this object behind one lock, so every method is trivially atomic, but nothing is
shared between processes. Waiting jobs sit in a heap ordered by (priority, enqueue sequence) and delayed
jobs in a heap ordered by due time; both drop stale entries lazily (an entry is live only while the job's
state and sequence still match it), which keeps each transition O(log n) and ``counts`` O(1).

A job's lease token is a per-job counter: every reserve and every reclaim takes the next value, so a
token is never handed out twice for one job, and a settling write is accepted only with the current one.
"""

from __future__ import annotations

import heapq
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import islice

from ..errors import BackendDataError
from .base import (
    CANCELLED_CODE,
    DEFAULT_PRIORITY,
    Attempt,
    BaseDriver,
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
    WorkerInfo,
)
from .limiter import KeyState
from .memory_limits import MemoryLimits
from .memory_presence import MemoryPresence
from .memory_throughput import MemoryThroughput
from .memory_unique import MemoryUniqueMixin
from .ops_codec import CANCELLED_CLASS

_WAITING, _DELAYED, _RESERVED = JobStatus.WAITING, JobStatus.DELAYED, JobStatus.RESERVED


def _finite_delay(delay: float) -> None:
    if delay - delay != 0:  # inf or nan: a job due never (the db drivers refuse it too)
        raise BackendDataError(f"refused a value: delay {delay!r} is not a finite number")


def _page(offset: int, limit: int) -> tuple[int, int]:
    """islice bounds of a page; an offset past any real size is simply past the end (no crash)."""
    start = min(max(int(offset), 0), sys.maxsize)
    return start, min(start + max(int(limit), 0), sys.maxsize)


@dataclass(slots=True)
class _Job:
    job_id: int
    payload: bytes
    ttr: int
    priority: int
    pushed_at: float
    attempt: int = 0
    state: JobStatus = _WAITING
    #: Sequence of the job's one live heap entry; older entries for the same id are stale.
    seq: int = 0
    due_at: float = 0.0
    deadline: float = 0.0
    #: When reclaim may take the reservation (deadline + grace, or a recoverer's hold).
    expires_at: float = 0.0
    #: The current lease token (0 before the first reserve).
    lease: int = 0
    #: Reserved: the holder's worker id, its progress, a pending cancel request.
    holder: str = ""
    progress: float | None = None
    progress_message: str = ""
    cancel_reason: str | None = None


@dataclass(slots=True)
class _Unsettled:
    """A failed attempt whose handlers are not confirmed: its lease and its settle deadline."""

    lease: int
    settle_by: float


class MemoryDriver(MemoryPresence, MemoryLimits, MemoryUniqueMixin, MemoryThroughput, BaseDriver):
    """One queue held in this process's memory; safe to share between threads."""

    def __init__(
        self,
        channel: str,
        *,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.policy = policy or Policy()
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._last_id = 0
        self._seq = 0
        self._jobs: dict[int, _Job] = {}
        self._held: dict[int, _Job] = {}
        self._waiting: list[tuple[int, int, int]] = []  # (priority, seq, id)
        self._delayed: list[tuple[float, int, int]] = []  # (due_at, seq, id)
        self._sizes = {_WAITING: 0, _DELAYED: 0, _RESERVED: 0}
        self._done = 0
        #: Oldest first; a job id is live xor in the registry.
        self._failed: OrderedDict[int, FailedJob] = OrderedDict()
        #: Leases of failed entries (token of the attempt that failed, or of the recoverer).
        self._failed_lease: dict[int, int] = {}
        self._unsettled: dict[int, _Unsettled] = {}
        self._failed_total = 0
        self._follow_ups: deque[FollowUpFailure] = deque(maxlen=max(self.policy.follow_up_limit, 0))
        self._follow_up_total = 0
        #: Failed attempts per job id (live or in the registry), oldest first, capped.
        self._history: dict[int, deque[Attempt]] = {}
        self._retried = 0
        self._cancelled = 0
        self._paused = False
        #: worker id -> (info, last_seen); entries past last_seen + ttl are dropped when read.
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._init_unique()
        #: Per-key limit states (memory_limits) and how many reservations they put back.
        self._limit_state: dict[str, KeyState] = {}
        self._limited = 0
        #: Per-minute throughput buckets (memory_throughput): minute -> [done, failed].
        self._tput: dict[int, list[int]] = {}

    # -- producing ----------------------------------------------------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        return self.push_many([PushItem(payload, ttr, delay, priority)])[0]

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        with self._cond:
            return self._push_locked(items, self._clock())

    def _push_locked(self, items: Sequence[PushItem], now: float) -> list[int]:
        ids = []
        for item in items:
            _finite_delay(item.delay)
            self._last_id += 1
            job = _Job(self._last_id, bytes(item.payload), item.ttr, item.priority, now)
            self._enqueue(job, item.delay, now)
            ids.append(job.job_id)
        return ids

    # -- consuming ----------------------------------------------------------------------

    def reserve(self, timeout: float = 0, *, holder: str = "") -> Reservation | None:
        # Timeouts run on the monotonic clock; due times on the backend clock (which may be fake).
        end = time.monotonic() + max(timeout, 0)
        with self._cond:
            while True:
                now = self._clock()
                r = self._take(now, holder)
                left = end - time.monotonic()
                if r is not None or timeout <= 0 or left <= 0:
                    return r
                due = self._next_due()
                if due is not None:
                    left = min(left, max(due - now, 0.001))
                self._cond.wait(left)

    def ack(self, r: Reservation) -> bool:
        with self._cond:
            return self._ack(r)

    def ack_and_reserve(self, r: Reservation, *, holder: str = "") -> tuple[bool, Reservation | None]:
        with self._cond:
            ok = self._ack(r)
            return ok, self._take(self._clock(), holder)

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "") -> list[Reservation]:
        if n < 1:
            return []
        end = time.monotonic() + max(timeout, 0)
        with self._cond:
            while True:
                now = self._clock()
                out = self._take_many(n, now, holder)
                left = end - time.monotonic()
                if out or timeout <= 0 or left <= 0:
                    return out
                due = self._next_due()
                if due is not None:
                    left = min(left, max(due - now, 0.001))
                self._cond.wait(left)

    def ack_and_reserve_many(self, acks: Sequence[Reservation], n: int, *,
                             holder: str = "") -> tuple[list[bool], list[Reservation]]:
        with self._cond:
            flags = [self._ack(r) for r in acks]
            return flags, self._take_many(n, self._clock(), holder)

    def _take_many(self, n: int, now: float, holder: str) -> list[Reservation]:
        out: list[Reservation] = []
        while len(out) < n and (r := self._take(now, holder)) is not None:
            out.append(r)
        return out

    def extend(self, r: Reservation, seconds: float) -> bool:
        with self._cond:
            job = self._holding(r)
            if job is None:
                return False
            job.expires_at = max(job.expires_at, self._clock() + seconds)
            return True

    def release(self, r: Reservation) -> bool:
        with self._cond:
            job = self._holding(r)
            if job is None:
                return False
            self._detach(job)
            job.attempt -= 1  # a hard stop is not an attempt
            self._enqueue(job, 0, self._clock())
            return True

    def retry_later(self, r: Reservation, delay: float, info: FailureInfo | None = None) -> bool:
        with self._cond:
            job = self._holding(r)
            if job is None:
                return False
            now = self._clock()
            if info is not None:
                self._remember(job.job_id, job.attempt, info, now)
            self._detach(job)
            self._enqueue(job, delay, now)
            self._retried += 1
            return True

    def fail(self, r: Reservation, info: FailureInfo) -> bool:
        with self._cond:
            job = self._holding(r)
            if job is None:
                return False
            now = self._clock()
            self._remember(job.job_id, job.attempt, info, now)
            self._detach(job)
            self._failed[job.job_id] = FailedJob(
                job_id=job.job_id, payload=job.payload, attempts=job.attempt, error_class=info.error_class,
                message=info.message, traceback=info.traceback, code=info.code, pushed_at=job.pushed_at,
                failed_at=now, ttr=job.ttr, priority=job.priority, unsettled=True, retry_delay=info.retry_delay,
            )
            self._failed_lease[job.job_id] = job.lease
            self._unsettled[job.job_id] = _Unsettled(job.lease, now + self.policy.settle_within)
            while len(self._failed) > max(self.policy.failed_limit, 0):
                oldest = next(iter(self._failed))
                self._drop_failed(oldest)
                self._history.pop(oldest, None)
            return True

    def settle(self, r: Reservation) -> bool:
        with self._cond:
            entry = self._unsettled_entry(r)
            if entry is None:
                return False
            self._failed[r.job_id] = replace(entry, unsettled=False, retry_delay=None)
            del self._unsettled[r.job_id]
            self._failed_total += 1
            self._cancelled += entry.code == CANCELLED_CODE
            return True

    def unfail(self, r: Reservation, delay: float) -> bool:
        with self._cond:
            entry = self._unsettled_entry(r)
            if entry is None:
                return False
            self._drop_failed(r.job_id)
            job = _Job(r.job_id, entry.payload, entry.ttr, entry.priority, entry.pushed_at, entry.attempts,
                       lease=r.token)
            self._enqueue(job, delay, self._clock())
            self._retried += 1
            return True

    def reclaim_expired(self, limit: int = 100) -> list[Reclaimed]:
        with self._cond:
            now = self._clock()
            hold = self.policy.hold
            lost = sorted((j for j in self._held.values() if now > j.expires_at), key=lambda j: j.expires_at)
            out: list[Reclaimed] = []
            for job in lost[: max(limit, 0)]:
                overdue = now - job.deadline
                job.lease += 1  # the reclaimer holds it now; the old holder's token is stale
                job.deadline = job.expires_at = now + hold
                out.append(Reclaimed(ReclaimKind.LOST, self._reservation(job), overdue=overdue,
                                     cancel_reason=job.cancel_reason))
            pending = sorted((u.settle_by, i) for i, u in self._unsettled.items() if now > u.settle_by)
            for _, job_id in pending[: max(limit - len(out), 0)]:
                entry = self._failed[job_id]
                lease = self._failed_lease.get(job_id, 0) + 1
                self._failed_lease[job_id] = lease
                self._unsettled[job_id] = _Unsettled(lease, now + hold)
                r = Reservation(job_id, entry.payload, entry.attempts, entry.ttr, now + hold, lease,
                                entry.priority, entry.pushed_at)
                out.append(Reclaimed(ReclaimKind.UNSETTLED, r, failure=entry))
            return out

    # -- inspection and maintenance ------------------------------------------------------

    def get(self, job_id: int) -> JobInfo | None:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None:
                due = job.state is _DELAYED and job.due_at <= self._clock()
                return self._info(job, _WAITING if due else job.state)
            return self._failed_info(job_id) if job_id in self._failed else None

    def counts(self) -> Counts:
        with self._cond:
            return Counts(
                waiting=self._sizes[_WAITING], delayed=self._sizes[_DELAYED], reserved=self._sizes[_RESERVED],
                done=self._done, failed=len(self._failed), failed_total=self._failed_total,
                follow_up_failed=self._follow_up_total, retried=self._retried, cancelled=self._cancelled,
                limited=self._limited,
            )

    def remove(self, job_id: int) -> bool:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None:
                self._detach(job)
                self._history.pop(job_id, None)
                return True
            if job_id in self._failed:
                self._drop_failed(job_id)
                self._history.pop(job_id, None)
                return True
            return False

    def clear(self) -> int:
        with self._cond:
            gone = len(self._jobs)
            self._jobs.clear()
            self._held.clear()
            self._waiting.clear()
            self._delayed.clear()
            self._sizes = dict.fromkeys(self._sizes, 0)
            self._failed.clear()
            self._failed_lease.clear()
            self._unsettled.clear()
            self._follow_ups.clear()
            self._history.clear()
            self._limit_state.clear()
            return gone

    def failed_list(self, offset: int = 0, limit: int = 50) -> list[FailedJob]:
        with self._cond:
            start, stop = _page(offset, limit)
            return list(islice(reversed(self._failed.values()), start, stop))

    def failed_get(self, job_id: int) -> FailedJob | None:
        with self._cond:
            entry = self._failed.get(job_id)
            if entry is None:
                return None
            return replace(entry, history=tuple(self._history.get(job_id, ())))

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        with self._cond:
            entry = self._failed.get(job_id)
            if entry is None:
                return False
            lease = self._failed_lease.get(job_id, 0)
            self._drop_failed(job_id)
            attempt = 0 if reset_attempts else entry.attempts
            job = _Job(job_id, entry.payload, entry.ttr, entry.priority, entry.pushed_at, attempt, lease=lease)
            self._enqueue(job, delay, self._clock())
            return True

    def failed_purge(self) -> int:
        with self._cond:
            gone = len(self._failed)
            for job_id in self._failed:
                self._history.pop(job_id, None)
            self._failed.clear()
            self._failed_lease.clear()
            self._unsettled.clear()
            return gone

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        """Keep the record newest first with ``seq`` = its 1-based number since the driver was created."""
        with self._cond:
            self._follow_up_total += 1
            self._follow_ups.appendleft(replace(failure, seq=self._follow_up_total))

    def follow_up_list(self, offset: int = 0, limit: int = 50) -> list[FollowUpFailure]:
        with self._cond:
            start, stop = _page(offset, limit)
            return list(islice(self._follow_ups, start, stop))

    def now(self) -> float:
        return self._clock()

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    # -- operations ------------------------------------------------------------------------

    def list_jobs(self, state: JobStatus, limit: int = 50, after: int | None = None) -> JobPage:
        """Sorts the state's jobs on every call: O(n log n), fine for the in-process reference."""
        with self._cond:
            if state is JobStatus.FAILED:
                keyed = sorted(((e.failed_at, i), i) for i, e in self._failed.items())
            else:
                key = {_WAITING: lambda j: (j.priority, j.seq), _DELAYED: lambda j: (j.due_at, j.seq),
                       _RESERVED: lambda j: (j.deadline, j.job_id)}.get(state)
                if key is None:
                    raise ValueError(f"cannot list jobs in state {state.value}")
                keyed = sorted((key(j), j.job_id) for j in self._jobs.values() if j.state is state)
            start = 0
            if after is not None:
                marks = [k for k, i in keyed if i == after]
                if marks:
                    start = next((n for n, (k, _) in enumerate(keyed) if k > marks[0]), len(keyed))
                elif state is _WAITING and after in self._jobs:  # where it sorted, as it left
                    mark = (self._jobs[after].priority, self._jobs[after].seq)
                    start = next((n for n, (k, _) in enumerate(keyed) if k > mark), len(keyed))
            rows = keyed[start : start + max(limit, 0)]
            jobs = []
            for _, job_id in rows:
                job = self._jobs.get(job_id)
                jobs.append(self._info(job, job.state) if job is not None else self._failed_info(job_id))
            full = bool(rows) and len(rows) == limit and start + limit < len(keyed)
            return JobPage(jobs, rows[-1][1] if full else None)

    def cancel(self, job_id: int, reason: str = "") -> CancelResult:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                known = job_id in self._failed or 0 < job_id <= self._last_id
                return CancelResult(CancelState.FINISHED if known else CancelState.NOT_FOUND)
            if job.state is _RESERVED:
                job.cancel_reason = reason
                return CancelResult(CancelState.REQUESTED)
            now = self._clock()
            self._detach(job)
            job.lease += 1
            entry = FailedJob(
                job_id=job_id, payload=job.payload, attempts=job.attempt, error_class=CANCELLED_CLASS,
                message=reason, traceback="", code=CANCELLED_CODE, pushed_at=job.pushed_at, failed_at=now,
                ttr=job.ttr, priority=job.priority, unsettled=True, retry_delay=None,
            )
            self._failed[job_id] = entry
            self._failed_lease[job_id] = job.lease
            settle_by = now + self.policy.settle_within
            self._unsettled[job_id] = _Unsettled(job.lease, settle_by)
            while len(self._failed) > max(self.policy.failed_limit, 0):
                self._drop_failed(next(iter(self._failed)))
            r = Reservation(job_id, job.payload, job.attempt, job.ttr, settle_by, job.lease, job.priority,
                            job.pushed_at)
            return CancelResult(CancelState.CANCELLED, r)

    # -- internals (caller holds the lock) -----------------------------------------------

    def _info(self, job: _Job, status: JobStatus) -> JobInfo:
        reserved = job.state is _RESERVED
        return JobInfo(
            job.job_id, status, job.payload, job.attempt, job.ttr, job.priority, job.pushed_at,
            due_at=job.due_at if not reserved else None, deadline=job.deadline if reserved else None,
            holder=job.holder if reserved else "", progress=job.progress if reserved else None,
            progress_message=job.progress_message if reserved else "",
            cancel_reason=job.cancel_reason if reserved else None,
        )

    def _failed_info(self, job_id: int) -> JobInfo:
        entry = self._failed[job_id]
        return JobInfo(
            job_id, JobStatus.FAILED, entry.payload, entry.attempts, entry.ttr, entry.priority, entry.pushed_at,
            failed_at=entry.failed_at, error_class=entry.error_class, message=entry.message, code=entry.code,
            unsettled=entry.unsettled,
        )

    def _enqueue(self, job: _Job, delay: float, now: float) -> None:
        """Make a detached job waiting (delay <= 0) or delayed, and wake blocked reserves."""
        self._seq += 1
        job.seq = self._seq
        if delay > 0:
            job.state, job.due_at = _DELAYED, now + delay
            heapq.heappush(self._delayed, (job.due_at, job.seq, job.job_id))
        else:
            job.state, job.due_at = _WAITING, now
            heapq.heappush(self._waiting, (job.priority, job.seq, job.job_id))
        self._sizes[job.state] += 1
        self._jobs[job.job_id] = job
        self._cond.notify_all()

    def _detach(self, job: _Job) -> None:
        """Take a live job out of every structure; its heap entries go stale."""
        self._sizes[job.state] -= 1
        del self._jobs[job.job_id]
        self._held.pop(job.job_id, None)

    def _live(self, seq: int, job_id: int, state: JobStatus) -> _Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.state is state and job.seq == seq else None

    def _next_due(self) -> float | None:
        while self._delayed and self._live(self._delayed[0][1], self._delayed[0][2], _DELAYED) is None:
            heapq.heappop(self._delayed)
        return self._delayed[0][0] if self._delayed else None

    def _take(self, now: float, holder: str = "") -> Reservation | None:
        if self._paused:
            return None
        while self._delayed and self._delayed[0][0] <= now:
            _, seq, job_id = heapq.heappop(self._delayed)
            job = self._live(seq, job_id, _DELAYED)
            if job is not None:
                self._detach(job)
                self._enqueue(job, 0, now)
        while self._waiting:
            _, seq, job_id = heapq.heappop(self._waiting)
            job = self._live(seq, job_id, _WAITING)
            if job is None:
                continue
            self._sizes[_WAITING] -= 1
            self._sizes[_RESERVED] += 1
            job.state, job.attempt, job.lease = _RESERVED, job.attempt + 1, job.lease + 1
            job.deadline = now + job.ttr
            job.expires_at = job.deadline + self.policy.grace
            job.holder, job.progress, job.progress_message, job.cancel_reason = holder, None, "", None
            self._held[job_id] = job
            return self._reservation(job)
        return None

    def _holding(self, r: Reservation) -> _Job | None:
        job = self._held.get(r.job_id)
        return job if job is not None and job.lease == r.token else None

    def _unsettled_entry(self, r: Reservation) -> FailedJob | None:
        pending = self._unsettled.get(r.job_id)
        if pending is None or pending.lease != r.token:
            return None
        return self._failed.get(r.job_id)

    def _ack(self, r: Reservation) -> bool:
        job = self._holding(r)
        if job is None:
            return False
        self._detach(job)
        self._history.pop(job.job_id, None)
        self._done += 1
        return True

    def _remember(self, job_id: int, attempt: int, info: FailureInfo, now: float) -> None:
        """Add a failed attempt to the job's history (the newest ``history_limit`` are kept)."""
        history = self._history.get(job_id)
        if history is None:
            history = self._history[job_id] = deque(maxlen=max(self.policy.history_limit, 0))
        history.append(Attempt(attempt, info.error_class, info.message, info.traceback, info.code, now))

    def _drop_failed(self, job_id: int) -> None:
        del self._failed[job_id]
        self._failed_lease.pop(job_id, None)
        self._unsettled.pop(job_id, None)

    @staticmethod
    def _reservation(job: _Job) -> Reservation:
        return Reservation(
            job.job_id, job.payload, job.attempt, job.ttr, job.deadline, job.lease, job.priority, job.pushed_at
        )
