"""The ``db`` driver's inspection and maintenance: status, counts, remove, clear, the failed registry
and follow-up failures. A mixin of :class:`pubq.drivers.db.DbDriver` that runs the statements of
:mod:`pubq.drivers.db_sql_registry` through the driver's connection (``self.conn``).

``clear`` and ``failed_purge`` delete in short batches of ids that existed when they began, so they
hold no long lock and never delete a job pushed while they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from pubq.drivers import db_sql as sql
from pubq.drivers import db_sql_registry as registry_sql
from pubq.drivers import history as attempt_history
from pubq.drivers.db_rows import failed_job, job_info, job_status
from pubq.drivers.records import Counts, FailedJob, FollowUpFailure, JobInfo, JobStatus, Policy

if TYPE_CHECKING:
    from pubq.drivers.db_conn import DbConnection, Row, Tx

#: Rows per batch when clearing or purging (keeps transactions and their locks short).
DELETE_BATCH = 1000


class DbInspection:
    """Inspection and maintenance of the db driver (see the module docstring); mixed into DbDriver."""

    channel: str
    policy: Policy
    conn: DbConnection

    # provided by DbDriver
    def _notify(self, tx: Tx) -> None: ...  # pragma: no cover

    def status(self, job_id: int) -> JobStatus:
        row = self.conn.read(registry_sql.STATE_OF, (job_id, self.channel))
        return JobStatus.DONE if row is None else job_status(row["state"], bool(row["due"]))

    def get(self, job_id: int) -> JobInfo | None:
        row = self.conn.read(registry_sql.JOB, (job_id, self.channel))
        return None if row is None else job_info(row)

    def counts(self) -> Counts:
        row = self.conn.read(sql.COUNTS, (self.channel, self.channel, self.channel))
        if row is None:  # no database file yet
            return Counts()
        n = {name: int(value) for name, value in row.items()}
        return Counts(n["n_waiting"] + n["due"], n["n_delayed"] - n["due"], n["n_reserved"], n["done"], n["n_failed"],
                      n["failed_total"], n["follow_up_total"], n["retried"], n["cancelled"], n["limited"])

    def _locked_job(self, tx: Tx, job_id: int) -> Row | None:
        """(state, attempt) of this channel's row, locked for the transaction; None when absent."""
        return tx.fetch_one(registry_sql.LOCK_JOB, (job_id, self.channel))

    def remove(self, job_id: int) -> bool:
        if self.conn.no_file_yet():
            return False

        def fn(tx: Tx) -> bool:
            row = self._locked_job(tx, job_id)
            if row is None:
                return False
            tx.execute(registry_sql.DELETE_JOB, (job_id,))
            tx.count(**{row["state"]: -1})
            return True

        return self.conn.transaction(fn)

    def _delete_states(self, states: Sequence[str], max_id: int) -> int:
        """Delete this channel's rows in ``states`` (ids ≤ max_id) in short batches; returns how many."""
        total = 0
        for state in states:
            while True:

                def fn(tx: Tx, state: str = state) -> tuple[int, int]:
                    ids = [row["id"] for row in tx.fetch_all(
                        registry_sql.IDS_IN_STATE, (self.channel, state, max_id, DELETE_BATCH))]  # fmt: skip
                    if not ids:
                        return 0, 0
                    gone = tx.execute(registry_sql.DELETE_IDS_IN_STATE, (state,), ids).rowcount
                    tx.count(**{state: -gone})
                    return len(ids), gone

                found, gone = self.conn.transaction(fn)
                total += gone
                if not found:
                    break
        return total

    def _max_id(self) -> int:
        return int(self.conn.read(registry_sql.MAX_ID)["max_id"])  # type: ignore[index]

    def clear(self) -> int:
        """Live jobs and failed entries go in short batches (no long lock); returns the live jobs gone.
        The id sequence and the done / failed_total / follow_up_failed totals are kept."""
        if self.conn.no_file_yet():
            return 0
        max_id = self._max_id()
        gone = self._delete_states(("waiting", "delayed", "reserved"), max_id)
        self._delete_states(("failed",), max_id)
        self.conn.transaction(lambda tx: tx.execute(registry_sql.DELETE_FOLLOW_UPS, (self.channel,)))
        self.conn.transaction(lambda tx: tx.execute(registry_sql.DELETE_LIMIT_KEYS, (self.channel,)))
        return gone

    def failed_list(self, offset: int = 0, limit: int = 50) -> list[FailedJob]:
        rows = self.conn.read_all(registry_sql.FAILED_PAGE, (self.channel, max(int(limit), 0), max(int(offset), 0)))
        return [failed_job(row) for row in rows]

    def failed_get(self, job_id: int) -> FailedJob | None:
        row = self.conn.read(registry_sql.FAILED_ONE, (job_id, self.channel))
        if row is None:
            return None
        return replace(failed_job(row), history=attempt_history.attempts(row["history"]))

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        if self.conn.no_file_yet():
            return False

        def fn(tx: Tx) -> bool:
            row = self._locked_job(tx, job_id)
            if row is None or row["state"] != "failed":
                return False
            new_state = "delayed" if delay > 0 else "waiting"
            attempt = 0 if reset_attempts else row["attempt"]
            tx.execute(registry_sql.REQUEUE_FAILED, (new_state, attempt, tx.now + max(float(delay), 0.0), job_id))
            tx.count(failed=-1, **{new_state: 1})
            self._notify(tx)
            return True

        return self.conn.transaction(fn)

    def failed_purge(self) -> int:
        return 0 if self.conn.no_file_yet() else self._delete_states(("failed",), self._max_id())

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        def fn(tx: Tx) -> None:
            f = failure
            tx.execute(
                registry_sql.INSERT_FOLLOW_UP,
                (self.channel, f.job_id, f.attempt, f.event[:32], f.handler[:255], f.error_class[:255],
                 f.message, f.traceback, float(f.at or tx.now)),
            )  # fmt: skip
            tx.count(follow_up_total=1)
            edge = tx.fetch_one(registry_sql.FOLLOW_UP_EDGE, (self.channel, max(self.policy.follow_up_limit, 0)))
            if edge is not None:
                tx.execute(registry_sql.TRIM_FOLLOW_UPS, (self.channel, edge["seq"]))

        self.conn.transaction(fn)

    def follow_up_list(self, offset: int = 0, limit: int = 50) -> list[FollowUpFailure]:
        rows = self.conn.read_all(registry_sql.FOLLOW_UP_PAGE, (self.channel, max(int(limit), 0), max(int(offset), 0)))
        return [
            FollowUpFailure(r["job_id"], r["attempt"], r["event"], r["handler"], r["error_class"], r["message"],
                            r["traceback"], float(r["at"]), r["seq"])
            for r in rows
        ]
