"""The ``db`` driver's operations API: job listing, pause, cancel, progress and the worker registry.

A mixin of :class:`pubq.drivers.db.DbDriver` (which gives it the connection, transactions and SQL
templates of :mod:`pubq.drivers.db_conn`). Tables and columns are schema version 3 (``db_schema``).

* Listing is a keyset page on the indexes reserve already uses: ``(priority, id)`` for waiting
  (``jobs_ready``), ``(due_at, id)`` for delayed and failed (``jobs_due``); reserved rows are few.
* Pause is a row of ``<prefix>queues`` that the reserve statement reads itself.
* A beat is one autocommit ``INSERT … ON CONFLICT/DUPLICATE KEY UPDATE`` stamped with the database
  clock; readers sweep entries past their expiry (SQL has no key TTL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pubq.drivers.base import (
    CANCELLED_CODE,
    CancelResult,
    CancelState,
    JobInfo,
    JobPage,
    JobStatus,
    Policy,
    Reservation,
    WorkerInfo,
)
from pubq.drivers.db_sql import JOB_COLUMNS
from pubq.drivers.ops_codec import CANCELLED_CLASS, PROGRESS_MESSAGE_MAX, clamp_fraction

#: The column a state's list is ordered by (ties by id).
_ORDER = {
    JobStatus.WAITING: "priority",
    JobStatus.DELAYED: "due_at",
    JobStatus.RESERVED: "deadline",
    JobStatus.FAILED: "due_at",
}
_UPSERT_TAIL = {
    "mysql": " ON DUPLICATE KEY UPDATE {set}",
    "sqlite": " ON CONFLICT ({key}) DO UPDATE SET {set}",
    "postgres": " ON CONFLICT ({key}) DO UPDATE SET {set}",
}


def reserved_fields(row: Sequence[Any]) -> dict[str, Any]:
    """JobInfo fields of a reserved row read with ``JOB_COLUMNS`` (holder, cancel request, progress)."""
    return {
        "holder": row[16] or "", "cancel_reason": row[17],
        "progress": None if row[18] is None else float(row[18]), "progress_message": row[19] or "",
    }


class DbOps:
    """Operations of the db driver (see the module docstring); mixed into DbDriver."""

    channel: str
    policy: Policy
    kind: str

    # provided by DbConnection / DbDriver
    def _write(self, fn: Any) -> Any: ...  # pragma: no cover
    def _read(self, sql: str, params: Sequence[Any] = (), *, many: bool = False) -> Any: ...  # pragma: no cover
    def _retrying(self, fn: Any, *, idempotent: bool = False) -> Any: ...  # pragma: no cover
    def _q(self, template: str, n_ids: int = 0) -> str: ...  # pragma: no cover
    def _notify(self, tx: Any) -> None: ...  # pragma: no cover
    def _trim_failed(self, tx: Any) -> None: ...  # pragma: no cover
    def _row_info(self, row: Sequence[Any]) -> JobInfo: ...  # pragma: no cover

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One autocommit statement (no BEGIN, no clock read): a beat is one round trip."""

        def run(cur: Any) -> int:
            cur.execute(self._q(sql), params)
            return cur.rowcount

        return self._retrying(run)

    def _upsert(self, table: str, key: str, columns: Sequence[str], values: Sequence[str]) -> str:
        if self.kind == "mysql":
            assign = ", ".join(f"{c} = VALUES({c})" for c in columns if c != key)
        else:
            assign = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)})"
        return head + _UPSERT_TAIL[self.kind].format(key=key, set=assign)

    # -- listing ----------------------------------------------------------------------------------

    def list_jobs(self, state: JobStatus, limit: int = 50, after: int | None = None) -> JobPage:
        order = _ORDER.get(state)
        if order is None:
            raise ValueError(f"cannot list jobs in state {state.value}")
        if limit <= 0:
            return JobPage([])
        params: list[Any] = [self.channel, state.value]
        keyset = ""
        if after is not None:
            mark = self._read(f"SELECT {order} FROM {{J}} WHERE id = ? AND channel = ?", (int(after), self.channel))
            if mark is not None and mark[0] is not None:
                keyset = f" AND ({order}, id) > (?, ?)"
                params += [mark[0], int(after)]
        rows = self._read(
            f"SELECT {JOB_COLUMNS}, {{NOW}} FROM {{J}} WHERE channel = ? AND state = ?{keyset}"
            f" ORDER BY {order}, id LIMIT ?",
            (*params, int(limit) + 1),
            many=True,
        )
        jobs = [self._row_info(row) for row in rows[:limit]]
        if state is JobStatus.DELAYED:  # listed as stored, even when already due
            jobs = [j if j.status is JobStatus.DELAYED else _as_delayed(j) for j in jobs]
        return JobPage(jobs, jobs[-1].job_id if len(rows) > limit else None)

    # -- pause ----------------------------------------------------------------------------------

    def pause(self) -> None:
        sql = self._upsert("{Q}", "channel", ("channel", "paused", "paused_at"), ("?", "1", "{NOW}"))
        self._exec(sql, (self.channel,))

    def resume(self) -> None:
        def fn(tx: Any) -> None:
            if tx.x("UPDATE {Q} SET paused = 0, paused_at = NULL WHERE channel = ? AND paused = 1",
                    (self.channel,)).rowcount:
                self._notify(tx)

        self._write(fn)

    def paused(self) -> bool:
        row = self._read("SELECT paused FROM {Q} WHERE channel = ?", (self.channel,))
        return bool(row and row[0])

    # -- cancel and progress -------------------------------------------------------------------------

    def cancel(self, job_id: int, reason: str = "") -> CancelResult:
        def fn(tx: Any) -> CancelResult:
            row = tx.one(
                "SELECT state, payload, attempt, ttr, priority, pushed_at, lease FROM {J}"
                " WHERE id = ? AND channel = ?{LOCK}", (job_id, self.channel))
            if row is None:
                return CancelResult(CancelState.FINISHED if self._handed_out(tx, job_id) else CancelState.NOT_FOUND)
            state, payload, attempt, ttr, priority, pushed_at, lease = row
            if state == "failed":
                return CancelResult(CancelState.FINISHED)
            if state == "reserved":
                tx.x("UPDATE {J} SET cancel_reason = ? WHERE id = ?", (reason, job_id))
                return CancelResult(CancelState.REQUESTED)
            settle_by = tx.now + float(self.policy.settle_within)
            tx.x(
                "UPDATE {J} SET state = 'failed', due_at = ?, deadline = NULL, expires_at = ?, lease = lease + 1,"
                " error_class = ?, error_message = ?, error_traceback = '', error_code = ?, retry_delay = NULL"
                " WHERE id = ?",
                (tx.now, settle_by, CANCELLED_CLASS, reason, CANCELLED_CODE, job_id),
            )
            tx.add(**{state: -1}, failed=1)
            self._trim_failed(tx)
            r = Reservation(job_id, payload if isinstance(payload, bytes) else bytes(payload or b""), attempt, ttr, settle_by, int(lease) + 1, priority,
                            float(pushed_at))
            return CancelResult(CancelState.CANCELLED, r)

        return self._write(fn)

    def _handed_out(self, tx: Any, job_id: int) -> bool:
        """Whether the jobs table's id sequence has passed ``job_id`` and no other queue holds it."""
        if job_id < 1 or tx.one("SELECT 1 FROM {J} WHERE id = ?", (job_id,)) is not None:
            return False
        if self.kind == "sqlite":
            row = tx.one("SELECT seq FROM sqlite_sequence WHERE name = ?", (self._jobs_table(),))
        elif self.kind == "postgres":
            row = tx.one("SELECT pg_sequence_last_value(pg_get_serial_sequence(?, 'id')::regclass)",
                         (f'"{self._jobs_table()}"',))
        else:
            row = tx.one("SELECT AUTO_INCREMENT - 1 FROM information_schema.TABLES"
                         " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", (self._jobs_table(),))
        return bool(row and row[0] is not None and job_id <= int(row[0]))

    def _jobs_table(self) -> str:
        return f"{self.table_prefix}jobs"  # type: ignore[attr-defined]

    def cancel_requested(self, r: Reservation) -> str | None:
        row = self._read("SELECT cancel_reason FROM {J} WHERE id = ? AND channel = ? AND state = 'reserved'",
                         (r.job_id, self.channel))
        return None if row is None else row[0]

    def progress(self, r: Reservation, fraction: float, message: str = "") -> bool:
        n = self._exec(
            "UPDATE {J} SET progress = ?, progress_message = ?"
            " WHERE id = ? AND channel = ? AND state = 'reserved' AND lease = ?",
            (clamp_fraction(fraction), (message or "")[:PROGRESS_MESSAGE_MAX], r.job_id, self.channel, r.token),
        )
        return n == 1

    # -- the worker registry ----------------------------------------------------------------------

    def heartbeat(self, info: WorkerInfo) -> None:
        sql = self._upsert("{W}", "id", ("id", "channel", "last_seen", "expires_at", "info"),
                           ("?", "?", "{NOW}", "{NOW} + ?", "?"))
        self._exec(sql, (info.worker_id[:255], self.channel, float(info.ttl), info.to_json()))

    def unregister_worker(self, worker_id: str) -> None:
        self._exec("DELETE FROM {W} WHERE id = ?", (worker_id[:255],))

    def workers(self, *, sweep: bool = True) -> list[WorkerInfo]:
        if sweep:
            self._exec("DELETE FROM {W} WHERE channel = ? AND expires_at < {NOW}", (self.channel,))
        rows = self._read("SELECT last_seen, info, {NOW} FROM {W} WHERE channel = ? AND expires_at >= {NOW}",
                          (self.channel,), many=True)
        out = [info for seen, text, now in rows
               if (info := WorkerInfo.from_json(text, float(seen), float(now))) is not None]
        return sorted(out, key=lambda w: (w.started_at, w.worker_id))


def _as_delayed(info: JobInfo) -> JobInfo:
    from dataclasses import replace

    return replace(info, status=JobStatus.DELAYED)
