"""The ``db`` driver: the Driver contract on SQLite, PostgreSQL and MySQL/MariaDB through Peewee.

Reserve takes no global lock (the yii2-queue db driver's mutex ended workers with "Has not waited the
lock", yii2-queue issue #234):

* PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` + ``UPDATE … RETURNING`` in one statement; promote,
  reserve (and the previous job's ack) and the counter updates go in one round trip of prepared
  statements, one implicit transaction. ``push`` sends ``NOTIFY`` and a waiting ``reserve(timeout)``
  ``LISTEN``\\ s on a connection of its own, so pickup is prompt.
* MySQL 8 / MariaDB ≥ 10.6: ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE`` by id in a short
  READ COMMITTED transaction (no gap locks, so reserve does not deadlock with push, as in yii2-queue issue #245). Older
  servers fall back to a plain ``FOR UPDATE``.
* SQLite (WAL): ``BEGIN IMMEDIATE`` takes the single write lock at once; select and guarded update run
  inside it, so the step is atomic; ``busy_timeout`` queues writers instead of failing them.

Indexes keep reserve O(log n) however many rows wait or are delayed (yii2-queue issue #280 was the opposite: see db_schema). A blocking
``reserve(timeout)`` polls with a short backoff (10 ms doubling to 200 ms, never past the next delayed
job's due time); on PostgreSQL it sleeps on ``LISTEN`` instead.

Counts are O(1): ``<prefix>counters`` holds per-state sizes that every transaction adjusts by exactly
the rows it changed, sharded per driver instance so workers do not queue behind one hot row (a queue
reads at most 16 rows). A delayed job stays *stored* as ``delayed`` until a reserve promotes it;
``counts()``, ``status()`` and ``get()`` report it as waiting once due (counting those due-but-not-yet-
promoted rows is one index range, empty while workers run).

A job in the failed registry is a row in state ``failed`` of the same table, so every transition is
one guarded UPDATE or DELETE; the guard of every settling write is the row's ``lease`` (the token
the reservation carries, +1 at every reserve and reclaim).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import peewee as pw

from pubq.drivers import history as attempt_history
from pubq.drivers.base import (
    CANCELLED_CODE,
    DEFAULT_PRIORITY,
    BaseDriver,
    Counts,
    FailedJob,
    FailureInfo,
    FollowUpFailure,
    JobInfo,
    JobStatus,
    Policy,
    PushItem,
    Reclaimed,
    ReclaimKind,
    Reservation,
)
from pubq.drivers.db_conn import COUNTERS, DbConnection, Tx
from pubq.drivers.db_ops import DbOps, reserved_fields
from pubq.drivers.db_sql import (
    JOB_COLUMNS,
    NOT_PAUSED,
    PG_ACK,
    PG_ACK_KEEP,
    PG_NOTIFY,
    PG_PROMOTE,
    PG_PUSH,
    PG_RESERVE,
    PG_RESERVE_ACKED,
    PROMOTE_BATCH,
)
from pubq.errors import ConfigError

#: Blocking reserve: first poll interval and its cap (seconds), and the safety poll while LISTENing.
POLL_MIN = 0.01
POLL_MAX = 0.2
LISTEN_POLL = 1.0
#: How long a draining reserve keeps trying for a waiting row that ``SKIP LOCKED`` hid from it.
HIDDEN_ROW_PATIENCE = 1.0
#: The counters, plus delayed rows already due (they count as waiting). The count runs only when the
#: earliest delayed row (one index lookup) is due: on its own it lets PostgreSQL's planner, which
#: can't tell that delayed rows are the future ones, scan every delayed row on each ``info``.
COUNTS_SQL = (
    "SELECT " + ", ".join(f"coalesce(sum({c}), 0)" for c in COUNTERS.values())
    + ", CASE WHEN (SELECT min(due_at) FROM {J} WHERE channel = ? AND state = 'delayed') <= {NOW}"
    " THEN (SELECT count(*) FROM {J} WHERE channel = ? AND state = 'delayed' AND due_at <= {NOW})"
    " ELSE 0 END FROM {C} WHERE channel = ?"
)
#: Rows per batch when clearing or purging (keeps transactions and their locks short).
DELETE_BATCH = 1000
#: Rows per INSERT statement of push_many (SQLite/MySQL), per statement on PostgreSQL.
INSERT_CHUNK = 500
PG_PUSH_CHUNK = 5000

Row = tuple[bytes, int, float, int]  # payload, ttr, delay, priority

#: Reserve on SQLite/MySQL (PostgreSQL: db_sql.PG_PROMOTE / PG_RESERVE): due delayed rows, via jobs_due …
DUE_SQL = (
    "SELECT id FROM {J} WHERE channel = ? AND state = 'delayed' AND due_at <= ?"
    f" ORDER BY due_at LIMIT {PROMOTE_BATCH}"
)
#: … then the first waiting row in priority and push order, via jobs_ready.
PICK_SQL = (
    "SELECT id, payload, attempt, ttr, priority, pushed_at, lease FROM {J}"
    f" WHERE channel = ? AND state = 'waiting' AND {NOT_PAUSED} ORDER BY priority, id LIMIT 1{{SKIP}}"
)
#: The guard of every write that settles a reservation: reserved under this lease.
HELD = "id = ? AND channel = ? AND state = 'reserved' AND lease = ?"
#: The guard of settle/unfail: a failed attempt still unsettled, under this lease.
UNSETTLED = "id = ? AND channel = ? AND state = 'failed' AND lease = ? AND expires_at IS NOT NULL"


class DbDriver(DbConnection, DbOps, BaseDriver):
    """One queue (``channel``) in SQL tables shared by all queues of the database (see db_schema)."""

    def __init__(
        self,
        database: str | pw.Database,
        channel: str,
        *,
        policy: Policy | None = None,
        table_prefix: str = "pubq_",
        pooler: str | None = None,
    ) -> None:
        if not isinstance(channel, str) or not channel or len(channel) > 255:
            raise ConfigError("channel must be a non-empty string of at most 255 characters")
        self.channel = channel
        self.policy = policy or Policy()
        self._notify_name = "pubq_" + hashlib.md5(f"{table_prefix}\0{channel}".encode()).hexdigest()
        super().__init__(database, table_prefix, pooler)

    def _on_connect(self, cur: Any) -> None:
        cols = ", ".join(COUNTERS.values())
        zeros = ", 0" * len(COUNTERS)
        head, tail = {
            "sqlite": ("INSERT OR IGNORE INTO", ""),
            "mysql": ("INSERT IGNORE INTO", ""),
            "postgres": ("INSERT INTO", " ON CONFLICT DO NOTHING"),
        }[self.kind]
        sql = f"{head} {{C}} (channel, shard, {cols}) VALUES (?, ?{zeros}){tail}"
        cur.execute(self._q(sql), (self.channel, self._shard))

    def _notify(self, tx: Tx) -> None:
        if self.kind == "postgres":
            tx.x("SELECT pg_notify(?, '')", (self._notify_name,))

    # -- producing ---------------------------------------------------------------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        return self.push_many([PushItem(payload, ttr, delay, priority)])[0]

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        rows = [(bytes(i.payload), i.ttr, float(i.delay), i.priority) for i in items]
        if not rows:
            return []
        self._cursor()  # connect and detect the dialect before choosing a path
        if self._pg_fast and len(rows) <= PG_PUSH_CHUNK:
            return [row[0] for row in self._pg((PG_NOTIFY, (self._notify_name,)), self._pg_push_call(rows))]
        return self._write(lambda tx: self._push_tx(tx, rows))

    def _pg_push_call(self, rows: list[Row]) -> tuple[Any, list[Any]]:
        delayed = sum(1 for r in rows if r[2] > 0)
        columns = [list(c) for c in zip(*rows, strict=True)]
        return PG_PUSH, [self.channel, self._shard, *columns, len(rows) - delayed, delayed]

    def _push_tx(self, tx: Tx, rows: list[Row]) -> list[int]:
        now, ch = tx.now, self.channel
        values = [
            (ch, "delayed" if d > 0 else "waiting", p, ttr, prio, 0, now, now + d) for p, ttr, d, prio in rows
        ]
        head = "INSERT INTO {J} (channel, state, payload, ttr, priority, attempt, pushed_at, due_at) VALUES "
        ids: list[int] = []
        if self._dialect and self._dialect.insert_returning and len(values) > 1:
            for start in range(0, len(values), INSERT_CHUNK):
                chunk = values[start : start + INSERT_CHUNK]
                sql = head + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)) + " RETURNING id"
                # ids are assigned in VALUES order, so sorted ids are in input order
                ids.extend(sorted(r[0] for r in tx.all(sql, [v for row in chunk for v in row])))
        else:
            for row in values:
                ids.append(tx.x(head + "(?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid)
        delayed = sum(1 for v in values if v[1] == "delayed")
        tx.add(waiting=len(values) - delayed, delayed=delayed)
        self._notify(tx)
        return ids

    # -- consuming ---------------------------------------------------------------------------------

    def reserve(self, timeout: float = 0, *, holder: str = "") -> Reservation | None:
        r, due_in = self._reserve_once(None, holder)[1:]
        if r is None and timeout <= 0:
            return self._reserve_past_locks(holder)
        if r is not None:
            return r
        end = time.monotonic() + timeout
        pause = POLL_MIN
        listener = self._listen(self._notify_name)
        if listener is not None:  # LISTEN began after the first attempt: look once more
            r, due_in = self._reserve_once(None, holder)[1:]
        while r is None:
            left = end - time.monotonic()
            if left <= 0:
                return None
            if listener is not None:
                wait = min(left, LISTEN_POLL)
            else:
                wait = min(left, pause)
                pause = min(pause * 2, POLL_MAX)
            if due_in is not None:
                wait = min(wait, max(due_in, 0.001))
            if listener is None:
                time.sleep(wait)
            elif not self._wait_notify(wait):
                listener = None  # the listener broke: poll from now on
            r, due_in = self._reserve_once(None, holder)[1:]
        return r

    def _reserve_past_locks(self, holder: str) -> Reservation | None:
        """``SKIP LOCKED`` also skips a waiting row that a sibling's reserve merely scanned (InnoDB locks
        what it reads). A draining worker would then exit with that job still waiting; while a plain
        read still sees a due waiting row, try again for up to ``HIDDEN_ROW_PATIENCE`` seconds."""
        if self._dialect is None or not self._dialect.skip_locked:
            return None
        end = time.monotonic() + HIDDEN_ROW_PATIENCE
        pause = 0.002
        while self._read(f"SELECT 1 FROM {{J}} WHERE channel = ? AND state = 'waiting' AND {NOT_PAUSED} LIMIT 1",
                         (self.channel, self.channel)):
            if time.monotonic() >= end:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            r = self._reserve_once(None, holder)[1]
            if r is not None:
                return r
        return None

    def ack(self, r: Reservation) -> bool:
        self._cursor()
        if self._pg_fast:
            return self._pg((PG_ACK, (self.channel, self._shard, r.job_id, r.token)))[0][0] == 1
        return self._write(lambda tx: self._ack_tx(tx, r))

    def ack_and_reserve(self, r: Reservation, *, holder: str = "") -> tuple[bool, Reservation | None]:
        acked, nxt, _ = self._reserve_once(r, holder)
        return acked, nxt

    def _reserve_once(self, ack: Reservation | None,
                      holder: str = "") -> tuple[bool, Reservation | None, float | None]:
        """(acked, reservation, seconds until the next delayed job is due): one transaction."""
        self._cursor()
        grace = float(self.policy.grace)
        if self._pg_fast:
            ch, shard = self.channel, self._shard
            reserve = (PG_RESERVE if ack is None else PG_RESERVE_ACKED, (ch, shard, grace, holder or None))
            if ack is None:
                row = self._pg((PG_PROMOTE, (ch, shard)), reserve)[0]
                acked = False
            else:
                keep = (PG_ACK_KEEP, (ch, shard, ack.job_id, ack.token))
                acked, *row = self._pg(keep, (PG_PROMOTE, (ch, shard)), reserve)[0]
            if row[0] is None:
                return bool(acked), None, row[8]
            return bool(acked), _reservation(row[:8]), None

        def fn(tx: Tx) -> tuple[bool, Reservation | None, float | None]:
            acked = self._ack_tx(tx, ack) if ack is not None else False
            return (acked, *self._reserve_tx(tx, grace, holder))

        return self._write(fn)

    def _ack_tx(self, tx: Tx, r: Reservation) -> bool:
        if tx.x(f"DELETE FROM {{J}} WHERE {HELD}", (r.job_id, self.channel, r.token)).rowcount != 1:
            return False
        tx.add(reserved=-1, done=1)
        return True

    def _reserve_tx(self, tx: Tx, grace: float, holder: str = "") -> tuple[Reservation | None, float | None]:
        ch = self.channel
        if self.kind == "sqlite":
            moved = tx.x(f"UPDATE {{J}} SET state = 'waiting' WHERE id IN ({DUE_SQL})", (ch, tx.now)).rowcount
        else:  # MySQL has no LIMIT in an IN subquery
            ids = [row[0] for row in tx.all(DUE_SQL + "{SKIP}", (ch, tx.now))]
            moved = (
                tx.x("UPDATE {J} SET state = 'waiting' WHERE id IN ({IDS})", (), ids).rowcount if ids else 0
            )
        tx.add(waiting=moved, delayed=-moved)
        row = tx.one(PICK_SQL, (ch, ch))
        if row is None:
            nxt = tx.one("SELECT min(due_at) FROM {J} WHERE channel = ? AND state = 'delayed'", (ch,))[0]
            return None, (None if nxt is None else float(nxt) - tx.now)
        job_id, payload, attempt, ttr, priority, pushed_at, lease = row
        deadline = tx.now + ttr
        tx.x(
            "UPDATE {J} SET state = 'reserved', attempt = ?, lease = ?, deadline = ?, expires_at = ?, holder = ?,"
            " cancel_reason = NULL, progress = NULL, progress_message = NULL WHERE id = ?",
            (attempt + 1, lease + 1, deadline, deadline + grace, holder or None, job_id),
        )
        tx.add(waiting=-1, reserved=1)
        return _reservation((job_id, payload, attempt + 1, ttr, deadline, lease + 1, priority, pushed_at)), None

    # -- outcomes ---------------------------------------------------------------------------------

    def extend(self, r: Reservation, seconds: float) -> bool:
        sql = f"UPDATE {{J}} SET expires_at = CASE WHEN expires_at > ? THEN expires_at ELSE ? END WHERE {HELD}"

        def fn(tx: Tx) -> bool:
            until = tx.now + float(seconds)
            return tx.x(sql, (until, until, r.job_id, self.channel, r.token)).rowcount == 1

        return self._write(fn)

    def release(self, r: Reservation) -> bool:
        def fn(tx: Tx) -> bool:
            n = tx.x(
                "UPDATE {J} SET state = 'waiting', attempt = attempt - 1, deadline = NULL, expires_at = NULL,"
                f" due_at = ? WHERE {HELD}",
                (tx.now, r.job_id, self.channel, r.token),
            ).rowcount
            if n == 1:
                tx.add(reserved=-1, waiting=1)
                self._notify(tx)
            return n == 1

        return self._write(fn)

    def retry_later(self, r: Reservation, delay: float, info: FailureInfo | None = None) -> bool:
        def fn(tx: Tx) -> bool:
            history = self._history_with(tx, r, info) if info is not None else None
            if info is not None and history is None:
                return False
            return self._reschedule(tx, r, HELD, "reserved", delay, history)

        return self._write(fn)

    def unfail(self, r: Reservation, delay: float) -> bool:
        return self._write(lambda tx: self._reschedule(tx, r, UNSETTLED, "failed", delay))

    def _reschedule(self, tx: Tx, r: Reservation, guard: str, from_state: str, delay: float,
                    history: str | None = None) -> bool:
        """The guarded row → waiting (delay 0) or delayed, attempt count kept, error fields cleared
        (and the attempt history replaced by ``history`` when given)."""
        new_state = "delayed" if delay > 0 else "waiting"
        keep = "history" if history is None else "?"
        n = tx.x(
            "UPDATE {J} SET state = ?, due_at = ?, deadline = NULL, expires_at = NULL, error_class = NULL,"
            f" error_message = NULL, error_traceback = NULL, error_code = NULL, retry_delay = NULL, history = {keep}"
            f" WHERE {guard}",
            (new_state, tx.now + max(float(delay), 0.0), *(() if history is None else (history,)), r.job_id,
             self.channel, r.token),
        ).rowcount
        if n != 1:
            return False
        tx.add(**{from_state: -1}, **{new_state: 1}, retried=1)
        self._notify(tx)
        return True

    def _history_with(self, tx: Tx, r: Reservation, info: FailureInfo) -> str | None:
        """The held job's attempt history with ``info`` added (newest ``history_limit`` kept), as
        JSON; None when ``r`` no longer holds the job."""
        row = tx.one(f"SELECT history, attempt FROM {{J}} WHERE {HELD}", (r.job_id, self.channel, r.token))
        if row is None:
            return None
        return attempt_history.appended(row[0], int(row[1]), info, tx.now, self.policy.history_limit)

    def fail(self, r: Reservation, info: FailureInfo) -> bool:
        def fn(tx: Tx) -> bool:
            history = self._history_with(tx, r, info)
            if history is None:
                return False
            n = tx.x(
                "UPDATE {J} SET state = 'failed', due_at = ?, deadline = NULL, expires_at = ?, error_class = ?,"
                f" error_message = ?, error_traceback = ?, error_code = ?, retry_delay = ?, history = ? WHERE {HELD}",
                (tx.now, tx.now + float(self.policy.settle_within), info.error_class[:255], info.message,
                 info.traceback, (info.code or "")[:64], info.retry_delay, history, r.job_id, self.channel,
                 r.token),
            ).rowcount  # fmt: skip
            if n != 1:
                return False
            tx.add(reserved=-1, failed=1)
            self._trim_failed(tx)
            return True

        return self._write(fn)

    def _trim_failed(self, tx: Tx) -> None:
        size = tx.one("SELECT coalesce(sum(n_failed), 0) FROM {C} WHERE channel = ?", (self.channel,))[0]
        excess = int(size) + tx.delta["failed"] - max(self.policy.failed_limit, 0)
        if excess > 0:
            ids = [r[0] for r in tx.all(
                "SELECT id FROM {J} WHERE channel = ? AND state = 'failed' ORDER BY due_at, id LIMIT ?{SKIP}",
                (self.channel, excess))]  # fmt: skip
            if ids:
                gone = tx.x("DELETE FROM {J} WHERE state = 'failed' AND id IN ({IDS})", (), ids).rowcount
                tx.add(failed=-gone)

    def settle(self, r: Reservation) -> bool:
        def fn(tx: Tx) -> bool:
            n = tx.x(f"UPDATE {{J}} SET expires_at = NULL, retry_delay = NULL WHERE {UNSETTLED}",
                     (r.job_id, self.channel, r.token)).rowcount
            if n == 1:
                tx.add(failed_total=1)
                code = tx.one("SELECT error_code FROM {J} WHERE id = ?", (r.job_id,))
                if code is not None and code[0] == CANCELLED_CODE:
                    tx.add(cancelled=1)
            return n == 1

        return self._write(fn)

    def reclaim_expired(self, limit: int = 100) -> list[Reclaimed]:
        if limit <= 0:
            return []

        def fn(tx: Tx) -> list[Reclaimed]:
            rows = tx.all(
                f"SELECT {JOB_COLUMNS} FROM {{J}} WHERE channel = ? AND expires_at <= ? ORDER BY expires_at LIMIT ?{{SKIP}}",
                (self.channel, tx.now, int(limit)),
            )
            until = tx.now + float(self.policy.hold)
            lost = [row[0] for row in rows if row[1] == "reserved"]
            unsettled = [row[0] for row in rows if row[1] == "failed"]
            # a new lease for each: the old holder's writes are refused from now on
            if lost:
                tx.x("UPDATE {J} SET deadline = ?, expires_at = ?, lease = lease + 1 WHERE id IN ({IDS})",
                     (until, until), lost)
            if unsettled:
                tx.x("UPDATE {J} SET expires_at = ?, lease = lease + 1 WHERE id IN ({IDS})", (until,), unsettled)
            out = []
            for row in rows:
                job_id, state, payload, attempt, ttr, priority, pushed_at = row[:7]
                res = Reservation(job_id, as_bytes(payload), attempt, ttr, until, int(row[14]) + 1, priority,
                                  float(pushed_at))
                if state == "reserved":
                    out.append(Reclaimed(ReclaimKind.LOST, res, overdue=max(0.0, tx.now - float(row[8])),
                                         cancel_reason=row[17]))
                elif state == "failed":
                    out.append(Reclaimed(ReclaimKind.UNSETTLED, res, failure=_failed(row)))
            return out

        return self._write(fn)

    # -- inspection and maintenance ------------------------------------------------------------------

    def status(self, job_id: int) -> JobStatus:
        row = self._read(
            "SELECT state, due_at <= {NOW} FROM {J} WHERE id = ? AND channel = ?", (job_id, self.channel)
        )
        return JobStatus.DONE if row is None else _status(row[0], bool(row[1]))

    def get(self, job_id: int) -> JobInfo | None:
        row = self._read(
            f"SELECT {JOB_COLUMNS}, {{NOW}} FROM {{J}} WHERE id = ? AND channel = ?", (job_id, self.channel)
        )
        return None if row is None else self._row_info(row)

    def _row_info(self, row: Sequence[Any]) -> JobInfo:
        """A row read as ``JOB_COLUMNS`` then the database clock."""
        state, due_at, now = row[1], float(row[7]), float(row[20])
        info = JobInfo(row[0], _status(state, due_at <= now), as_bytes(row[2]), row[3], row[4], row[5],
                       float(row[6]))
        if state in ("waiting", "delayed"):
            return replace(info, due_at=due_at)
        if state == "reserved":
            return replace(info, deadline=float(row[8]), **reserved_fields(row))
        return replace(info, failed_at=due_at, unsettled=row[9] is not None, error_class=row[10] or "",
                       message=row[11] or "", code=row[13] or "")

    def counts(self) -> Counts:
        row = self._read(COUNTS_SQL, (self.channel, self.channel, self.channel))
        if row is None:  # no database file yet
            return Counts()
        waiting, delayed, reserved, failed, done, failed_total, follow_ups, retried, cancelled, due = (
            int(v) for v in row)
        return Counts(waiting + due, delayed - due, reserved, done, failed, failed_total, follow_ups, retried,
                      cancelled)

    def _locked_job(self, tx: Tx, job_id: int) -> Any:
        """(state, attempt) of this channel's row, locked for the transaction; None when absent."""
        return tx.one("SELECT state, attempt FROM {J} WHERE id = ? AND channel = ?{LOCK}", (job_id, self.channel))

    def remove(self, job_id: int) -> bool:
        if self._no_file_yet():
            return False

        def fn(tx: Tx) -> bool:
            row = self._locked_job(tx, job_id)
            if row is None:
                return False
            tx.x("DELETE FROM {J} WHERE id = ?", (job_id,))
            tx.add(**{row[0]: -1})
            return True

        return self._write(fn)

    def _delete_states(self, states: Sequence[str], max_id: int) -> int:
        """Delete this channel's rows in ``states`` (ids ≤ max_id) in short batches; returns how many."""
        total = 0
        for state in states:
            while True:

                def fn(tx: Tx, state: str = state) -> tuple[int, int]:
                    ids = [r[0] for r in tx.all(
                        "SELECT id FROM {J} WHERE channel = ? AND state = ? AND id <= ? LIMIT ?{LOCK}",
                        (self.channel, state, max_id, DELETE_BATCH))]  # fmt: skip
                    if not ids:
                        return 0, 0
                    gone = tx.x("DELETE FROM {J} WHERE state = ? AND id IN ({IDS})", (state,), ids).rowcount
                    tx.add(**{state: -gone})
                    return len(ids), gone

                found, gone = self._write(fn)
                total += gone
                if not found:
                    break
        return total

    def _max_id(self) -> int:
        return int(self._read("SELECT coalesce(max(id), 0) FROM {J}")[0])

    def clear(self) -> int:
        """Live jobs and failed entries go in short batches (no long lock); returns the live jobs gone.
        The id sequence and the done / failed_total / follow_up_failed totals are kept."""
        if self._no_file_yet():
            return 0
        max_id = self._max_id()
        gone = self._delete_states(("waiting", "delayed", "reserved"), max_id)
        self._delete_states(("failed",), max_id)
        self._write(lambda tx: tx.x("DELETE FROM {F} WHERE channel = ?", (self.channel,)))
        return gone

    def failed_list(self, offset: int = 0, limit: int = 50) -> list[FailedJob]:
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM {{J}} WHERE channel = ? AND state = 'failed'"
            " ORDER BY due_at DESC, id DESC LIMIT ? OFFSET ?",
            (self.channel, max(int(limit), 0), max(int(offset), 0)),
            many=True,
        )
        return [_failed(row) for row in rows]

    def failed_get(self, job_id: int) -> FailedJob | None:
        row = self._read(
            f"SELECT {JOB_COLUMNS}, history FROM {{J}} WHERE id = ? AND channel = ? AND state = 'failed'",
            (job_id, self.channel),
        )
        if row is None:
            return None
        return replace(_failed(row), history=attempt_history.attempts(row[-1]))  # the column after JOB_COLUMNS

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        if self._no_file_yet():
            return False

        def fn(tx: Tx) -> bool:
            row = self._locked_job(tx, job_id)
            if row is None or row[0] != "failed":
                return False
            new_state = "delayed" if delay > 0 else "waiting"
            tx.x(
                "UPDATE {J} SET state = ?, attempt = ?, due_at = ?, deadline = NULL, expires_at = NULL,"
                " error_class = NULL, error_message = NULL, error_traceback = NULL, error_code = NULL,"
                " retry_delay = NULL WHERE id = ?",
                (new_state, 0 if reset_attempts else row[1], tx.now + max(float(delay), 0.0), job_id),
            )
            tx.add(failed=-1, **{new_state: 1})
            self._notify(tx)
            return True

        return self._write(fn)

    def failed_purge(self) -> int:
        return 0 if self._no_file_yet() else self._delete_states(("failed",), self._max_id())

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        def fn(tx: Tx) -> None:
            f = failure
            tx.x(
                "INSERT INTO {F} (channel, job_id, attempt, event, handler, error_class, message, traceback, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.channel, f.job_id, f.attempt, f.event[:32], f.handler[:255], f.error_class[:255],
                 f.message, f.traceback, float(f.at or tx.now)),
            )  # fmt: skip
            tx.add(follow_up_total=1)
            edge = tx.one(
                "SELECT seq FROM {F} WHERE channel = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (self.channel, max(self.policy.follow_up_limit, 0)),
            )
            if edge is not None:
                tx.x("DELETE FROM {F} WHERE channel = ? AND seq <= ?", (self.channel, edge[0]))

        self._write(fn)

    def follow_up_list(self, offset: int = 0, limit: int = 50) -> list[FollowUpFailure]:
        rows = self._read(
            "SELECT job_id, attempt, event, handler, error_class, message, traceback, at, seq FROM {F}"
            " WHERE channel = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
            (self.channel, max(int(limit), 0), max(int(offset), 0)),
            many=True,
        )
        return [FollowUpFailure(r[0], r[1], r[2], r[3], r[4], r[5], r[6], float(r[7]), r[8]) for r in rows]

    def now(self) -> float:
        if self.kind == "sqlite":
            return time.time()
        return float(self._read("SELECT {NOW}")[0])

    def ping(self) -> None:
        self._ping()

    def __repr__(self) -> str:
        return f"DbDriver({self.url}, channel={self.channel!r})"


# -- rows → contract dataclasses ---------------------------------------------------------------------


def _status(state: str, due: bool) -> JobStatus:
    if state == "delayed":
        return JobStatus.WAITING if due else JobStatus.DELAYED
    return JobStatus(state)


def as_bytes(value: Any) -> bytes:
    """A payload column as bytes, whatever the database handed back (memoryview, str in a hand-made row)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b"" if value is None else bytes(value)


def _reservation(row: Sequence[Any]) -> Reservation:
    job_id, payload, attempt, ttr, deadline, lease, priority, pushed_at = row
    return Reservation(job_id, as_bytes(payload), attempt, ttr, float(deadline), int(lease), priority,
                       float(pushed_at))


def _failed(row: Sequence[Any]) -> FailedJob:
    return FailedJob(
        job_id=row[0], payload=as_bytes(row[2]), attempts=row[3], error_class=row[10] or "", message=row[11] or "",
        traceback=row[12] or "", code=row[13] or "", pushed_at=float(row[6]), failed_at=float(row[7]),
        ttr=row[4], priority=row[5], unsettled=row[9] is not None,
        retry_delay=None if row[9] is None or row[15] is None else float(row[15]),
    )  # fmt: skip
