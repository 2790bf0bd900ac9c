"""The SQL of the ``db`` driver: how its statements are written, and the core lifecycle's statements.

Every statement is named, with the guarantee it gives. This module holds the shared pieces (the
statement types, counters, guards, dialect helpers) and the statements of the clock and counters,
push, reserve, the settling writes and reclaim; the others live by concern in
:mod:`~pubq.drivers.db_sql_registry`, :mod:`~pubq.drivers.db_sql_ops`, :mod:`~pubq.drivers.db_sql_keys`
and :mod:`~pubq.drivers.db_sql_pg`, and :mod:`~pubq.drivers.db_sql_catalog` lists them all.

Templates use ``?`` placeholders, rewritten to ``%s`` for PostgreSQL/MySQL, and these tokens: ``{J}``
jobs table, ``{C}`` counters, ``{F}`` follow-ups, ``{Q}`` pause flags, ``{W}`` worker registry,
``{U}`` unique keys, ``{M}`` marks, ``{L}`` per-key limits, ``{T}`` throughput, ``{NOW}`` the database clock in unix seconds, ``{LOCK}`` a row lock (`` FOR UPDATE``; nothing on
SQLite, whose write transactions are exclusive), ``{SKIP}`` a row lock that skips rows other workers
hold (`` FOR UPDATE SKIP LOCKED`` where the server has it, else a plain ``FOR UPDATE``), ``{IDS}`` a
list of ``?`` for an ``IN``. Rows are read by column name: every computed column has an alias.

Lock order, so InnoDB and PostgreSQL do not deadlock (yii2-queue issue #245): a transaction takes its
blocking job-row locks first and its counter row last (counter deltas are flushed just before
COMMIT); bulk reads of jobs use ``SKIP LOCKED`` and never wait. Deadlocks and lock timeouts that
happen anyway are retried (the transaction was rolled back, so running it again is safe).

PostgreSQL's hot paths (push, reserve, ack, ack + reserve) are the ``PG_*`` statements: ``$n``
parameters, prepared once per connection (not behind a transaction pooler), several sent in one
round trip. A counter row is updated by at most one CTE per statement (two updates of one row in one
statement would lose one). Rows are updated by ``id = (subquery)`` / ``id = ANY(ARRAY(subquery))``,
never by a join: the planner cannot estimate ``due_at <= now()`` and would otherwise hash-join the
whole table on every reserve.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Statement:
    """A SQL template (tokens: see the module docstring) and what running it guarantees."""

    sql: str
    guarantee: str


@dataclass(frozen=True)
class PgStatement:
    """A PostgreSQL hot-path statement with ``$n`` parameters of the given types."""

    sql: str
    types: tuple[str, ...]
    guarantee: str


# -- shared pieces ----------------------------------------------------------------------------------

#: Counter deltas a transaction collects, by name → column of <prefix>counters.
COUNTERS = {
    "waiting": "n_waiting",
    "delayed": "n_delayed",  # "delayed" is a reserved word in MySQL
    "reserved": "n_reserved",
    "failed": "n_failed",
    "done": "done",
    "failed_total": "failed_total",
    "follow_up_total": "follow_up_total",
    "retried": "retried",
    "cancelled": "cancelled",
    "limited": "limited",
}

#: Columns of a job row as the driver reads it (by these names).
JOB_COLUMNS = (
    "id, state, payload, attempt, ttr, priority, pushed_at, due_at, deadline, expires_at,"
    " error_class, error_message, error_traceback, error_code, lease, retry_delay,"
    " holder, cancel_reason, progress, progress_message"
)
#: Not while the queue is paused: the reserve statement reads the flag itself. One parameter, the channel.
NOT_PAUSED = "NOT EXISTS (SELECT 1 FROM {Q} WHERE channel = ? AND paused = 1)"
#: The guard of every write that settles a reservation: reserved under this lease (id, channel, lease).
HELD = "id = ? AND channel = ? AND state = 'reserved' AND lease = ?"
#: The guard of settle/unfail: a failed attempt still unsettled, under this lease (id, channel, lease).
UNSETTLED = "id = ? AND channel = ? AND state = 'failed' AND lease = ? AND expires_at IS NOT NULL"

NOW_SQL = {
    # SQLite is local: its clock is this host's, through a function registered on each connection.
    "sqlite": "pubq_now()",
    "postgres": "extract(epoch FROM now())::float8",  # the transaction's start: one "now" per step
    "mysql": "UNIX_TIMESTAMP(NOW(6))",
}
DIALECTS = tuple(NOW_SQL)

#: Due delayed jobs promoted to waiting per reserve (the rest on the next one).
PROMOTE_BATCH = 1000


def upsert(kind: str, table: str, key: str, columns: tuple[str, ...], values: tuple[str, ...]) -> str:
    """INSERT, or UPDATE every other column of the row whose ``key`` is taken, in ``kind``'s dialect."""
    if kind == "mysql":
        assign = ", ".join(f"{c} = VALUES({c})" for c in columns if c != key)
        tail = f" ON DUPLICATE KEY UPDATE {assign}"
    else:
        assign = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        tail = f" ON CONFLICT ({key}) DO UPDATE SET {assign}"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)}){tail}"


#: kind → (head, tail) of an INSERT that leaves an existing row alone.
_INSERT_IGNORE = {
    "sqlite": ("INSERT OR IGNORE INTO", ""),
    "mysql": ("INSERT IGNORE INTO", ""),
    "postgres": ("INSERT INTO", " ON CONFLICT DO NOTHING"),
}


def ensure_row(into: str, guarantee: str) -> dict[str, Statement]:
    """Per dialect: ``INSERT <into>`` unless the row (by its key) is already there."""
    return {kind: Statement(f"{head} {into}{tail}", guarantee) for kind, (head, tail) in _INSERT_IGNORE.items()}


# -- connection and clock ---------------------------------------------------------------------------

NOW = Statement("SELECT {NOW} AS db_now", "the database clock; in a transaction, one reading fixed for all of it")
PING = Statement("SELECT 1 AS ok", "the database answers")
ENSURE_COUNTER_ROW = ensure_row(
    f"{{C}} (channel, shard, {', '.join(COUNTERS.values())}) VALUES (?, ?{', 0' * len(COUNTERS)})",
    "this driver's counter row exists (created at zero once, never reset)",
)
ADD_TO_COUNTERS = Statement(
    "UPDATE {C} SET " + ", ".join(f"{c} = {c} + ?" for c in COUNTERS.values()) + " WHERE channel = ? AND shard = ?",
    "a transaction's counter deltas, applied last (the counter row is locked last) and committed with its rows",
)
COUNTS = Statement(
    "SELECT " + ", ".join(f"coalesce(sum({c}), 0) AS {c}" for c in COUNTERS.values())
    + ", CASE WHEN (SELECT min(due_at) FROM {J} WHERE channel = ? AND state = 'delayed') <= {NOW}"
    " THEN (SELECT count(*) FROM {J} WHERE channel = ? AND state = 'delayed' AND due_at <= {NOW})"
    " ELSE 0 END AS due FROM {C} WHERE channel = ?",  # columns named as in the counters table
    "O(1) counts: the sum of the queue's counter shards, plus delayed rows already due (counted only when the"
    " earliest one is due: one index lookup, so the planner never scans every delayed row)",
)
NOTIFY = Statement("SELECT pg_notify(?, '') AS notified", "listeners of the queue wake when the transaction commits")

# -- push -------------------------------------------------------------------------------------------

INSERT_JOBS_HEAD = "INSERT INTO {J} (channel, state, payload, ttr, priority, attempt, pushed_at, due_at) VALUES "
ONE_JOB_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_JOB = Statement(INSERT_JOBS_HEAD + ONE_JOB_ROW, "one job stored, waiting or delayed; its id is the cursor's lastrowid")


def insert_jobs_returning(count: int) -> Statement:
    """``count`` jobs in one INSERT; ids come back in VALUES order once sorted."""
    return Statement(INSERT_JOBS_HEAD + ", ".join([ONE_JOB_ROW] * count) + " RETURNING id",
                     "the jobs stored in one statement; their ids ascend in input order")


# -- reserve (SQLite/MySQL; PostgreSQL: PG_PROMOTE, PG_RESERVE) -------------------------------------------

DUE_IDS = Statement(
    f"SELECT id FROM {{J}} WHERE channel = ? AND state = 'delayed' AND due_at <= ? ORDER BY due_at LIMIT {PROMOTE_BATCH}",
    "up to PROMOTE_BATCH delayed jobs due at the given time, earliest first (index jobs_due)",
)
PROMOTE_DUE = Statement(
    "UPDATE {J} SET state = 'waiting' WHERE id IN (" + DUE_IDS.sql + ")",
    "SQLite: the due delayed jobs become waiting, in one statement",
)
DUE_IDS_LOCKED = Statement(DUE_IDS.sql + "{SKIP}", "MySQL (no LIMIT in an IN subquery): DUE_IDS, rows locked")
PROMOTE_IDS = Statement("UPDATE {J} SET state = 'waiting' WHERE id IN ({IDS})", "the given delayed jobs become waiting")
FIRST_WAITING = Statement(
    "SELECT id, payload, attempt, ttr, priority, pushed_at, lease FROM {J}"
    f" WHERE channel = ? AND state = 'waiting' AND {NOT_PAUSED} ORDER BY priority, id LIMIT 1{{SKIP}}",
    "the first waiting job in priority then push order, locked, skipping rows other workers hold (index"
    " jobs_ready); none while the queue is paused",
)
ANY_WAITING = Statement(
    f"SELECT 1 AS found FROM {{J}} WHERE channel = ? AND state = 'waiting' AND {NOT_PAUSED} LIMIT 1",
    "a plain read: whether a waiting job exists that a locking read could have skipped",
)
NEXT_DUE_AT = Statement(
    "SELECT min(due_at) AS due_at FROM {J} WHERE channel = ? AND state = 'delayed'",
    "when the next delayed job is due (NULL when none): a waiting reserve sleeps no longer than that",
)
TAKE = Statement(
    "UPDATE {J} SET state = 'reserved', attempt = ?, lease = ?, deadline = ?, expires_at = ?, holder = ?,"
    " cancel_reason = NULL, progress = NULL, progress_message = NULL WHERE id = ?",
    "the locked job is reserved under a new lease; a previous run's cancel request and progress are gone",
)

# -- settling writes (each guarded by the reservation's lease) ---------------------------------------------

ACK = Statement(f"DELETE FROM {{J}} WHERE {HELD}", "the job is gone only if this reservation still holds it")
EXTEND = Statement(
    f"UPDATE {{J}} SET expires_at = CASE WHEN expires_at > ? THEN expires_at ELSE ? END WHERE {HELD}",
    "the holder's reservation lasts at least until the given time; never shortened",
)
RELEASE = Statement(
    "UPDATE {J} SET state = 'waiting', attempt = attempt - 1, deadline = NULL, expires_at = NULL,"
    f" due_at = ? WHERE {HELD}",
    "the held job waits again, as if this attempt never began",
)
HELD_HISTORY = Statement(
    f"SELECT history, attempt FROM {{J}} WHERE {HELD}",
    "the held job's failed-attempt history (and attempt number); no row once the reservation is stale",
)


def _reschedule(guard: str, new_history: bool) -> str:
    history = "?" if new_history else "history"
    return (
        "UPDATE {J} SET state = ?, due_at = ?, deadline = NULL, expires_at = NULL, error_class = NULL,"
        " error_message = NULL, error_traceback = NULL, error_code = NULL, retry_delay = NULL,"
        f" history = {history} WHERE {guard}"
    )


RETRY_HELD = Statement(
    _reschedule(HELD, False),
    "the held job waits (or is delayed) for another attempt; attempt count and history kept",
)
RETRY_HELD_WITH_HISTORY = Statement(
    _reschedule(HELD, True),
    "the held job waits (or is delayed) for another attempt, with this attempt added to its history",
)
UNFAIL = Statement(
    _reschedule(UNSETTLED, False),
    "an unsettled failure becomes a retry (a handler changed its mind); only from that one state",
)
FAIL = Statement(
    "UPDATE {J} SET state = 'failed', due_at = ?, deadline = NULL, expires_at = ?, error_class = ?,"
    f" error_message = ?, error_traceback = ?, error_code = ?, retry_delay = ?, history = ? WHERE {HELD}",
    "the held job enters the failed registry unsettled (its handlers still to run), settle deadline set",
)
SETTLE = Statement(
    f"UPDATE {{J}} SET expires_at = NULL, retry_delay = NULL WHERE {UNSETTLED}",
    "an unsettled failure is final: reclaim no longer re-runs its handlers",
)
ERROR_CODE = Statement("SELECT error_code FROM {J} WHERE id = ?", "the stored error code of a job (cancel or not)")
FAILED_SIZE = Statement(
    "SELECT coalesce(sum(n_failed), 0) AS size FROM {C} WHERE channel = ?",
    "the failed registry's size before this transaction's deltas",
)
OLDEST_FAILED_IDS = Statement(
    "SELECT id FROM {J} WHERE channel = ? AND state = 'failed' ORDER BY due_at, id LIMIT ?{SKIP}",
    "the oldest failed entries, locked, skipping rows another transaction holds",
)
DELETE_FAILED_IDS = Statement(
    "DELETE FROM {J} WHERE state = 'failed' AND id IN ({IDS})", "the given entries leave the failed registry",
)

# -- reclaim --------------------------------------------------------------------------------------------

EXPIRED = Statement(
    f"SELECT {JOB_COLUMNS} FROM {{J}} WHERE channel = ? AND expires_at <= ? ORDER BY expires_at LIMIT ?{{SKIP}}",
    "reservations past their deadline and grace, and failures past their settle deadline, oldest first,"
    " locked (index jobs_expiry)",
)
RECLAIM_LOST = Statement(
    "UPDATE {J} SET deadline = ?, expires_at = ?, lease = lease + 1 WHERE id IN ({IDS})",
    "a new lease and a hold for the reclaimer: the lost holder's writes are refused from now on",
)
RECLAIM_UNSETTLED = Statement(
    "UPDATE {J} SET expires_at = ?, lease = lease + 1 WHERE id IN ({IDS})",
    "a new lease and a hold for whoever re-runs the failure's handlers",
)
