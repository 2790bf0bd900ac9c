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

The driver *has* a :class:`~pubq.drivers.db_conn.DbConnection` (``self.conn``: connections,
transactions, retries, LISTEN); its SQL is the named statements of :mod:`pubq.drivers.db_sql` and, for
PostgreSQL's hot paths, :mod:`pubq.drivers.db_sql_pg`; it reads rows by column name.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import peewee as pw

from pubq.drivers import db_sql as sql
from pubq.drivers import db_sql_pg as pg_sql
from pubq.drivers import history as attempt_history
from pubq.drivers.base import BaseDriver
from pubq.drivers.db_batch import DbBatch
from pubq.drivers.db_conn import DbConnection, Tx
from pubq.drivers.db_inspect import DbInspection
from pubq.drivers.db_limits import DbLimits
from pubq.drivers.db_ops import DbOps
from pubq.drivers.db_rows import failed_job, reservation
from pubq.drivers.db_unique import DbUniqueOps
from pubq.drivers.records import (
    CANCELLED_CODE,
    DEFAULT_PRIORITY,
    FailureInfo,
    Policy,
    PushItem,
    Reclaimed,
    ReclaimKind,
    Reservation,
)
from pubq.errors import ConfigError

#: Blocking reserve: first poll interval and its cap (seconds), and the safety poll while LISTENing.
#: Without LISTEN (not PostgreSQL, or behind a transaction pooler) a push reaches an idle worker
#: within POLL_MAX plus one round trip.
POLL_MIN = 0.01
POLL_MAX = 0.2
LISTEN_POLL = 1.0
#: How long a draining reserve keeps trying for a waiting row that ``SKIP LOCKED`` hid from it. The
#: sibling holding the row ends its transaction in milliseconds, unless its process is descheduled: on a
#: loaded 2-CPU machine 1 s was once not enough (a draining worker left 2 jobs waiting). An empty queue
#: never waits here; only a visible but locked row does.
HIDDEN_ROW_PATIENCE = 5.0
#: Rows per INSERT statement of push_many (SQLite/MySQL), per statement on PostgreSQL.
INSERT_CHUNK = 500
PG_PUSH_CHUNK = 5000

class NewJob(NamedTuple):
    """One job of a push, as the statements take it."""

    payload: bytes
    ttr: int
    delay: float
    priority: int


class DbDriver(DbBatch, DbInspection, DbOps, DbUniqueOps, DbLimits, BaseDriver):
    """One queue (``channel``) in SQL tables shared by all queues of the database (see db_schema).

    ``pooler``: the connection pooler in front of PostgreSQL (``none``, ``session``, ``transaction``),
    for a Peewee database given as is; a URL says it with ``?pooler=``."""

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
        self.conn = DbConnection(database, channel, table_prefix, pooler)

    # What callers and tests read off the driver itself.
    @property
    def db(self) -> pw.Database:
        return self.conn.db

    @property
    def kind(self) -> str:
        return self.conn.kind

    @property
    def url(self) -> str:
        return self.conn.url

    @property
    def table_prefix(self) -> str:
        return self.conn.table_prefix

    def migrate(self) -> tuple[int, int]:
        return self.conn.migrate()

    def close(self) -> None:
        self.conn.close()

    def _notify(self, tx: Tx) -> None:
        if self.kind == "postgres":
            tx.defer(sql.NOTIFY, (self._notify_name,))  # delivered at COMMIT anyway: sent with it

    # -- producing ---------------------------------------------------------------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        return self.push_many([PushItem(payload, ttr, delay, priority)])[0]

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        jobs = [NewJob(bytes(i.payload), i.ttr, float(i.delay), i.priority) for i in items]
        if not jobs:
            return []
        self.conn.cursor()  # connect and detect the dialect before choosing a path
        if self.conn.pg_round_trips and len(jobs) <= PG_PUSH_CHUNK:
            rows = self.conn.pg_round_trip((pg_sql.PG_NOTIFY, (self._notify_name,)), self._pg_push_call(jobs))
            return [row["id"] for row in rows]
        return self.conn.transaction(lambda tx: self._push_tx(tx, jobs))

    def _pg_push_call(self, jobs: list[NewJob]) -> tuple[sql.PgStatement, list[Any]]:
        delayed = sum(1 for job in jobs if job.delay > 0)
        columns = [list(c) for c in zip(*jobs, strict=True)]
        return pg_sql.PG_PUSH, [self.channel, self.conn.counter_shard, *columns, len(jobs) - delayed, delayed]

    def _push_tx(self, tx: Tx, jobs: list[NewJob]) -> list[int]:
        now, ch = tx.now, self.channel
        values = [  # the columns of INSERT_JOB, in its order
            (ch, "delayed" if d > 0 else "waiting", p, ttr, prio, 0, now, now + d) for p, ttr, d, prio in jobs
        ]
        ids: list[int] = []
        dialect = self.conn.dialect
        if dialect and dialect.insert_returning and len(values) > 1:
            for start in range(0, len(values), INSERT_CHUNK):
                chunk = values[start : start + INSERT_CHUNK]
                rows = tx.fetch_all(sql.insert_jobs_returning(len(chunk)), [v for row in chunk for v in row])
                # ids are assigned in VALUES order, so sorted ids are in input order
                ids.extend(sorted(row["id"] for row in rows))
        else:
            for row in values:
                ids.append(tx.execute(sql.INSERT_JOB, row).lastrowid)
        delayed = sum(1 for job in jobs if job.delay > 0)
        tx.count(waiting=len(values) - delayed, delayed=delayed)
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
        listener = self.conn.listen(self._notify_name)
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
            elif not self.conn.wait_notify(wait):
                listener = None  # the listener broke: poll from now on
            r, due_in = self._reserve_once(None, holder)[1:]
        return r

    def _reserve_past_locks(self, holder: str) -> Reservation | None:
        """``SKIP LOCKED`` also skips a waiting row that a sibling's reserve merely scanned (InnoDB locks
        what it reads). A draining worker would then exit with that job still waiting; while a plain
        read still sees a due waiting row, try again for up to ``HIDDEN_ROW_PATIENCE`` seconds."""
        if self.conn.dialect is None or not self.conn.dialect.skip_locked:
            return None
        end = time.monotonic() + HIDDEN_ROW_PATIENCE
        pause = 0.002
        while self.conn.read(sql.ANY_WAITING, (self.channel, self.channel)):
            if time.monotonic() >= end:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            r = self._reserve_once(None, holder)[1]
            if r is not None:
                return r
        return None

    def ack(self, r: Reservation) -> bool:
        self.conn.cursor()
        if self.conn.pg_round_trips:
            call = (pg_sql.PG_ACK, (self.channel, self.conn.counter_shard, r.job_id, r.token))
            return self.conn.pg_round_trip(call)[0]["acked"] == 1
        return self.conn.transaction(lambda tx: self._ack_tx(tx, r))

    def ack_and_reserve(self, r: Reservation, *, holder: str = "") -> tuple[bool, Reservation | None]:
        acked, nxt, _ = self._reserve_once(r, holder)
        return acked, nxt

    def _reserve_once(self, ack: Reservation | None,
                      holder: str = "") -> tuple[bool, Reservation | None, float | None]:
        """(acked, reservation, seconds until the next delayed job is due): one transaction."""
        self.conn.cursor()
        grace = float(self.policy.grace)
        if self.conn.pg_round_trips:
            ch, shard = self.channel, self.conn.counter_shard
            reserve_args = (ch, shard, grace, holder or None)
            if ack is None:
                row = self.conn.pg_round_trip((pg_sql.PG_PROMOTE, (ch, shard)), (pg_sql.PG_RESERVE, reserve_args))[0]
                acked = False
            else:
                keep = (pg_sql.PG_ACK_KEEP, (ch, shard, ack.job_id, ack.token))
                row = self.conn.pg_round_trip(keep, (pg_sql.PG_PROMOTE, (ch, shard)),
                                              (pg_sql.PG_RESERVE_ACKED, reserve_args))[0]
                acked = bool(row["acked"])
            if row["id"] is None:
                return acked, None, row["due_in"]
            return acked, reservation(row), None

        def fn(tx: Tx) -> tuple[bool, Reservation | None, float | None]:
            acked = self._ack_tx(tx, ack) if ack is not None else False
            return (acked, *self._reserve_tx(tx, grace, holder))

        return self.conn.transaction(fn)

    def _ack_tx(self, tx: Tx, r: Reservation) -> bool:
        if tx.execute(sql.ACK, (r.job_id, self.channel, r.token)).rowcount != 1:
            return False
        tx.count(reserved=-1, done=1)
        return True

    def _reserve_tx(self, tx: Tx, grace: float, holder: str = "") -> tuple[Reservation | None, float | None]:
        ch = self.channel
        if self.kind == "sqlite":
            moved = tx.execute(sql.PROMOTE_DUE, (ch, tx.now)).rowcount
        else:  # MySQL has no LIMIT in an IN subquery
            ids = [row["id"] for row in tx.fetch_all(sql.DUE_IDS_LOCKED, (ch, tx.now))]
            moved = tx.execute(sql.PROMOTE_IDS, (), ids).rowcount if ids else 0
        tx.count(waiting=moved, delayed=-moved)
        row = tx.fetch_one(sql.FIRST_WAITING, (ch, ch))
        if row is None:
            nxt = tx.fetch_one(sql.NEXT_DUE_AT, (ch,))["due_at"]  # type: ignore[index]
            return None, (None if nxt is None else float(nxt) - tx.now)
        deadline = tx.now + row["ttr"]
        attempt, lease = row["attempt"] + 1, row["lease"] + 1
        tx.execute(sql.TAKE, (attempt, lease, deadline, deadline + grace, holder or None, row["id"]))
        tx.count(waiting=-1, reserved=1)
        return reservation({**row, "attempt": attempt, "lease": lease, "deadline": deadline}), None

    # -- outcomes ---------------------------------------------------------------------------------

    def extend(self, r: Reservation, seconds: float) -> bool:
        def fn(tx: Tx) -> bool:
            until = tx.now + float(seconds)
            return tx.execute(sql.EXTEND, (until, until, r.job_id, self.channel, r.token)).rowcount == 1

        return self.conn.transaction(fn)

    def release(self, r: Reservation) -> bool:
        def fn(tx: Tx) -> bool:
            n = tx.execute(sql.RELEASE, (tx.now, r.job_id, self.channel, r.token)).rowcount
            if n == 1:
                tx.count(reserved=-1, waiting=1)
                self._notify(tx)
            return n == 1

        return self.conn.transaction(fn)

    def retry_later(self, r: Reservation, delay: float, info: FailureInfo | None = None) -> bool:
        def fn(tx: Tx) -> bool:
            if info is None:
                return self._reschedule(tx, r, sql.RETRY_HELD, "reserved", delay)
            history = self._history_with(tx, r, info)
            if history is None:
                return False
            return self._reschedule(tx, r, sql.RETRY_HELD_WITH_HISTORY, "reserved", delay, history)

        return self.conn.transaction(fn)

    def unfail(self, r: Reservation, delay: float) -> bool:
        return self.conn.transaction(lambda tx: self._reschedule(tx, r, sql.UNFAIL, "failed", delay))

    def _reschedule(self, tx: Tx, r: Reservation, statement: sql.Statement, from_state: str, delay: float,
                    history: str | None = None) -> bool:
        """The guarded row → waiting (delay 0) or delayed, attempt count kept, error fields cleared
        (and the attempt history replaced by ``history`` when the statement takes one)."""
        new_state = "delayed" if delay > 0 else "waiting"
        n = tx.execute(
            statement,
            (new_state, tx.now + max(float(delay), 0.0), *(() if history is None else (history,)), r.job_id,
             self.channel, r.token),
        ).rowcount
        if n != 1:
            return False
        tx.count(**{from_state: -1}, **{new_state: 1}, retried=1)
        self._notify(tx)
        return True

    def _history_with(self, tx: Tx, r: Reservation, info: FailureInfo) -> str | None:
        """The held job's attempt history with ``info`` added (newest ``history_limit`` kept), as
        JSON; None when ``r`` no longer holds the job."""
        row = tx.fetch_one(sql.HELD_HISTORY, (r.job_id, self.channel, r.token))
        if row is None:
            return None
        return attempt_history.appended(row["history"], int(row["attempt"]), info, tx.now,
                                        self.policy.history_limit)

    def fail(self, r: Reservation, info: FailureInfo) -> bool:
        def fn(tx: Tx) -> bool:
            history = self._history_with(tx, r, info)
            if history is None:
                return False
            n = tx.execute(
                sql.FAIL,
                (tx.now, tx.now + float(self.policy.settle_within), info.error_class[:255], info.message,
                 info.traceback, (info.code or "")[:64], info.retry_delay, history, r.job_id, self.channel,
                 r.token),
            ).rowcount  # fmt: skip
            if n != 1:
                return False
            tx.count(reserved=-1, failed=1)
            self._trim_failed(tx)
            return True

        return self.conn.transaction(fn)

    def _trim_failed(self, tx: Tx) -> None:
        size = tx.fetch_one(sql.FAILED_SIZE, (self.channel,))["size"]  # type: ignore[index]
        excess = int(size) + tx.deltas["failed"] - max(self.policy.failed_limit, 0)
        if excess > 0:
            ids = [row["id"] for row in tx.fetch_all(sql.OLDEST_FAILED_IDS, (self.channel, excess))]
            if ids:
                gone = tx.execute(sql.DELETE_FAILED_IDS, (), ids).rowcount
                tx.count(failed=-gone)

    def settle(self, r: Reservation) -> bool:
        def fn(tx: Tx) -> bool:
            n = tx.execute(sql.SETTLE, (r.job_id, self.channel, r.token)).rowcount
            if n == 1:
                tx.count(failed_total=1)
                row = tx.fetch_one(sql.ERROR_CODE, (r.job_id,))
                if row is not None and row["error_code"] == CANCELLED_CODE:
                    tx.count(cancelled=1)
            return n == 1

        return self.conn.transaction(fn)

    def reclaim_expired(self, limit: int = 100) -> list[Reclaimed]:
        if limit <= 0:
            return []

        def fn(tx: Tx) -> list[Reclaimed]:
            rows = tx.fetch_all(sql.EXPIRED, (self.channel, tx.now, int(limit)))
            until = tx.now + float(self.policy.hold)
            lost = [row["id"] for row in rows if row["state"] == "reserved"]
            unsettled = [row["id"] for row in rows if row["state"] == "failed"]
            # a new lease for each: the old holder's writes are refused from now on
            if lost:
                tx.execute(sql.RECLAIM_LOST, (until, until), lost)
            if unsettled:
                tx.execute(sql.RECLAIM_UNSETTLED, (until,), unsettled)
            out = []
            for row in rows:
                res = reservation({**row, "deadline": until, "lease": int(row["lease"]) + 1})
                if row["state"] == "reserved":
                    out.append(Reclaimed(ReclaimKind.LOST, res, overdue=max(0.0, tx.now - float(row["deadline"])),
                                         cancel_reason=row["cancel_reason"]))
                elif row["state"] == "failed":
                    out.append(Reclaimed(ReclaimKind.UNSETTLED, res, failure=failed_job(row)))
            return out

        return self.conn.transaction(fn)

    def now(self) -> float:
        if self.kind == "sqlite":
            return time.time()
        return float(self.conn.read(sql.NOW)["db_now"])  # type: ignore[index]

    def ping(self) -> None:
        self.conn.ping()

    def __repr__(self) -> str:
        return f"DbDriver({self.url}, channel={self.channel!r})"
