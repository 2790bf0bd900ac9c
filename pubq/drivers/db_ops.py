"""The ``db`` driver's operations API: job listing, pause, cancel, progress and the worker registry.

A mixin of :class:`pubq.drivers.db.DbDriver`: it runs the statements of :mod:`pubq.drivers.db_sql_ops`
through the driver's connection (``self.conn``). Tables and columns are schema version 3 (``db_schema``).

* Listing is a keyset page on the indexes reserve already uses: ``(priority, id)`` for waiting
  (``jobs_ready``), ``(due_at, id)`` for delayed and failed (``jobs_due``); reserved rows are few.
* Pause is a row of ``<prefix>queues`` that the reserve statement reads itself.
* A beat is one autocommit ``INSERT … ON CONFLICT/DUPLICATE KEY UPDATE`` stamped with the database
  clock; readers sweep entries past their expiry (SQL has no key TTL).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from pubq.drivers import db_sql_ops as ops_sql
from pubq.drivers.db_rows import as_bytes, job_info
from pubq.drivers.ops_codec import CANCELLED_CLASS, PROGRESS_MESSAGE_MAX, clamp_fraction
from pubq.drivers.records import (
    CANCELLED_CODE,
    THROUGHPUT_KEEP,
    CancelResult,
    CancelState,
    JobInfo,
    JobPage,
    JobStatus,
    Policy,
    Reservation,
    ThroughputBucket,
    WorkerInfo,
)

if TYPE_CHECKING:
    from pubq.drivers.db_conn import DbConnection, Tx


class DbOps:
    """Operations of the db driver (see the module docstring); mixed into DbDriver."""

    #: The local minute this handle last trimmed the throughput buckets in (once a minute is enough).
    _tput_trimmed: int | None = None

    channel: str
    policy: Policy
    conn: DbConnection

    # provided by DbDriver
    def _notify(self, tx: Tx) -> None: ...  # pragma: no cover
    def _trim_failed(self, tx: Tx) -> None: ...  # pragma: no cover

    # -- listing ----------------------------------------------------------------------------------

    def list_jobs(self, state: JobStatus, limit: int = 50, after: int | None = None) -> JobPage:
        if state not in ops_sql.LIST_ORDER:
            raise ValueError(f"cannot list jobs in state {state.value}")
        if limit <= 0:
            return JobPage([])
        mark = None
        if after is not None:
            row = self.conn.read(ops_sql.LIST_MARK[state], (int(after), self.channel))
            mark = None if row is None else row["mark"]
        if mark is None:
            rows = self.conn.read_all(ops_sql.LIST_FIRST[state], (self.channel, state.value, int(limit) + 1))
        else:
            rows = self.conn.read_all(ops_sql.LIST_AFTER[state],
                                      (self.channel, state.value, mark, int(after), int(limit) + 1))  # type: ignore[arg-type]
        jobs = [job_info(row) for row in rows[:limit]]
        if state is JobStatus.DELAYED:  # listed as stored, even when already due
            jobs = [j if j.status is JobStatus.DELAYED else _as_delayed(j) for j in jobs]
        return JobPage(jobs, jobs[-1].job_id if len(rows) > limit else None)

    # -- pause ----------------------------------------------------------------------------------

    def pause(self) -> None:
        self.conn.execute(ops_sql.PAUSE[self.conn.kind], (self.channel,))

    def resume(self) -> None:
        def fn(tx: Tx) -> None:
            if tx.execute(ops_sql.RESUME, (self.channel,)).rowcount:
                self._notify(tx)

        self.conn.transaction(fn)

    def paused(self) -> bool:
        row = self.conn.read(ops_sql.PAUSED, (self.channel,))
        return bool(row and row["paused"])

    # -- cancel and progress -------------------------------------------------------------------------

    def cancel(self, job_id: int, reason: str = "") -> CancelResult:
        def fn(tx: Tx) -> CancelResult:
            row = tx.fetch_one(ops_sql.CANCEL_LOOKUP, (job_id, self.channel))
            if row is None:
                return CancelResult(CancelState.FINISHED if self._handed_out(tx, job_id) else CancelState.NOT_FOUND)
            state = row["state"]
            if state == "failed":
                return CancelResult(CancelState.FINISHED)
            if state == "reserved":
                tx.execute(ops_sql.REQUEST_CANCEL, (reason, job_id))
                return CancelResult(CancelState.REQUESTED)
            settle_by = tx.now + float(self.policy.settle_within)
            tx.execute(ops_sql.CANCEL_NOW, (tx.now, settle_by, CANCELLED_CLASS, reason, CANCELLED_CODE, job_id))
            tx.count(**{state: -1}, failed=1)
            self._trim_failed(tx)
            r = Reservation(job_id, as_bytes(row["payload"]), row["attempt"], row["ttr"], settle_by,
                            int(row["lease"]) + 1, row["priority"], float(row["pushed_at"]))
            return CancelResult(CancelState.CANCELLED, r)

        return self.conn.transaction(fn)

    def _handed_out(self, tx: Tx, job_id: int) -> bool:
        """Whether the jobs table's id sequence has passed ``job_id`` and no other queue holds it."""
        if job_id < 1 or tx.fetch_one(ops_sql.ID_ANYWHERE, (job_id,)) is not None:
            return False
        jobs_table = f"{self.conn.table_prefix}jobs"
        kind = self.conn.kind
        row = tx.fetch_one(ops_sql.LAST_ID[kind], (f'"{jobs_table}"' if kind == "postgres" else jobs_table,))
        return bool(row and row["last_id"] is not None and job_id <= int(row["last_id"]))

    def cancel_requested(self, r: Reservation) -> str | None:
        row = self.conn.read(ops_sql.CANCEL_REASON, (r.job_id, self.channel))
        return None if row is None else row["cancel_reason"]

    def progress(self, r: Reservation, fraction: float, message: str = "") -> bool:
        n = self.conn.execute(
            ops_sql.PROGRESS,
            (clamp_fraction(fraction), (message or "")[:PROGRESS_MESSAGE_MAX], r.job_id, self.channel, r.token),
        )
        return n == 1

    # -- the worker registry ----------------------------------------------------------------------

    def heartbeat(self, info: WorkerInfo) -> None:
        self.conn.execute(ops_sql.HEARTBEAT[self.conn.kind],
                          (info.worker_id[:255], self.channel, float(info.ttl), info.to_json()))

    def unregister_worker(self, worker_id: str) -> None:
        self.conn.execute(ops_sql.UNREGISTER_WORKER, (worker_id[:255],))

    def workers(self, *, sweep: bool = True) -> list[WorkerInfo]:
        if sweep:
            self.conn.execute(ops_sql.SWEEP_WORKERS, (self.channel,))
        rows = self.conn.read_all(ops_sql.WORKERS, (self.channel,))
        out = [info for row in rows
               if (info := WorkerInfo.from_json(row["info"], float(row["last_seen"]), float(row["db_now"])))
               is not None]
        return sorted(out, key=lambda w: (w.started_at, w.worker_id))

    # -- throughput per minute --------------------------------------------------------------------

    def record_throughput(self, done: int, failed: int, minute: int | None = None) -> None:
        """One upsert; once a minute per handle, also one delete of the buckets past the window."""
        kind = self.conn.kind
        self.conn.execute(ops_sql.RECORD_THROUGHPUT[kind],
                          (self.channel, None if minute is None else int(minute), int(done), int(failed)))
        local_minute = int(time.time() // 60)
        if self._tput_trimmed != local_minute:
            self.conn.execute(ops_sql.TRIM_THROUGHPUT[kind], (self.channel, THROUGHPUT_KEEP))
            self._tput_trimmed = local_minute

    def throughput(self, since: int) -> list[ThroughputBucket]:
        rows = self.conn.read_all(ops_sql.THROUGHPUT, (self.channel, int(since)))
        return [ThroughputBucket(int(r["bucket"]), int(r["done"]), int(r["failed"])) for r in rows]


def _as_delayed(info: JobInfo) -> JobInfo:
    return replace(info, status=JobStatus.DELAYED)
