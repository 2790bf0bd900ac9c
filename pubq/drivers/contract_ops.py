"""The operations half of the driver contract: seeing and steering live work, and per-key limits.

Listing, pause, cancel, progress, the worker registry, per-minute throughput (spec §7.2-7.4) and
per-key run slots (spec §7.10): the methods every driver has besides storing and handing out jobs.
:class:`~pubq.drivers.base.Driver` is this protocol plus the core lifecycle; the rules that bind
both (lease tokens, one source state per write) are in :mod:`pubq.drivers.base`.
"""

from __future__ import annotations

from typing import Protocol

from .records import CancelResult, JobPage, JobStatus, Reservation, ThroughputBucket, WorkerInfo


class OperationsContract(Protocol):
    """Operations and per-key limits of one queue on one backend (part of :class:`~pubq.drivers.base.Driver`)."""

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
