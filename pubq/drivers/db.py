"""The ``db`` driver: the Driver contract on SQLite, PostgreSQL and MySQL/MariaDB through Peewee.

Reserve takes no global lock (the yii2-queue db driver's mutex ended workers with "Has not waited the
lock", #234):

* PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` + ``UPDATE … RETURNING`` in one statement; promote,
  reserve and the counter updates go in one round trip (one implicit transaction). ``push`` sends
  ``NOTIFY`` and a waiting ``reserve(timeout)`` ``LISTEN``\\ s on its own connection, so pickup is prompt.
* MySQL 8 / MariaDB ≥ 10.6: ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE`` by id in a short
  READ COMMITTED transaction (no gap locks, so reserve does not deadlock with push, #245). Older
  servers fall back to a plain ``FOR UPDATE``.
* SQLite (WAL): ``BEGIN IMMEDIATE`` takes the single write lock at once; select and guarded update run
  inside it, so the step is atomic; ``busy_timeout`` queues writers instead of failing them.

A blocking ``reserve(timeout)`` polls with a short backoff (10 ms doubling to 200 ms, never past the
next delayed job's due time); on PostgreSQL it sleeps on ``LISTEN`` instead.

Counts: ``<prefix>counters`` holds per-state sizes that every transaction adjusts by exactly the rows
it changed (sharded per worker to avoid a hot row). A delayed job stays *stored* as ``delayed`` until
a reserve promotes it; ``counts()``/``get()`` report it as waiting once due (counting the due-but-not-
yet-promoted rows is one index range, normally empty because workers promote them).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import peewee as pw

from pubq.drivers import db_schema
from pubq.drivers.base import (
    DEFAULT_FAILED_LIMIT,
    DEFAULT_PRIORITY,
    BaseDriver,
    Counts,
    FailedJob,
    FailureInfo,
    FollowUpFailure,
    JobInfo,
    JobStatus,
    PushItem,
    Reclaimed,
    ReclaimKind,
    Reservation,
    check_priority,
)
from pubq.drivers.db_sql import (
    JOB_COLUMNS,
    NOW_SQL,
    PG_ACK_ONLY,
    PG_PUSH,
    abandon,
    as_bytes,
    classify,
    first_line,
    is_db_error,
    pg_reserve_sql,
    track,
    unwrap,
)
from pubq.errors import ConfigError, DriverError

T = TypeVar("T")

#: Blocking reserve: first poll interval and cap (seconds), and the safety poll while LISTENing.
POLL_MIN = 0.01
POLL_MAX = 0.2
LISTEN_POLL = 1.0
#: How long one operation keeps retrying deadlocks / lock timeouts / SQLITE_BUSY (seconds).
RETRY_BUDGET = 30.0
#: Rows per batch when promoting, clearing or purging (keeps transactions short).
BATCH = 1000
#: Rows per INSERT statement in push_many.
INSERT_CHUNK = 500

#: Counter deltas a transaction collects, by name → column of <prefix>counters.
_COUNTERS = {
    "waiting": "n_waiting",
    "delayed": "n_delayed",
    "reserved": "n_reserved",
    "failed": "n_failed",
    "done": "done",
    "failed_total": "failed_total",
    "follow_up_total": "follow_up_total",
}


class _Tx:
    """One open write transaction: ``now`` is fixed for it; counter deltas are flushed before COMMIT."""

    __slots__ = ("d", "cur", "now", "delta")

    def __init__(self, driver: DbDriver, cur: Any, now: float) -> None:
        self.d, self.cur, self.now = driver, cur, now
        self.delta = dict.fromkeys(_COUNTERS, 0)

    def x(self, sql: str, params: Sequence[Any] = (), ids: Sequence[int] = ()) -> Any:
        self.cur.execute(self.d._q(sql, len(ids)), (*params, *ids))
        return self.cur

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.x(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.x(sql, params).fetchall())

    def add(self, **deltas: int) -> None:
        for key, value in deltas.items():
            self.delta[key] += value

    def flush(self) -> None:
        if any(self.delta.values()):
            sets = ", ".join(f"{c} = {c} + ?" for c in _COUNTERS.values())
            self.x(
                f"UPDATE {{C}} SET {sets} WHERE channel = ? AND shard = ?",
                (*self.delta.values(), self.d.channel, self.d._shard),
            )
            self.delta = dict.fromkeys(_COUNTERS, 0)


class DbDriver(BaseDriver):
    """One queue (``channel``) in SQL tables shared by all queues of the database (see db_schema)."""

    def __init__(
        self,
        database: str | pw.Database,
        channel: str,
        *,
        failed_limit: int = DEFAULT_FAILED_LIMIT,
        follow_up_limit: int = DEFAULT_FAILED_LIMIT,
        table_prefix: str = "pubq_",
    ) -> None:
        if isinstance(database, str):
            self.url = db_schema.redact(database)
            self.db = db_schema.open_database(database)
            self._owns_db = True
        elif isinstance(database, pw.Database):
            self.url = f"{type(database).__name__}({database.database!r})"
            self.db, self._owns_db = database, False
        else:
            raise ConfigError(f"database must be a URL or a Peewee Database, not {type(database).__name__}")
        if not isinstance(channel, str) or not channel or len(channel) > 255:
            raise ConfigError("channel must be a non-empty string of at most 255 characters")
        self.channel = channel
        self.failed_limit = int(failed_limit)
        self.follow_up_limit = int(follow_up_limit)
        self.table_prefix = table_prefix
        self.kind = db_schema.dialect_name(self.db)
        self.models = db_schema.build_models(self.db, table_prefix)
        quote = "`" if self.kind == "mysql" else '"'
        self._tables = {
            k: f"{quote}{table_prefix}{n}{quote}"
            for k, n in (("J", "jobs"), ("C", "counters"), ("F", "follow_ups"))
        }
        self._notify_name = "pubq_" + hashlib.md5(f"{table_prefix}\0{channel}".encode()).hexdigest()
        self._dialect: db_schema.Dialect | None = None
        self._sql: dict[tuple[str, int], str] = {}
        self._migrated = False
        self._shard = 0
        self._local = threading.local()  # .conn: the connection set up for this thread
        self._listener: Any = None
        self._pg_fast = False
        track(self)

    # -- connection plumbing -------------------------------------------------------------------

    def _q(self, template: str, n_ids: int = 0) -> str:
        key = (template, n_ids)
        sql = self._sql.get(key)
        if sql is None:
            d = self._dialect or db_schema.Dialect(self.kind)
            lock = "" if self.kind == "sqlite" else " FOR UPDATE"
            skip = " FOR UPDATE SKIP LOCKED" if d.skip_locked else lock
            sql = template.format(
                LOCK=lock, SKIP=skip, NOW=NOW_SQL[self.kind], IDS=", ".join("?" * n_ids), **self._tables
            )
            if self.kind != "sqlite":
                sql = sql.replace("?", "%s")
            self._sql[key] = sql
        return sql

    def _cursor(self) -> Any:
        """A cursor on this thread's connection, connecting and setting it up when needed."""
        db = self.db
        if db.is_closed():
            try:
                db.connect()
            except Exception as exc:
                raise DriverError(
                    f"cannot connect to the queue database {self.url}: {first_line(exc)}"
                ) from exc
        conn = db.connection()
        if getattr(self._local, "conn", None) is not conn:
            self._setup(conn)
        return conn.cursor()

    def _setup(self, conn: Any) -> None:
        try:
            cur = conn.cursor()
            if self.kind == "mysql":
                # READ COMMITTED: locking reads take no gap locks, so reserve and push do not deadlock.
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            elif self.kind == "sqlite":
                conn.create_function("pubq_now", 0, time.time)
                if not self._owns_db:
                    cur.execute("PRAGMA journal_mode = wal")
                    cur.execute("PRAGMA busy_timeout = 30000")
            if self._dialect is None:
                self._dialect = db_schema.detect_dialect(self.db, conn)
                self._sql.clear()
                self._shard = random.randrange(self._dialect.shards)
            self._pg_fast = self.kind == "postgres" and type(conn).__module__.startswith("psycopg2")
            if not self._migrated:
                db_schema.migrate(self.db, self.models, self.table_prefix)
                self._migrated = True
            insert = {"sqlite": "INSERT OR IGNORE INTO", "mysql": "INSERT IGNORE INTO"}.get(
                self.kind, "INSERT INTO"
            )
            tail = " ON CONFLICT DO NOTHING" if self.kind == "postgres" else ""
            cur.execute(
                self._q(
                    f"{insert} {{C}} (channel, shard, {', '.join(_COUNTERS.values())}) VALUES (?, ?{', 0' * len(_COUNTERS)}){tail}"
                ),
                (self.channel, self._shard),
            )
        except DriverError:
            raise
        except Exception as exc:
            self._drop_connection()
            raise DriverError(f"cannot set up the queue database {self.url}: {first_line(exc)}") from exc
        self._local.conn = conn

    def _drop_connection(self) -> None:
        self._local.conn = None
        try:
            self.db.close()
        except Exception:  # noqa: BLE001 - the connection is broken already
            self.db._state.reset()

    def _forget_connections(self) -> None:
        """In a forked child: drop the parent's connections without closing them (see db_sql)."""
        state = self.db._state
        abandon(state.conn)
        state.reset()
        if hasattr(self.db, "_lock"):
            self.db._lock = threading.Lock()  # another parent thread may have held it at fork
        abandon(self._listener)
        self._listener = None
        self._local = threading.local()

    def _retrying(self, fn: Callable[[Any], T], *, idempotent: bool = False) -> T:
        """Run ``fn(cursor)``; retry deadlocks and busy errors, map the rest to DriverError."""
        give_up = time.monotonic() + RETRY_BUDGET
        pause = 0.002
        reconnected = False
        while True:
            cur = self._cursor()
            try:
                return fn(cur)
            except Exception as exc:
                if not is_db_error(exc):
                    raise
                kind = classify(exc)
                if kind != "lost" and (self.kind != "sqlite" or cur.connection.in_transaction):
                    try:
                        cur.execute("ROLLBACK")
                    except Exception:  # noqa: BLE001 - the link is gone
                        kind = "lost"
                if kind == "retry" and time.monotonic() < give_up:
                    time.sleep(pause * (1 + random.random()))
                    pause = min(pause * 2, 0.1)
                    continue
                if kind == "lost":
                    self._drop_connection()
                    if idempotent and not reconnected:  # a stale connection (server restarted)
                        reconnected = True
                        continue
                raise DriverError(f"queue database error ({self.url}): {first_line(exc)}") from unwrap(exc)

    def _write(self, fn: Callable[[_Tx], T]) -> T:
        """Run ``fn`` in one write transaction (SQLite: BEGIN IMMEDIATE)."""

        def run(cur: Any) -> T:
            cur.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")
            if self.kind == "sqlite":
                now = time.time()
            else:
                cur.execute(f"SELECT {NOW_SQL[self.kind]}")
                now = float(cur.fetchone()[0])
            tx = _Tx(self, cur, now)
            result = fn(tx)
            tx.flush()
            cur.execute("COMMIT")
            return result

        return self._retrying(run)

    def _read(self, sql: str, params: Sequence[Any] = (), *, many: bool = False) -> Any:
        def run(cur: Any) -> Any:
            cur.execute(self._q(sql), params)
            return cur.fetchall() if many else cur.fetchone()

        return self._retrying(run, idempotent=True)

    def _pg(self, sql: str, params: dict[str, Any]) -> list[Any]:
        def run(cur: Any) -> list[Any]:
            cur.execute(self._q(sql), params)
            return cur.fetchall()

        return self._retrying(run)

    def _notify(self, tx: _Tx) -> None:
        if self.kind == "postgres":
            tx.x("SELECT pg_notify(?, '')", (self._notify_name,))

    # -- producing ---------------------------------------------------------------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        return self.push_many([PushItem(payload, ttr, delay, priority)])[0]

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        rows = [_check_item(item) for item in items]
        if not rows:
            return []
        self._cursor()  # connect and detect the dialect before choosing a path
        if self._pg_fast:
            return self._pg_push(rows)
        return self._write(lambda tx: self._push_tx(tx, rows))

    def _pg_push(self, rows: list[tuple[bytes, int, float, int]]) -> list[int]:
        ids: list[int] = []
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            delayed = sum(1 for r in chunk if r[2] > 0)
            params = {
                "notify": self._notify_name, "ch": self.channel, "shard": self._shard,
                "payloads": [r[0] for r in chunk], "ttrs": [r[1] for r in chunk],
                "delays": [float(r[2]) for r in chunk], "priorities": [r[3] for r in chunk],
                "w": len(chunk) - delayed, "d": delayed,
            }  # fmt: skip
            ids.extend(row[0] for row in self._pg(PG_PUSH, params))
        return ids

    def _push_tx(self, tx: _Tx, rows: list[tuple[bytes, int, float, int]]) -> list[int]:
        now, ch = tx.now, self.channel
        values = [
            (ch, "delayed" if d > 0 else "waiting", p, ttr, prio, 0, now, now + max(d, 0.0))
            for p, ttr, d, prio in rows
        ]
        cols = "INSERT INTO {J} (channel, state, payload, ttr, priority, attempt, pushed_at, due_at) VALUES "
        ids: list[int] = []
        if self._dialect and self._dialect.insert_returning and len(values) > 1:
            for start in range(0, len(values), INSERT_CHUNK):
                chunk = values[start : start + INSERT_CHUNK]
                sql = cols + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)) + " RETURNING id"
                ids.extend(sorted(r[0] for r in tx.all(sql, [v for row in chunk for v in row])))
        else:
            for row in values:
                ids.append(tx.x(cols + "(?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid)
        delayed = sum(1 for v in values if v[1] == "delayed")
        tx.add(waiting=len(values) - delayed, delayed=delayed)
        self._notify(tx)
        return ids

    # -- consuming ---------------------------------------------------------------------------------

    def reserve(self, timeout: float = 0, *, grace: float = 0) -> Reservation | None:
        r, due_in = self._reserve_once(None, grace)[1:]
        if r is not None or timeout <= 0:
            return r
        end = time.monotonic() + timeout
        pause = POLL_MIN
        listener = self._listen()
        if listener is not None:  # LISTEN started after the first attempt: look once more
            r, due_in = self._reserve_once(None, grace)[1:]
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
            r, due_in = self._reserve_once(None, grace)[1:]
        return r

    def ack(self, r: Reservation) -> bool:
        self._cursor()
        if self._pg_fast:
            params = {
                "id": r.job_id,
                "ch": self.channel,
                "attempt": r.attempt,
                "deadline": r.deadline,
                "shard": self._shard,
            }
            return self._pg(PG_ACK_ONLY, params)[0][0] == 1
        return self._write(lambda tx: self._ack_tx(tx, r))

    def ack_and_reserve(self, r: Reservation, *, grace: float = 0) -> tuple[bool, Reservation | None]:
        acked, nxt, _ = self._reserve_once(r, grace)
        return bool(acked), nxt

    def _reserve_once(
        self, ack: Reservation | None, grace: float
    ) -> tuple[bool, Reservation | None, float | None]:
        """(acked, reservation, seconds until the next delayed job is due) — one transaction."""
        self._cursor()
        if self._pg_fast:
            params = {"ch": self.channel, "shard": self._shard, "grace": float(grace)}
            if ack is not None:
                params.update(id=ack.job_id, attempt=ack.attempt, deadline=ack.deadline)
            row = self._pg(pg_reserve_sql(ack is not None), params)[0]
            acked = bool(row[0]) if ack is not None else False
            row = row[1:] if ack is not None else row
            if row[0] is None:
                return acked, None, row[7]
            return acked, _reservation(row[:7]), None

        def fn(tx: _Tx) -> tuple[bool, Reservation | None, float | None]:
            acked = self._ack_tx(tx, ack) if ack is not None else False
            return (acked, *self._reserve_tx(tx, grace))

        return self._write(fn)

    def _ack_tx(self, tx: _Tx, r: Reservation) -> bool:
        sql = "DELETE FROM {J} WHERE id = ? AND channel = ? AND state = 'reserved' AND attempt = ? AND deadline = ?"
        if tx.x(sql, (r.job_id, self.channel, r.attempt, r.deadline)).rowcount != 1:
            return False
        tx.add(reserved=-1, done=1)
        return True

    def _reserve_tx(self, tx: _Tx, grace: float) -> tuple[Reservation | None, float | None]:
        ch = self.channel
        due = (
            "SELECT id FROM {J} WHERE channel = ? AND state = 'delayed' AND due_at <= ? ORDER BY due_at LIMIT "
            + str(BATCH)
        )
        if self.kind == "sqlite":
            moved = tx.x(f"UPDATE {{J}} SET state = 'waiting' WHERE id IN ({due})", (ch, tx.now)).rowcount
        else:
            ids = [row[0] for row in tx.all(due + "{SKIP}", (ch, tx.now))]
            moved = (
                tx.x("UPDATE {J} SET state = 'waiting' WHERE id IN ({IDS})", (), ids).rowcount if ids else 0
            )
        tx.add(waiting=moved, delayed=-moved)
        row = tx.one(
            "SELECT id, payload, attempt, ttr, priority, pushed_at FROM {J}"
            " WHERE channel = ? AND state = 'waiting' ORDER BY priority, id LIMIT 1{SKIP}",
            (ch,),
        )
        if row is None:
            nxt = tx.one("SELECT min(due_at) FROM {J} WHERE channel = ? AND state = 'delayed'", (ch,))[0]
            return None, (None if nxt is None else float(nxt) - tx.now)
        job_id, payload, attempt, ttr, priority, pushed_at = row
        deadline = tx.now + ttr
        tx.x(
            "UPDATE {J} SET state = 'reserved', attempt = ?, retried_attempt = 0, deadline = ?, expires_at = ?"
            " WHERE id = ?",
            (attempt + 1, deadline, deadline + float(grace), job_id),
        )
        tx.add(waiting=-1, reserved=1)
        return Reservation(
            job_id, as_bytes(payload), attempt + 1, ttr, deadline, priority, float(pushed_at)
        ), None

    def _listen(self) -> Any:
        """The LISTENing connection (PostgreSQL with psycopg2), or None to poll."""
        if not self._pg_fast:
            return None
        if self._listener is None:
            try:
                conn = self.db._connect()
                conn.autocommit = True
                conn.cursor().execute(f'LISTEN "{self._notify_name}"')
                self._listener = conn
            except Exception:  # noqa: BLE001 - fall back to polling; the next reserve reports outages
                return None
        return self._listener

    def _wait_notify(self, timeout: float) -> bool:
        """Sleep until a NOTIFY for this queue or ``timeout``; False if the listener broke (poll)."""
        import select

        conn = self._listener
        try:
            if select.select([conn], [], [], timeout)[0]:
                conn.poll()
            conn.notifies.clear()
            return True
        except Exception:  # noqa: BLE001 - a broken listener: drop it, poll this round
            self._close_listener()
            return False

    def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    # -- outcomes ---------------------------------------------------------------------------------

    def _locked_job(self, tx: _Tx, job_id: int) -> Any:
        return tx.one(
            "SELECT state, attempt, expires_at, retried_attempt FROM {J} WHERE id = ? AND channel = ?{LOCK}",
            (job_id, self.channel),
        )

    def retry_later(self, job_id: int, attempt: int, delay: float) -> bool:
        def fn(tx: _Tx) -> bool:
            row = self._locked_job(tx, job_id)
            if row is None or row[1] != attempt:
                return False
            state, expires_at = row[0], row[2]
            if not (state == "reserved" or (state == "failed" and expires_at is not None)):
                return False
            # From the failed registry this is an afterError handler's change of mind; failed_total
            # stays (the conformance suite: "failed_total never goes down").
            self._requeue(tx, job_id, state, attempt, delay, retry=True)
            return True

        return self._write(fn)

    def _requeue(
        self, tx: _Tx, job_id: int, from_state: str, attempt: int, delay: float, *, retry: bool
    ) -> None:
        new_state = "delayed" if delay > 0 else "waiting"
        tx.x(
            "UPDATE {J} SET state = ?, attempt = ?, retried_attempt = ?, due_at = ?, deadline = NULL, expires_at = NULL,"
            " error_class = NULL, error_message = NULL, error_traceback = NULL, error_code = NULL WHERE id = ?",
            (new_state, attempt, attempt if retry else 0, tx.now + max(float(delay), 0.0), job_id),
        )
        tx.add(**{from_state: -1}, **{new_state: 1})
        self._notify(tx)

    def fail(self, job_id: int, attempt: int, info: FailureInfo, *, settle_within: float = 60) -> bool:
        def fn(tx: _Tx) -> bool:
            row = self._locked_job(tx, job_id)
            if row is None or attempt < 1 or row[1] != attempt:
                return False
            # Held with this attempt, or back from retry_later(attempt) and not reserved since (an
            # afterError handler turned the retry into the final failure, spec §5.1).
            if not (row[0] == "reserved" or (row[0] in ("waiting", "delayed") and row[3] == attempt)):
                return False
            tx.x(
                "UPDATE {J} SET state = 'failed', due_at = ?, deadline = NULL, expires_at = ?, error_class = ?,"
                " error_message = ?, error_traceback = ?, error_code = ? WHERE id = ?",
                (tx.now, tx.now + float(settle_within), info.error_class[:255], info.message,
                 info.traceback, (info.code or "")[:64], job_id),
            )  # fmt: skip
            tx.add(**{row[0]: -1}, failed=1, failed_total=1)
            self._trim_failed(tx)
            return True

        return self._write(fn)

    def _trim_failed(self, tx: _Tx) -> None:
        size = tx.one("SELECT coalesce(sum(n_failed), 0) FROM {C} WHERE channel = ?", (self.channel,))[0]
        excess = int(size) + tx.delta["failed"] - max(self.failed_limit, 0)
        if excess > 0:
            ids = [r[0] for r in tx.all(
                "SELECT id FROM {J} WHERE channel = ? AND state = 'failed' ORDER BY due_at, id LIMIT ?{SKIP}",
                (self.channel, excess))]  # fmt: skip
            if ids:
                gone = tx.x("DELETE FROM {J} WHERE state = 'failed' AND id IN ({IDS})", (), ids).rowcount
                tx.add(failed=-gone)

    def settle(self, job_id: int, attempt: int) -> bool:
        sql = "UPDATE {J} SET expires_at = NULL WHERE id = ? AND channel = ? AND state = 'failed' AND attempt = ? AND expires_at IS NOT NULL"
        return self._write(lambda tx: tx.x(sql, (job_id, self.channel, attempt)).rowcount == 1)

    def release(self, r: Reservation) -> bool:
        def fn(tx: _Tx) -> bool:
            n = tx.x(
                "UPDATE {J} SET state = 'waiting', attempt = attempt - 1, deadline = NULL, expires_at = NULL, due_at = ?"
                " WHERE id = ? AND channel = ? AND state = 'reserved' AND attempt = ? AND deadline = ?",
                (tx.now, r.job_id, self.channel, r.attempt, r.deadline),
            ).rowcount
            if n == 1:
                tx.add(reserved=-1, waiting=1)
                self._notify(tx)
            return n == 1

        return self._write(fn)

    def reclaim_expired(self, limit: int = 100, *, hold: float = 60) -> list[Reclaimed]:
        if limit <= 0:
            return []

        def fn(tx: _Tx) -> list[Reclaimed]:
            rows = tx.all(
                f"SELECT {JOB_COLUMNS} FROM {{J}} WHERE channel = ? AND expires_at <= ? ORDER BY expires_at LIMIT ?{{SKIP}}",
                (self.channel, tx.now, int(limit)),
            )
            until = tx.now + float(hold)
            lost = [row[0] for row in rows if row[1] == "reserved"]
            unsettled = [row[0] for row in rows if row[1] == "failed"]
            if lost:
                tx.x("UPDATE {J} SET deadline = ?, expires_at = ? WHERE id IN ({IDS})", (until, until), lost)
            if unsettled:
                tx.x("UPDATE {J} SET expires_at = ? WHERE id IN ({IDS})", (until,), unsettled)
            out = []
            for row in rows:
                job_id, state, payload, attempt, ttr, priority, pushed_at = row[:7]
                res = Reservation(job_id, as_bytes(payload), attempt, ttr, until, priority, float(pushed_at))
                if state == "reserved":
                    out.append(Reclaimed(ReclaimKind.LOST, res, overdue=max(0.0, tx.now - float(row[8]))))
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
        if row is None:
            return None
        state, due_at, now = row[1], float(row[7]), float(row[14])
        extra: dict[str, object] = {"pushed_at": float(row[6]), "state": state}
        if state in ("waiting", "delayed"):
            extra["due_at"] = due_at
        elif state == "reserved":
            extra["deadline"] = float(row[8])
        else:
            extra.update(
                failed_at=due_at, unsettled=row[9] is not None, error_class=row[10], error_code=row[13] or ""
            )
        return JobInfo(row[0], _status(state, due_at <= now), as_bytes(row[2]), row[3], row[4], row[5], extra)

    def counts(self) -> Counts:
        sums = ", ".join(f"coalesce(sum({c}), 0)" for c in _COUNTERS.values())
        row = self._read(
            f"SELECT {sums}, (SELECT count(*) FROM {{J}} WHERE channel = ? AND state = 'delayed' AND due_at <= {{NOW}})"
            " FROM {C} WHERE channel = ?",
            (self.channel, self.channel),
        )
        waiting, delayed, reserved, failed, done, failed_total, follow_ups, due = (int(v) for v in row)
        return Counts(waiting + due, delayed - due, reserved, done, failed, failed_total, follow_ups)

    def remove(self, job_id: int) -> bool:
        def fn(tx: _Tx) -> bool:
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

                def fn(tx: _Tx, state: str = state) -> tuple[int, int]:
                    ids = [r[0] for r in tx.all(
                        "SELECT id FROM {J} WHERE channel = ? AND state = ? AND id <= ? LIMIT ?{LOCK}",
                        (self.channel, state, max_id, BATCH))]  # fmt: skip
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
            f"SELECT {JOB_COLUMNS} FROM {{J}} WHERE id = ? AND channel = ? AND state = 'failed'",
            (job_id, self.channel),
        )
        return None if row is None else _failed(row)

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        def fn(tx: _Tx) -> bool:
            row = self._locked_job(tx, job_id)
            if row is None or row[0] != "failed":
                return False
            self._requeue(tx, job_id, "failed", 0 if reset_attempts else row[1], delay, retry=False)
            return True

        return self._write(fn)

    def failed_purge(self) -> int:
        return self._delete_states(("failed",), self._max_id())

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        def fn(tx: _Tx) -> None:
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
                (self.channel, max(self.follow_up_limit, 0)),
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
        self._read("SELECT 1")

    def migrate(self) -> tuple[int, int]:
        """Create or upgrade the tables (idempotent; never drops data). Returns (version before, after)."""

        def run(cur: Any) -> tuple[int, int]:
            result = db_schema.migrate(self.db, self.models, self.table_prefix)
            self._migrated = True
            return result

        return self._retrying(run)

    def close(self) -> None:
        self._close_listener()
        self._local.conn = None
        if self._owns_db and not self.db.is_closed():
            try:
                self.db.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                self.db._state.reset()

    def __repr__(self) -> str:
        return f"DbDriver({self.url}, channel={self.channel!r})"


# -- rows → contract dataclasses ---------------------------------------------------------------------


def _check_item(item: PushItem) -> tuple[bytes, int, float, int]:
    payload = item.payload
    if isinstance(payload, (bytearray, memoryview)):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    if isinstance(item.ttr, bool) or not isinstance(item.ttr, int) or item.ttr < 0:
        raise ValueError("ttr must be a non-negative integer (seconds)")
    return payload, item.ttr, max(float(item.delay or 0), 0.0), check_priority(item.priority)


def _status(state: str, due: bool) -> JobStatus:
    if state == "delayed":
        return JobStatus.WAITING if due else JobStatus.DELAYED
    return JobStatus(state)


def _reservation(row: Sequence[Any]) -> Reservation:
    job_id, payload, attempt, ttr, deadline, priority, pushed_at = row
    return Reservation(job_id, as_bytes(payload), attempt, ttr, float(deadline), priority, float(pushed_at))


def _failed(row: Sequence[Any]) -> FailedJob:
    return FailedJob(
        job_id=row[0], payload=as_bytes(row[2]), attempts=row[3], error_class=row[10] or "", message=row[11] or "",
        traceback=row[12] or "", code=row[13] or "", pushed_at=float(row[6]), failed_at=float(row[7]),
        ttr=row[4], priority=row[5], unsettled=row[9] is not None,
    )  # fmt: skip
