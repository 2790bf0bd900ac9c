"""Connections, transactions, retries and fork safety of the ``db`` driver.

* Every driver method is one transaction (:meth:`DbConnection.transaction`) or one autocommit
  statement (:meth:`~DbConnection.read`, :meth:`~DbConnection.execute`); on PostgreSQL the hot paths
  are one round trip of prepared statements (:meth:`~DbConnection.pg_round_trip`).
* Rows come back as mappings by column name (:data:`Row`), never as tuples read by position.
* Deadlocks, lock timeouts and ``SQLITE_BUSY`` roll the transaction back and it is run again (for up to
  ``RETRY_BUDGET`` s). A lost connection is dropped, so the next call reconnects; the error surfaces as
  :class:`~pubq.errors.DriverError` with the database error as its cause. Reads are retried once on a
  fresh connection (a server restart leaves a stale one); writes are not, since a COMMIT whose answer
  was lost may have happened.
* A forked child forgets its parent's connections without closing them (``pubq.db_fork``'s fork
  hook calls ``forget_connections``).

URLs and session settings are :mod:`pubq.database`'s, error classification :mod:`pubq.db_errors`'s
and fork handling :mod:`pubq.db_fork`'s, shared with publish state.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import peewee as pw

from pubq.database import POOLERS, drop_connection, open_database, parse_url, prepare_connection, redact_url
from pubq.db_errors import ErrorKind, classify, is_db_error, sqlstate, unwrap
from pubq.db_fork import abandon, forget_connection, on_fork_in_child
from pubq.drivers import db_schema
from pubq.drivers.db_sql import (
    ADD_TO_COUNTERS,
    COUNTERS,
    ENSURE_COUNTER_ROW,
    NOW,
    NOW_SQL,
    PING,
    PgStatement,
    Statement,
)
from pubq.errors import BackendDataError, ConfigError, DriverError

T = TypeVar("T")
#: One row, by column name (lower case: every computed column of db_sql has an alias).
Row = dict[str, Any]
#: A statement of db_sql, or an ad hoc template (tests, maintenance).
Sql = Statement | str

#: How long one operation keeps retrying deadlocks / lock timeouts / SQLITE_BUSY (seconds).
RETRY_BUDGET = 30.0
#: Seconds a new SQLite connection keeps retrying pragmas refused with "database is locked".
SQLITE_OPEN_WAIT = 10.0

# -- errors -------------------------------------------------------------------------------------

#: PostgreSQL "prepared statement does not exist" (26000, the session was reset under us, e.g. by
#: DISCARD ALL or a pooler): the driver's own case, retried after preparing again (see ``pg_round_trip``).
_PG_NO_STATEMENT = "26000"


#: Raised by a DB-API client before the statement reaches the server, for a value it cannot send:
#: SQLite's "Python int too large to convert to SQLite INTEGER" (OverflowError), psycopg2's "A string
#: literal cannot contain NUL (0x00) characters" (ValueError), a text that will not encode.
_BIND_ERRORS = (OverflowError, ValueError)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def refuse_unstorable(params: Sequence[Any]) -> None:
    """Raise :class:`BackendDataError` for a parameter no SQL database stores: an integer past 64 bits
    or a float that is not finite (also inside the arrays of PostgreSQL's batch push). Checked here,
    once for every statement, because the clients fail differently or not at all: SQLite raises
    OverflowError, PyMySQL renders 10**23 into the SQL (a syntax error) and refuses ``inf`` with a
    ProgrammingError, psycopg2 sends ``'Infinity'``, which a float column takes (#11)."""
    for value in params:
        kind = type(value)
        if kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise BackendDataError(f"queue database refused a value: {_short(value)} is past a 64-bit integer")
        elif kind is float:
            if value - value != 0.0:  # inf and nan (nan != nan, inf - inf is nan)
                raise BackendDataError(f"queue database refused a value: {value!r} is not a finite number")
        elif kind is list or kind is tuple:
            refuse_unstorable(value)


def _short(value: int) -> str:
    text = str(value) if value.bit_length() < 4000 else f"an integer of {value.bit_length()} bits"
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(exc: BaseException) -> ErrorKind:
    kind = classify(exc)
    if kind is ErrorKind.OTHER and sqlstate(exc) == _PG_NO_STATEMENT:
        return ErrorKind.RETRY
    return kind


def named_rows(cur: Any, rows: Sequence[Sequence[Any]]) -> list[Row]:
    """``rows`` of ``cur``'s last statement as mappings by column name."""
    names = [column[0].lower() for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def first_line(exc: BaseException) -> str:
    exc = unwrap(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- transactions -------------------------------------------------------------------------------


class Tx:
    """One open write transaction: ``now`` is fixed for it; counter deltas are applied just before COMMIT.

    On PostgreSQL, writes whose result nobody reads (``defer``, the counters) ride along with the
    COMMIT in one round trip, in the order they were asked for; elsewhere they run at once."""

    __slots__ = ("conn", "cursor", "now", "deltas", "deferred")

    def __init__(self, conn: DbConnection, cursor: Any, now: float) -> None:
        self.conn, self.cursor, self.now = conn, cursor, now
        self.deltas = dict.fromkeys(COUNTERS, 0)
        self.deferred: list[tuple[str, Sequence[Any]]] = []

    def execute(self, sql: Sql, params: Sequence[Any] = (), ids: Sequence[int] = ()) -> Any:
        """Run one statement (``ids`` fill its ``{IDS}``); returns the cursor (rowcount, lastrowid)."""
        refuse_unstorable(params)
        refuse_unstorable(ids)
        self.cursor.execute(self.conn.render(sql, len(ids)), (*params, *ids))
        return self.cursor

    def defer(self, sql: Sql, params: Sequence[Any] = ()) -> None:
        """A write whose rowcount is not needed: sent with the COMMIT on PostgreSQL, now elsewhere."""
        if self.conn.kind != "postgres":
            self.execute(sql, params)
            return
        refuse_unstorable(params)
        self.deferred.append((self.conn.render(sql), tuple(params)))

    def fetch_one(self, sql: Sql, params: Sequence[Any] = ()) -> Row | None:
        cur = self.execute(sql, params)
        row = cur.fetchone()
        return None if row is None else named_rows(cur, [row])[0]

    def fetch_all(self, sql: Sql, params: Sequence[Any] = (), ids: Sequence[int] = ()) -> list[Row]:
        cur = self.execute(sql, params, ids)
        return named_rows(cur, cur.fetchall())

    def count(self, **deltas: int) -> None:
        """Add to this transaction's counter deltas (by COUNTERS name)."""
        for key, value in deltas.items():
            self.deltas[key] += value

    def apply_counters(self) -> None:
        """Apply the counter deltas: last in the transaction, so the counter row is locked last."""
        if any(self.deltas.values()):
            self.defer(ADD_TO_COUNTERS, (*self.deltas.values(), self.conn.channel, self.conn.counter_shard))
            self.deltas = dict.fromkeys(COUNTERS, 0)

    def commit(self) -> None:
        """COMMIT, after the deferred writes, in one round trip (one simple query on PostgreSQL: a
        failing write aborts the transaction before its COMMIT, and the caller rolls back)."""
        if not self.deferred:
            self.cursor.execute("COMMIT")
            return
        text = "; ".join([*(sql for sql, _ in self.deferred), "COMMIT"])
        self.cursor.execute(text, [value for _, params in self.deferred for value in params])
        self.deferred = []


class DbConnection:
    """The database side of one queue's DbDriver: a connection per thread, set up on first use (dialect,
    migration, the queue's counter row), transactions with retries, reads, LISTEN."""

    def __init__(self, database: str | pw.Database, channel: str, table_prefix: str,
                 pooler: str | None = None) -> None:
        if pooler is not None and pooler not in POOLERS:
            raise ConfigError(f"pooler must be one of {', '.join(POOLERS)}, not {pooler!r}")
        if isinstance(database, str):
            self.url = redact_url(database)
            self.db = open_database(database)
            self._owns_db = True
            pooler = pooler or parse_url(database).pooler
        elif isinstance(database, pw.Database):
            self.url = f"{type(database).__name__}({database.database!r})"
            self.db, self._owns_db = database, False
        else:
            raise ConfigError(f"database must be a URL or a Peewee Database, not {type(database).__name__}")
        self.channel = channel
        self.table_prefix = table_prefix
        self.kind = db_schema.dialect_name(self.db)
        self.models = db_schema.build_models(self.db, table_prefix)
        quote = "`" if self.kind == "mysql" else '"'
        #: Template token → quoted table name (see db_sql).
        self.tables = {
            token: f"{quote}{table_prefix}{name}{quote}"
            for token, name in (("J", "jobs"), ("C", "counters"), ("F", "follow_ups"), ("Q", "queues"),
                                ("W", "workers"), ("U", "unique"), ("M", "marks"), ("L", "limits"),
                                ("T", "throughput"))
        }
        self.dialect: db_schema.Dialect | None = None  # known after the first connect
        self._rendered: dict[tuple[str, int], str] = {}
        self._migrated = False
        #: The counter row (of the queue's shards) this driver's transactions write.
        self.counter_shard = 0
        self._local = threading.local()  # .conn: connection set up for this thread; .prepared: its statements
        self.listener: Any = None
        #: psycopg2 on PostgreSQL: hot paths as multi-statement round trips (see pg_round_trip).
        self.pg_round_trips = False
        #: A transaction pooler (PgBouncer pool_mode=transaction) in front of PostgreSQL: every
        #: transaction may land on another server session, so nothing is kept in one (no prepared
        #: statements, no LISTEN: a blocking reserve polls, see db.POLL_MAX). Set by ``?pooler=transaction``,
        #: or found out when prepared statements vanish twice (see ``pg_round_trip``).
        self.transaction_pooled = pooler == "transaction"
        self.prepare_statements = not self.transaction_pooled
        self._statements_lost = 0
        on_fork_in_child(self.forget_connections)

    # -- SQL templates (see db_sql) ---------------------------------------------------------------

    def render(self, sql: Sql | PgStatement, n_ids: int = 0) -> str:
        """The template as this database runs it: tables, clock, locks filled in, ``?`` → ``%s``."""
        template = sql if isinstance(sql, str) else sql.sql
        key = (template, n_ids)
        text = self._rendered.get(key)
        if text is None:
            dialect = self.dialect or db_schema.Dialect(self.kind)
            lock = "" if self.kind == "sqlite" else " FOR UPDATE"
            skip = " FOR UPDATE SKIP LOCKED" if dialect.skip_locked else lock
            ids = ", ".join("?" * n_ids)
            text = template.format(LOCK=lock, SKIP=skip, NOW=NOW_SQL[self.kind], IDS=ids, **self.tables)
            if self.kind != "sqlite":
                text = text.replace("?", "%s")
            self._rendered[key] = text
        return text

    # -- connection -------------------------------------------------------------------------------

    def cursor(self) -> Any:
        """A cursor on this thread's connection, connecting and setting it up when needed."""
        db = self.db
        if db.is_closed():
            self._connect(db)
        conn = db.connection()
        if getattr(self._local, "conn", None) is not conn:
            self._setup(conn)
        return conn.cursor()

    def _connect(self, db: Any) -> None:
        """Open this thread's connection. SQLite's connection pragmas can meet "database is locked"
        without its busy handler ever waiting (several processes opening a fresh file while one of
        them switches it to WAL): that is retried, backing off, for up to :data:`SQLITE_OPEN_WAIT`."""
        deadline = time.monotonic() + SQLITE_OPEN_WAIT
        delay = 0.01
        while True:
            try:
                db.connect()
                return
            except Exception as exc:
                if self.kind == "sqlite" and "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 0.2)
                    continue
                raise DriverError(f"cannot connect to the queue database {self.url}: {first_line(exc)}") from exc

    def _setup(self, conn: Any) -> None:
        try:
            cur = conn.cursor()
            # MySQL READ COMMITTED (locking reads take no gap locks, so reserve and push do not
            # deadlock: yii2-queue issue #245) comes with the connection; a caller's own Peewee database gets it here.
            prepare_connection(self.db, conn)
            if self.kind == "sqlite":
                conn.create_function("pubq_now", 0, time.time)
            if self.dialect is None:
                self.dialect = db_schema.detect_dialect(self.db, conn)
                self._rendered.clear()
                self.counter_shard = random.randrange(self.dialect.shards)
            self.pg_round_trips = self.kind == "postgres" and type(conn).__module__.startswith("psycopg2")
            if not self._migrated:
                db_schema.migrate(self.db, self.models, self.table_prefix)
                self._migrated = True
            cur.execute(self.render(ENSURE_COUNTER_ROW[self.kind]), (self.channel, self.counter_shard))
        except DriverError:
            raise
        except Exception as exc:
            self._drop_connection()
            raise DriverError(f"cannot set up the queue database {self.url}: {first_line(exc)}") from exc
        self._local.conn, self._local.prepared = conn, set()

    def _drop_connection(self) -> None:
        self._local.conn = None
        drop_connection(self.db)

    def forget_connections(self) -> None:
        """In a forked child: drop the parent's connections without closing them."""
        forget_connection(self.db)
        abandon(self.listener)
        self.listener = None
        gate = getattr(self._local, "gate", None)
        if gate is not None and gate >= 0:
            try:
                os.close(gate)  # the parent's copy: closing it here does not release the parent's lock
            except OSError:
                pass
        self._local = threading.local()

    def close(self) -> None:
        self.close_listener()
        self._local.conn = None
        if self._owns_db and not self.db.is_closed():
            drop_connection(self.db)

    def migrate(self) -> tuple[int, int]:
        """Create or upgrade the tables (idempotent; never drops data). Returns (version before, after)."""

        def run(cur: Any) -> tuple[int, int]:
            result = db_schema.migrate(self.db, self.models, self.table_prefix)
            self._migrated = True
            return result

        return self._retrying(run)

    # -- running statements -----------------------------------------------------------------------

    def _retrying(self, fn: Callable[[Any], T], *, idempotent: bool = False) -> T:
        """Run ``fn(cursor)``; retry deadlocks and busy errors, map the rest to DriverError."""
        give_up = time.monotonic() + RETRY_BUDGET
        pause = 0.002
        reconnected = False
        while True:
            cur = self.cursor()
            try:
                return fn(cur)
            except Exception as exc:
                if not is_db_error(exc):
                    self._rollback_quietly(cur)  # never leave this thread's connection in a transaction
                    if isinstance(exc, _BIND_ERRORS):  # the client refused to send a value (#11)
                        raise BackendDataError(f"queue database refused a value: {type(exc).__name__}: {exc}") \
                            from exc
                    raise
                kind = _kind(exc)
                if kind is not ErrorKind.LOST and (self.kind != "sqlite" or cur.connection.in_transaction):
                    try:
                        cur.execute("ROLLBACK")
                    except Exception:  # noqa: BLE001 - the link is gone
                        kind = ErrorKind.LOST
                if kind is ErrorKind.RETRY and time.monotonic() < give_up:
                    time.sleep(pause * (1 + random.random()))
                    pause = min(pause * 2, 0.1)
                    continue
                if kind is ErrorKind.LOST:
                    self._drop_connection()
                    if idempotent and not reconnected:  # a stale connection (server restarted)
                        reconnected = True
                        continue
                if kind is ErrorKind.DATA:  # bad input, not an outage: never retried (#11)
                    raise BackendDataError(f"queue database refused a value: {first_line(exc)}") from unwrap(exc)
                raise DriverError(f"queue database error ({self.url}): {first_line(exc)}") from unwrap(exc)

    def _rollback_quietly(self, cur: Any) -> None:
        """End the transaction a refused value left open (the connection itself is fine)."""
        try:
            if self.kind != "sqlite" or cur.connection.in_transaction:
                cur.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the link is gone: drop it, the next call reconnects
            self._drop_connection()

    def transaction(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one write transaction (SQLite: BEGIN IMMEDIATE takes the write lock at once),
        its counter deltas applied last; run again from the start after a deadlock or lock timeout."""

        def run(cur: Any) -> T:
            if self.kind == "sqlite":
                cur.execute("BEGIN IMMEDIATE")
                now = time.time()
            else:
                if self.kind == "postgres":  # one simple query: the clock is read inside the new transaction
                    cur.execute("BEGIN; " + self.render(NOW))
                else:  # MySQL runs one statement per call (no CLIENT_MULTI_STATEMENTS)
                    cur.execute("BEGIN")
                    cur.execute(self.render(NOW))
                now = float(named_rows(cur, [cur.fetchone()])[0]["db_now"])
            tx = Tx(self, cur, now)
            result = fn(tx)
            tx.apply_counters()
            tx.commit()
            return result

        gate = self._writer_gate() if self.kind == "sqlite" else None
        if gate is None:
            return self._retrying(run)
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            return self._retrying(run)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)

    def _writer_gate(self) -> int | None:
        """SQLite: a lock file that this driver's writers queue on before ``BEGIN IMMEDIATE``.

        SQLite's own busy handler makes a writer that finds the lock taken sleep and poll; with several
        worker processes they mostly sleep (2 workers drained slower than 1). Blocked in ``flock`` they
        are woken the moment the lock is free. One descriptor per thread and per process (after a fork
        the child opens its own), since a flock is shared by every copy of one descriptor.
        """
        fd = getattr(self._local, "gate", None)
        if fd is None:
            path = str(self.db.database or "")
            fd = -1
            if path and path != ":memory:" and not path.startswith("file:"):
                try:
                    fd = os.open(path + "-pubq.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                except OSError:
                    fd = -1  # no gate: SQLite's busy handler alone still keeps writes correct
            self._local.gate = fd
        return fd if fd >= 0 else None

    def no_file_yet(self) -> bool:
        """A SQLite file that does not exist yet holds no queue data: reads answer empty instead of
        creating it (``pubq queues`` or ``info`` in an empty folder write nothing). A write creates it."""
        if self.kind != "sqlite" or not self.db.is_closed():
            return False
        path = str(self.db.database or "")
        return bool(path) and path != ":memory:" and not path.startswith("file:") and not os.path.exists(path)

    def ping(self) -> None:
        """DriverError unless the database answers; a SQLite file not created yet answers when its
        folder lets it be created (ping creates nothing)."""
        if self.no_file_yet():
            folder = os.path.dirname(str(self.db.database)) or "."
            if not os.access(folder, os.W_OK | os.X_OK):
                raise DriverError(f"cannot connect to the queue database {self.url}: cannot create a file in {folder}")
            return
        self.read(PING)

    def read(self, sql: Sql, params: Sequence[Any] = ()) -> Row | None:
        """One autocommit read of one row; None from a SQLite file that does not exist yet."""
        rows = self.read_all(sql, params, first=True)
        return rows[0] if rows else None

    def read_all(self, sql: Sql, params: Sequence[Any] = (), *, first: bool = False) -> list[Row]:
        """One autocommit read (retried once on a fresh connection); ``[]`` from a SQLite file that
        does not exist yet. ``first``: only the first row is fetched."""
        if self.no_file_yet():
            return []
        refuse_unstorable(params)

        def run(cur: Any) -> list[Row]:
            cur.execute(self.render(sql), params)
            if first:
                row = cur.fetchone()
                return [] if row is None else named_rows(cur, [row])
            return named_rows(cur, cur.fetchall())

        return self._retrying(run, idempotent=True)

    def execute(self, sql: Sql, params: Sequence[Any] = ()) -> int:
        """One autocommit write statement (no BEGIN, no clock read: a beat is one round trip); its rowcount."""

        def run(cur: Any) -> int:
            cur.execute(self.render(sql), params)
            return cur.rowcount

        return self._retrying(run)

    def pg_round_trip(self, *calls: tuple[PgStatement, Sequence[Any]]) -> list[Row]:
        """PostgreSQL: run the statements in one round trip — one simple query, which the server runs
        as one implicit transaction — and return the last one's rows. Each statement is prepared once
        per connection (planning these CTEs costs more than running them), except behind a
        transaction pooler, where they are sent as text."""

        for _, args in calls:
            refuse_unstorable(args)

        def run(cur: Any) -> list[Row]:
            if not self.prepare_statements:
                parts, params = [], {}
                for k, (stmt, args) in enumerate(calls):
                    parts.append(re.sub(r"\$(\d+)", rf"%(s{k}p\1)s", self.render(stmt)))
                    params.update({f"s{k}p{i + 1}": v for i, v in enumerate(args)})
                cur.execute(";\n".join(parts), params)
                return named_rows(cur, cur.fetchall())
            prepared = self._local.prepared
            names = []
            for stmt, _ in calls:
                text = self.render(stmt)
                name = "pubq_" + hashlib.md5(text.encode()).hexdigest()[:20]
                if name not in prepared:
                    try:
                        cur.execute(f"PREPARE {name} ({', '.join(stmt.types)}) AS {text}")
                    except Exception as exc:
                        if sqlstate(exc) != "42P05":  # already there (another driver, same connection)
                            raise
                    prepared.add(name)
                names.append(name)
            sql = "; ".join(
                f"EXECUTE {n}({', '.join(['%s'] * len(a))})" for n, (_, a) in zip(names, calls, strict=True)
            )
            try:
                cur.execute(sql, [v for _, args in calls for v in args])
            except Exception as exc:
                if sqlstate(exc) == _PG_NO_STATEMENT:  # the session was reset: prepare again,
                    prepared.clear()  # and after a second time (a transaction pooler) stop preparing
                    self._statements_lost += 1
                    if self._statements_lost >= 2:
                        self._found_transaction_pooler()
                raise
            return named_rows(cur, cur.fetchall())

        return self._retrying(run)

    def _found_transaction_pooler(self) -> None:
        """Sessions change under this driver (its prepared statements vanish): behave as with
        ``?pooler=transaction`` from now on."""
        self.transaction_pooled = True
        self.prepare_statements = False
        self.close_listener()

    # -- LISTEN (PostgreSQL) --------------------------------------------------------------------

    def listen(self, name: str) -> Any:
        """The LISTENing connection (PostgreSQL with psycopg2, not behind a transaction pooler, where
        the LISTEN would stay on a server session that the pooler hands to others), or None to poll."""
        if not self.pg_round_trips or self.transaction_pooled:
            return None
        if self.listener is None:
            try:
                conn = self.db._connect()  # a connection of its own, outside Peewee's state
                conn.autocommit = True
                conn.cursor().execute(f'LISTEN "{name}"')
                self.listener = conn
            except Exception:  # noqa: BLE001 - fall back to polling; the next reserve reports outages
                return None
        return self.listener

    def wait_notify(self, timeout: float) -> bool:
        """Sleep until a NOTIFY or ``timeout``; False if the listener broke (the caller polls)."""
        conn = self.listener
        try:
            if select.select([conn], [], [], timeout)[0]:
                conn.poll()
            conn.notifies.clear()
            return True
        except Exception:  # noqa: BLE001 - a broken listener: drop it
            self.close_listener()
            return False

    def close_listener(self) -> None:
        conn, self.listener = self.listener, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
