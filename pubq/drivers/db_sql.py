"""SQL of the ``db`` driver, and the connection plumbing shared by its methods.

Templates use ``?`` placeholders (rewritten to ``%s`` for PostgreSQL/MySQL) and these tokens:
``{J}`` jobs table, ``{C}`` counters, ``{F}`` follow-ups, ``{NOW}`` the database clock in unix seconds,
``{LOCK}`` a row lock (`` FOR UPDATE``; nothing on SQLite, whose write transactions are exclusive),
``{SKIP}`` a row lock that skips rows other workers hold (`` FOR UPDATE SKIP LOCKED`` where the server
has it, else a plain ``FOR UPDATE``), ``{IDS}`` a list of ``?`` for an ``IN``.

Lock order, so InnoDB and PostgreSQL do not deadlock (yii2-queue #245): a transaction takes its blocking
job-row locks first and its counter row last (counter deltas are flushed just before COMMIT); bulk
reads of jobs use ``SKIP LOCKED`` and never wait. Deadlocks and lock timeouts that happen anyway are
retried (the transaction was rolled back, so re-running it is safe).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from typing import Any

#: Columns of a job row as the driver reads it (``_job_row`` order).
JOB_COLUMNS = (
    "id, state, payload, attempt, ttr, priority, pushed_at, due_at, deadline, expires_at,"
    " error_class, error_message, error_traceback, error_code"
)

NOW_SQL = {
    # SQLite is local: its clock is this host's, through a function registered on the connection.
    "sqlite": "pubq_now()",
    "postgres": "extract(epoch FROM now())::float8",
    "mysql": "UNIX_TIMESTAMP(NOW(6))",
}

# -- PostgreSQL: each hot operation is one round trip -------------------------------------------
# psycopg2 sends a multi-statement string as one simple query, which PostgreSQL runs as one implicit
# transaction; the result is the last statement's. A counter row is updated by at most one CTE of a
# statement (two updates of one row in one statement would lose one).

PG_PUSH = """
SELECT pg_notify(%(notify)s, '');
WITH t AS (SELECT extract(epoch FROM now())::float8 AS now),
ins AS (
  INSERT INTO {J} (channel, state, payload, ttr, priority, attempt, pushed_at, due_at)
  SELECT %(ch)s, CASE WHEN u.delay > 0 THEN 'delayed' ELSE 'waiting' END, u.payload, u.ttr, u.priority, 0,
         t.now, t.now + greatest(u.delay, 0)
  FROM t, unnest(%(payloads)s::bytea[], %(ttrs)s::int[], %(delays)s::float8[], %(priorities)s::int[])
       WITH ORDINALITY AS u(payload, ttr, delay, priority, ord)
  ORDER BY u.ord
  RETURNING id),
c AS (UPDATE {C} SET n_waiting = n_waiting + %(w)s, n_delayed = n_delayed + %(d)s
      WHERE channel = %(ch)s AND shard = %(shard)s)
SELECT id FROM ins ORDER BY id
"""

#: Due delayed jobs become waiting (a bounded batch; the rest on the next reserve).
PG_PROMOTE = """
WITH d AS (SELECT id FROM {J} WHERE channel = %(ch)s AND state = 'delayed'
             AND due_at <= extract(epoch FROM now())::float8
           ORDER BY due_at LIMIT 1000 FOR UPDATE SKIP LOCKED),
p AS (UPDATE {J} AS j SET state = 'waiting' FROM d WHERE j.id = d.id RETURNING 1)
UPDATE {C} SET n_waiting = n_waiting + (SELECT count(*) FROM p), n_delayed = n_delayed - (SELECT count(*) FROM p)
WHERE channel = %(ch)s AND shard = %(shard)s AND EXISTS (SELECT 1 FROM p)
"""

PG_ACK = """
WITH a AS (DELETE FROM {J} WHERE id = %(id)s AND channel = %(ch)s AND state = 'reserved'
             AND attempt = %(attempt)s AND deadline = %(deadline)s::float8 RETURNING 1),
c AS (UPDATE {C} SET done = done + 1, n_reserved = n_reserved - 1
      WHERE channel = %(ch)s AND shard = %(shard)s AND EXISTS (SELECT 1 FROM a))
"""

#: Take the first waiting job; when there is none, say how long until the next delayed one is due.
PG_RESERVE = """
WITH pick AS (SELECT id FROM {J} WHERE channel = %(ch)s AND state = 'waiting'
              ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED),
r AS (UPDATE {J} AS j SET state = 'reserved', attempt = j.attempt + 1, retried_attempt = 0,
        deadline = extract(epoch FROM now())::float8 + j.ttr,
        expires_at = extract(epoch FROM now())::float8 + j.ttr + %(grace)s::float8
      FROM pick WHERE j.id = pick.id
      RETURNING j.id, j.payload, j.attempt, j.ttr, j.deadline, j.priority, j.pushed_at),
c AS (UPDATE {C} SET n_waiting = n_waiting - 1, n_reserved = n_reserved + 1
      WHERE channel = %(ch)s AND shard = %(shard)s AND EXISTS (SELECT 1 FROM r))
SELECT {ACKED} r.id, r.payload, r.attempt, r.ttr, r.deadline, r.priority, r.pushed_at,
       CASE WHEN r.id IS NULL THEN (SELECT min(due_at) FROM {J} WHERE channel = %(ch)s AND state = 'delayed')
                                   - extract(epoch FROM now())::float8 END
FROM (SELECT 1) AS one LEFT JOIN r ON true
"""


def pg_reserve_sql(ack: bool) -> str:
    if not ack:
        return PG_PROMOTE + ";\n" + PG_RESERVE.replace("{ACKED}", "")
    # The ack's outcome travels to the last statement through a transaction-local setting.
    ack_sql = PG_ACK + "SELECT set_config('pubq.acked', (SELECT count(*) FROM a)::text, true)"
    return (
        ack_sql
        + ";\n"
        + PG_PROMOTE
        + ";\n"
        + PG_RESERVE.replace("{ACKED}", "current_setting('pubq.acked')::int,")
    )


PG_ACK_ONLY = PG_ACK + "SELECT count(*) FROM a"


# -- errors -------------------------------------------------------------------------------------

#: MySQL/MariaDB: deadlock, lock wait timeout. PostgreSQL: serialization failure, deadlock, lock not available.
_MYSQL_RETRY = {1205, 1213}
_PG_RETRY = {"40001", "40P01", "55P03"}
#: MySQL client errors meaning the connection is gone.
_MYSQL_LOST = {2003, 2006, 2013, 2055, 0}


def unwrap(exc: BaseException) -> BaseException:
    """The DB-API exception under a Peewee wrapper."""
    if exc.args and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    return exc.__context__ if exc.__context__ is not None and type(exc).__module__ == "peewee" else exc


def is_db_error(exc: BaseException) -> bool:
    """An error raised by the database layer (DB-API module or Peewee), as opposed to a bug."""
    if isinstance(exc, sqlite3.Error) or type(exc).__module__ == "peewee":
        return True
    return (type(exc).__module__ or "").startswith(("psycopg", "pymysql", "MySQLdb"))


def classify(exc: BaseException) -> str:
    """``"retry"`` (the transaction was rolled back; run it again), ``"lost"`` (drop the connection) or ``""``."""
    exc = unwrap(exc)
    if isinstance(exc, sqlite3.OperationalError):
        msg = str(exc).lower()
        return "retry" if "locked" in msg or "busy" in msg else ""
    module = type(exc).__module__ or ""
    if module.startswith("psycopg"):
        code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
        if code in _PG_RETRY:
            return "retry"
        if code is None and type(exc).__name__ in ("OperationalError", "InterfaceError"):
            return "lost"  # "server closed the connection unexpectedly", "connection already closed"
        return "lost" if code and (code.startswith("08") or code.startswith("57P")) else ""
    if module.startswith("pymysql") or module.startswith("MySQLdb"):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in _MYSQL_RETRY:
            return "retry"
        if (
            type(exc).__name__ == "InterfaceError"
            or code in _MYSQL_LOST
            or (code is not None and 2000 <= code < 3000)
        ):
            return "lost"
    return ""


def first_line(exc: BaseException) -> str:
    exc = unwrap(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def as_bytes(value: Any) -> bytes:
    """A payload column as bytes, whatever the database handed back (memoryview, str from a hand-made row)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if value is None:
        return b""
    return bytes(value)


# -- fork safety --------------------------------------------------------------------------------
# A child process must neither use nor close its parent's connections: closing a psycopg2 connection
# sends a Terminate message on the shared socket and ends the parent's session. After fork the child
# forgets them; their sockets are pointed at /dev/null so that a late close writes nowhere, and the
# objects are kept alive so they are not closed at all while the child runs.

_DRIVERS: weakref.WeakSet[Any] = weakref.WeakSet()
_ABANDONED: list[Any] = []
_hook_lock = threading.Lock()
_hook_installed = False


def _socket_fd(conn: Any) -> int | None:
    try:
        if hasattr(conn, "fileno"):  # psycopg2 / psycopg
            return int(conn.fileno())
        sock = getattr(conn, "_sock", None)  # PyMySQL
        return int(sock.fileno()) if sock is not None else None
    except Exception:  # noqa: BLE001 - closed or unusual connection: nothing to neutralize
        return None


def abandon(conn: Any) -> None:
    """Forget an inherited connection in a forked child without touching the parent's session."""
    if conn is None:
        return
    fd = _socket_fd(conn)
    if fd is not None and fd >= 0:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except OSError:
            pass
    _ABANDONED.append(conn)


def _after_fork_in_child() -> None:
    for driver in list(_DRIVERS):
        try:
            driver._forget_connections()
        except Exception:  # noqa: BLE001 - never break a fork
            pass


def track(driver: Any) -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _hook_installed = True
        _DRIVERS.add(driver)
