"""Every SQL statement of the ``db`` driver, each named, with the guarantee it gives.

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

from pubq.drivers.records import JobStatus


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


def _upsert(kind: str, table: str, key: str, columns: tuple[str, ...], values: tuple[str, ...]) -> str:
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


def _ensure_row(into: str, guarantee: str) -> dict[str, Statement]:
    """Per dialect: ``INSERT <into>`` unless the row (by its key) is already there."""
    return {kind: Statement(f"{head} {into}{tail}", guarantee) for kind, (head, tail) in _INSERT_IGNORE.items()}


# -- connection and clock ---------------------------------------------------------------------------

NOW = Statement("SELECT {NOW} AS db_now", "the database clock; in a transaction, one reading fixed for all of it")
PING = Statement("SELECT 1 AS ok", "the database answers")
ENSURE_COUNTER_ROW = _ensure_row(
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

_INSERT_JOBS = "INSERT INTO {J} (channel, state, payload, ttr, priority, attempt, pushed_at, due_at) VALUES "
_ONE_JOB = "(?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_JOB = Statement(_INSERT_JOBS + _ONE_JOB, "one job stored, waiting or delayed; its id is the cursor's lastrowid")


def insert_jobs_returning(count: int) -> Statement:
    """``count`` jobs in one INSERT; ids come back in VALUES order once sorted."""
    return Statement(_INSERT_JOBS + ", ".join([_ONE_JOB] * count) + " RETURNING id",
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

# -- inspection and maintenance ---------------------------------------------------------------------------

STATE_OF = Statement(
    "SELECT state, due_at <= {NOW} AS due FROM {J} WHERE id = ? AND channel = ?",
    "a job's stored state and whether it is due (a due delayed job counts as waiting); no row when done",
)
JOB = Statement(
    f"SELECT {JOB_COLUMNS}, {{NOW}} AS db_now FROM {{J}} WHERE id = ? AND channel = ?",
    "one job of this queue as stored, with the database clock to judge due times by",
)
LOCK_JOB = Statement(
    "SELECT state, attempt FROM {J} WHERE id = ? AND channel = ?{LOCK}",
    "a job of this queue, locked for the rest of the transaction",
)
DELETE_JOB = Statement("DELETE FROM {J} WHERE id = ?", "the (locked) job is gone")
IDS_IN_STATE = Statement(
    "SELECT id FROM {J} WHERE channel = ? AND state = ? AND id <= ? LIMIT ?{LOCK}",
    "a batch of this queue's jobs in one state that existed when the clear began, locked",
)
DELETE_IDS_IN_STATE = Statement(
    "DELETE FROM {J} WHERE state = ? AND id IN ({IDS})", "the given jobs are gone if still in that state",
)
MAX_ID = Statement("SELECT coalesce(max(id), 0) AS max_id FROM {J}", "the newest job id of any queue")
DELETE_FOLLOW_UPS = Statement("DELETE FROM {F} WHERE channel = ?", "this queue's follow-up failures are gone")
DELETE_LIMIT_KEYS = Statement("DELETE FROM {L} WHERE channel = ?", "this queue's per-key limit states are gone")
FAILED_PAGE = Statement(
    f"SELECT {JOB_COLUMNS} FROM {{J}} WHERE channel = ? AND state = 'failed'"
    " ORDER BY due_at DESC, id DESC LIMIT ? OFFSET ?",
    "a page of the failed registry, newest failure first",
)
FAILED_ONE = Statement(
    f"SELECT {JOB_COLUMNS}, history FROM {{J}} WHERE id = ? AND channel = ? AND state = 'failed'",
    "one failed entry with its attempt history",
)
REQUEUE_FAILED = Statement(
    "UPDATE {J} SET state = ?, attempt = ?, due_at = ?, deadline = NULL, expires_at = NULL,"
    " error_class = NULL, error_message = NULL, error_traceback = NULL, error_code = NULL,"
    " retry_delay = NULL WHERE id = ?",
    "the (locked) failed entry waits or is delayed again, its error cleared",
)
INSERT_FOLLOW_UP = Statement(
    "INSERT INTO {F} (channel, job_id, attempt, event, handler, error_class, message, traceback, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "a raising afterExec/afterError handler is recorded",
)
FOLLOW_UP_EDGE = Statement(
    "SELECT seq FROM {F} WHERE channel = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
    "the newest follow-up failure past the limit (none while under it)",
)
TRIM_FOLLOW_UPS = Statement(
    "DELETE FROM {F} WHERE channel = ? AND seq <= ?", "follow-up failures at or before the edge are gone",
)
FOLLOW_UP_PAGE = Statement(
    "SELECT job_id, attempt, event, handler, error_class, message, traceback, at, seq FROM {F}"
    " WHERE channel = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
    "a page of follow-up failures, newest first",
)

# -- operations: listing, pause, cancel, progress, the worker registry -------------------------------------

#: The column a state's list is ordered by (ties by id).
LIST_ORDER = {
    JobStatus.WAITING: "priority",
    JobStatus.DELAYED: "due_at",
    JobStatus.RESERVED: "deadline",
    JobStatus.FAILED: "due_at",
}
LIST_MARK = {
    state: Statement(f"SELECT {order} AS mark FROM {{J}} WHERE id = ? AND channel = ?",
                     "where a keyset page resumes: the order value of the last job listed")
    for state, order in LIST_ORDER.items()
}
_LIST = f"SELECT {JOB_COLUMNS}, {{NOW}} AS db_now FROM {{J}} WHERE channel = ? AND state = ?"
LIST_FIRST = {
    state: Statement(f"{_LIST} ORDER BY {order}, id LIMIT ?",
                     "the first page of a state's jobs, in the order of an index reserve already uses")
    for state, order in LIST_ORDER.items()
}
LIST_AFTER = {
    state: Statement(f"{_LIST} AND ({order}, id) > (?, ?) ORDER BY {order}, id LIMIT ?",
                     "the next page after a mark: stable while jobs come and go")
    for state, order in LIST_ORDER.items()
}
PAUSE = {
    kind: Statement(_upsert(kind, "{Q}", "channel", ("channel", "paused", "paused_at"), ("?", "1", "{NOW}")),
                    "the queue is paused: the reserve statement reads the flag itself")
    for kind in DIALECTS
}
RESUME = Statement(
    "UPDATE {Q} SET paused = 0, paused_at = NULL WHERE channel = ? AND paused = 1",
    "the queue is no longer paused (one row changed only if it was)",
)
PAUSED = Statement("SELECT paused FROM {Q} WHERE channel = ?", "whether the queue is paused")
CANCEL_LOOKUP = Statement(
    "SELECT state, payload, attempt, ttr, priority, pushed_at, lease FROM {J} WHERE id = ? AND channel = ?{LOCK}",
    "the job to cancel, locked",
)
REQUEST_CANCEL = Statement(
    "UPDATE {J} SET cancel_reason = ? WHERE id = ?", "the running job's holder sees the request on its next look",
)
CANCEL_NOW = Statement(
    "UPDATE {J} SET state = 'failed', due_at = ?, deadline = NULL, expires_at = ?, lease = lease + 1,"
    " error_class = ?, error_message = ?, error_traceback = '', error_code = ?, retry_delay = NULL"
    " WHERE id = ?",
    "a job not running is failed as cancelled, unsettled, under a new lease (no reserve can take it)",
)
ID_ANYWHERE = Statement("SELECT 1 AS found FROM {J} WHERE id = ?", "whether any queue holds this id")
LAST_ID = {
    "sqlite": Statement("SELECT seq AS last_id FROM sqlite_sequence WHERE name = ?",
                        "the last id the jobs table handed out"),
    "postgres": Statement("SELECT pg_sequence_last_value(pg_get_serial_sequence(?, 'id')::regclass) AS last_id",
                          "the last id the jobs table handed out"),
    "mysql": Statement("SELECT AUTO_INCREMENT - 1 AS last_id FROM information_schema.TABLES"
                       " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                       "the last id the jobs table handed out"),
}
CANCEL_REASON = Statement(
    "SELECT cancel_reason FROM {J} WHERE id = ? AND channel = ? AND state = 'reserved'",
    "a pending cancel request of a running job (NULL when none)",
)
PROGRESS = Statement(
    f"UPDATE {{J}} SET progress = ?, progress_message = ? WHERE {HELD}",
    "the holder's progress is stored only while its reservation holds",
)
HEARTBEAT = {
    kind: Statement(
        _upsert(kind, "{W}", "id", ("id", "channel", "last_seen", "expires_at", "info"),
                ("?", "?", "{NOW}", "{NOW} + ?", "?")),
        "the worker is registered until now + ttl, stamped with the database clock: one round trip",
    )
    for kind in DIALECTS
}
UNREGISTER_WORKER = Statement("DELETE FROM {W} WHERE id = ?", "the worker leaves the registry")
SWEEP_WORKERS = Statement(
    "DELETE FROM {W} WHERE channel = ? AND expires_at < {NOW}", "entries past their expiry are gone",
)
WORKERS = Statement(
    "SELECT last_seen, info, {NOW} AS db_now FROM {W} WHERE channel = ? AND expires_at >= {NOW}",
    "the queue's registered workers whose entry has not expired (swept or not)",
)

#: The database clock's current unix minute (the throughput bucket of "now").
MINUTE_SQL = {
    "sqlite": "CAST(pubq_now() / 60 AS INTEGER)",
    "postgres": "floor(extract(epoch FROM now()) / 60)::bigint",
    "mysql": "FLOOR(UNIX_TIMESTAMP(NOW(6)) / 60)",
}
_TPUT_ADD = {
    "mysql": " ON DUPLICATE KEY UPDATE done = done + VALUES(done), failed = failed + VALUES(failed)",
    "postgres": " ON CONFLICT (channel, bucket) DO UPDATE SET done = {T}.done + excluded.done,"
                " failed = {T}.failed + excluded.failed",
}
RECORD_THROUGHPUT = {
    kind: Statement(
        f"INSERT INTO {{T}} (channel, bucket, done, failed) VALUES (?, COALESCE(?, {MINUTE_SQL[kind]}), ?, ?)"
        + _TPUT_ADD["mysql" if kind == "mysql" else "postgres"],
        "a worker's finished jobs are added to the minute's bucket in one statement (concurrent beats add up)",
    )
    for kind in DIALECTS
}
TRIM_THROUGHPUT = {
    kind: Statement(f"DELETE FROM {{T}} WHERE channel = ? AND bucket < {MINUTE_SQL[kind]} - ?",
                    "buckets older than the kept window are gone")
    for kind in DIALECTS
}
THROUGHPUT = Statement(
    "SELECT bucket, done, failed FROM {T} WHERE channel = ? AND bucket >= ? ORDER BY bucket",
    "the queue's stored buckets from a minute on, oldest first (a primary-key range)",
)

# -- PostgreSQL hot paths ---------------------------------------------------------------------------------

_PG_NOW = "extract(epoch FROM now())::float8"

#: $1 channel, $2 shard, $3 payloads, $4 ttrs, $5 delays, $6 priorities, $7 new waiting, $8 new delayed.
PG_PUSH = PgStatement(
    f"""
WITH t AS (SELECT {_PG_NOW} AS now),
ins AS (
  INSERT INTO {{J}} (channel, state, payload, ttr, priority, attempt, pushed_at, due_at)
  SELECT $1, CASE WHEN u.delay > 0 THEN 'delayed' ELSE 'waiting' END, u.payload, u.ttr, u.priority, 0,
         t.now, t.now + greatest(u.delay, 0)
  FROM t, unnest($3::bytea[], $4::int[], $5::float8[], $6::int[]) WITH ORDINALITY AS u(payload, ttr, delay, priority, ord)
  ORDER BY u.ord
  RETURNING id),
c AS (UPDATE {{C}} SET n_waiting = n_waiting + $7, n_delayed = n_delayed + $8 WHERE channel = $1 AND shard = $2)
SELECT id FROM ins ORDER BY id""",
    ("varchar", "int", "bytea[]", "int[]", "float8[]", "int[]", "bigint", "bigint"),
    "the jobs and their counter deltas in one statement; ids ascend in input order",
)

#: $1 notification channel.
PG_NOTIFY = PgStatement("SELECT pg_notify($1, '') AS notified", ("text",),
                        "listeners of the queue wake when the round trip's transaction commits")

#: $1 channel, $2 shard.
PG_PROMOTE = PgStatement(
    f"""
WITH p AS (
  UPDATE {{J}} SET state = 'waiting'
  WHERE id = ANY(ARRAY(SELECT id FROM {{J}} WHERE channel = $1 AND state = 'delayed' AND due_at <= {_PG_NOW}
                       ORDER BY due_at LIMIT {PROMOTE_BATCH} FOR UPDATE SKIP LOCKED))
  RETURNING 1)
UPDATE {{C}} SET n_waiting = n_waiting + (SELECT count(*) FROM p), n_delayed = n_delayed - (SELECT count(*) FROM p)
WHERE channel = $1 AND shard = $2 AND EXISTS (SELECT 1 FROM p)""",
    ("varchar", "int"),
    "up to PROMOTE_BATCH due delayed jobs become waiting, counters adjusted by exactly as many",
)

_ACK = """
WITH a AS (DELETE FROM {J} WHERE id = $3 AND channel = $1 AND state = 'reserved' AND lease = $4 RETURNING 1),
c AS (UPDATE {C} SET done = done + 1, n_reserved = n_reserved - 1
      WHERE channel = $1 AND shard = $2 AND EXISTS (SELECT 1 FROM a))
"""
_ACK_TYPES = ("varchar", "int", "bigint", "bigint")

#: $1 channel, $2 shard, $3 job id, $4 lease token.
PG_ACK = PgStatement(_ACK + "SELECT count(*) AS acked FROM a", _ACK_TYPES,
                     "the job is gone (acked = 1) only if this lease still holds it")
PG_ACK_KEEP = PgStatement(
    _ACK + "SELECT set_config('pubq.acked', (SELECT count(*) FROM a)::text, true) AS acked", _ACK_TYPES,
    "PG_ACK, its outcome kept in a transaction-local setting for the reserve in the same round trip",
)

_RESERVE = f"""
WITH r AS (
  UPDATE {{J}} SET state = 'reserved', attempt = attempt + 1, lease = lease + 1,
    deadline = {_PG_NOW} + ttr, expires_at = {_PG_NOW} + ttr + $3, holder = $4, cancel_reason = NULL,
    progress = NULL, progress_message = NULL
  WHERE id = (SELECT id FROM {{J}} WHERE channel = $1 AND state = 'waiting'
              AND NOT EXISTS (SELECT 1 FROM {{Q}} WHERE channel = $1 AND paused = 1)
              ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED)
  RETURNING id, payload, attempt, ttr, deadline, lease, priority, pushed_at),
c AS (UPDATE {{C}} SET n_waiting = n_waiting - 1, n_reserved = n_reserved + 1
      WHERE channel = $1 AND shard = $2 AND EXISTS (SELECT 1 FROM r))
SELECT ACKED r.id, r.payload, r.attempt, r.ttr, r.deadline, r.lease, r.priority, r.pushed_at,
       CASE WHEN r.id IS NULL THEN (SELECT min(due_at) FROM {{J}} WHERE channel = $1 AND state = 'delayed')
                                   - {_PG_NOW} END AS due_in
FROM (SELECT 1) AS one LEFT JOIN r ON true"""

#: $1 channel, $2 shard, $3 grace, $4 holder. One row: id … pushed_at of the job taken (NULL id when
#: none), and due_in, the seconds until the next delayed job is due.
PG_RESERVE = PgStatement(
    _RESERVE.replace("ACKED ", ""), ("varchar", "int", "float8", "varchar"),
    "the first waiting job in priority then push order under a new lease, skipping rows others hold; none"
    " while paused",
)
PG_RESERVE_ACKED = PgStatement(
    _RESERVE.replace("ACKED ", "current_setting('pubq.acked')::int AS acked,"), ("varchar", "int", "float8", "varchar"),
    "PG_RESERVE after a PG_ACK_KEEP in the same round trip, the ack's outcome in column acked",
)


#: $1 channel, $2 shard, $3 grace, $4 holder, $5 n. Rows: id … pushed_at, in run order; none when nothing waits.
PG_RESERVE_MANY = PgStatement(
    f"""
WITH r AS (
  UPDATE {{J}} SET state = 'reserved', attempt = attempt + 1, lease = lease + 1,
    deadline = {_PG_NOW} + ttr, expires_at = {_PG_NOW} + ttr + $3, holder = $4, cancel_reason = NULL,
    progress = NULL, progress_message = NULL
  WHERE id = ANY(ARRAY(SELECT id FROM {{J}} WHERE channel = $1 AND state = 'waiting'
                       AND NOT EXISTS (SELECT 1 FROM {{Q}} WHERE channel = $1 AND paused = 1)
                       ORDER BY priority, id LIMIT $5 FOR UPDATE SKIP LOCKED))
  RETURNING id, payload, attempt, ttr, deadline, lease, priority, pushed_at),
n AS (SELECT count(*) AS k FROM r),
c AS (UPDATE {{C}} SET n_waiting = n_waiting - n.k, n_reserved = n_reserved + n.k FROM n
      WHERE channel = $1 AND shard = $2 AND n.k > 0)
SELECT r.id, r.payload, r.attempt, r.ttr, r.deadline, r.lease, r.priority, r.pushed_at
FROM r ORDER BY r.priority, r.id""",
    ("varchar", "int", "float8", "varchar", "int"),
    "up to n waiting jobs (a worker's free slots) in run order, each as PG_RESERVE takes one",
)

#: $1 channel, $2 shard, $3 ids, $4 lease tokens. Rows: the ids acked.
PG_ACK_MANY = PgStatement(
    """
WITH a AS (DELETE FROM {J} WHERE channel = $1 AND state = 'reserved'
           AND (id, lease) IN (SELECT * FROM unnest($3::bigint[], $4::bigint[])) RETURNING id),
n AS (SELECT count(*) AS k FROM a),
c AS (UPDATE {C} SET done = done + n.k, n_reserved = n_reserved - n.k FROM n
      WHERE channel = $1 AND shard = $2 AND n.k > 0)
SELECT id FROM a""",
    ("varchar", "int", "bigint[]", "bigint[]"),
    "each job is gone only if its own lease still holds it; the ids gone come back",
)

# -- unique keys and marks (db_unique) ----------------------------------------------------------------

UNIQUE_ROW_EXISTS = Statement(
    "SELECT 1 AS found FROM {U} WHERE channel = ? AND ukey = ?", "whether the key's row exists (a plain read)",
)
ENSURE_UNIQUE_ROW = _ensure_row(
    "{U} (channel, ukey, job_id, mode, check_at) VALUES (?, ?, 0, 'done', 0)",
    "the key's row exists (a placeholder holding nothing), so racing pushers queue on one row lock",
)
LOCK_UNIQUE_ROW = Statement(
    "SELECT job_id, mode, expires_at FROM {U} WHERE channel = ? AND ukey = ?{LOCK}",
    "the key's record, locked: one unique push at a time per key",
)
UNIQUE_HOLDER = Statement(
    "SELECT state, attempt, expires_at FROM {J} WHERE id = ? AND channel = ?",
    "the state of the job that holds the key (no row once it is done)",
)
INSERT_JOB_RETURNING = Statement(_INSERT_JOBS + _ONE_JOB + " RETURNING id", "one job stored; its id comes back")
HOLD_UNIQUE_KEY = Statement(
    "UPDATE {U} SET job_id = ?, mode = ?, expires_at = ?, check_at = ? WHERE channel = ? AND ukey = ?",
    "the key is held by the new job until its mode releases it",
)
SWEEP_UNIQUE = Statement(
    "DELETE FROM {U} WHERE channel = ? AND job_id <> 0 AND check_at <= ? AND ("
    "(expires_at IS NOT NULL AND expires_at <= ?) OR (mode <> 'ttl' AND NOT EXISTS ("
    "SELECT 1 FROM {J} WHERE {J}.id = {U}.job_id AND {J}.channel = ? AND ("
    "({U}.mode = 'done' AND ({J}.state <> 'failed' OR {J}.expires_at IS NOT NULL))"
    " OR ({U}.mode = 'start' AND {J}.state IN ('waiting', 'delayed') AND {J}.attempt = 0)))))",
    "released records due for a look are gone: expired, or their job no longer in a state the mode holds",
)
RECHECK_UNIQUE = Statement(
    "UPDATE {U} SET check_at = CASE WHEN expires_at IS NOT NULL AND expires_at < ? THEN expires_at ELSE ? END"
    " WHERE channel = ? AND job_id <> 0 AND check_at <= ?",
    "held records left due are looked at again later (at their expiry if that comes first)",
)
MARK = Statement("SELECT value FROM {M} WHERE channel = ? AND name = ?", "a named time of this queue")
ADVANCE_MARK = {
    kind: Statement("INSERT INTO {M} (channel, name, value) VALUES (?, ?, ?)" + tail,
                    "the mark moves forward only, never back (racing schedulers agree on the latest)")
    for kind, tail in (
        ("sqlite", " ON CONFLICT (channel, name) DO UPDATE SET value = max(value, excluded.value)"),
        ("postgres", " ON CONFLICT (channel, name) DO UPDATE SET value = GREATEST({M}.value, excluded.value)"),
        ("mysql", " ON DUPLICATE KEY UPDATE value = GREATEST(value, VALUES(value))"),
    )
}


# -- per-key limits (db_limits) ---------------------------------------------------------------------------

LIMIT_KEYS_AFTER = Statement(
    "SELECT lkey, state FROM {L} WHERE channel = ? AND lkey > ? ORDER BY lkey LIMIT ?",
    "the next batch of the queue's limit keys after a cursor (a sweep looks at every row over time)",
)
JOBS_STATE_AND_LEASE = Statement(
    "SELECT id, state, lease FROM {J} WHERE channel = ? AND id IN ({IDS})",
    "state and lease of the given jobs of this queue (absent: done)",
)
DELETE_IDLE_LIMIT_KEY = Statement(
    "DELETE FROM {L} WHERE channel = ? AND lkey = ? AND state = ?",
    "an idle key's row is gone only if its state is still the one judged idle",
)
LOCK_LIMIT_KEY = Statement(
    "SELECT state FROM {L} WHERE channel = ? AND lkey = ?{LOCK}",
    "the key's state, locked: one admission or release at a time per key",
)
ENSURE_LIMIT_KEY = _ensure_row(
    "{L} (channel, lkey, state) VALUES (?, ?, '')", "the key's row exists (empty state), so admissions queue on one row lock",
)
SAVE_LIMIT_KEY = Statement(
    "UPDATE {L} SET state = ? WHERE channel = ? AND lkey = ?", "the (locked) key's new state",
)
DELETE_LIMIT_KEY = Statement("DELETE FROM {L} WHERE channel = ? AND lkey = ?", "the (locked) key's row is gone")
HELD_CANCEL_REASON = Statement(
    f"SELECT cancel_reason FROM {{J}} WHERE {HELD}",
    "the held job's pending cancel request (NULL when none); no row once the reservation is stale",
)
RESERVED_LEASES = Statement(
    "SELECT id, lease FROM {J} WHERE channel = ? AND state = 'reserved' AND id IN ({IDS})",
    "the current leases of those given jobs that are running",
)
DELAY_FOR_LIMIT = Statement(
    "UPDATE {J} SET state = 'delayed', attempt = attempt - 1, due_at = ?, deadline = NULL,"
    " expires_at = NULL, holder = NULL, progress = NULL, progress_message = NULL,"
    f" cancel_reason = NULL WHERE {HELD}",
    "the held job waits for its key, as if this attempt never began",
)
JOB_STATE = Statement(
    "SELECT state FROM {J} WHERE id = ? AND channel = ?", "a job's stored state (no row once done)",
)
WAKE_DELAYED = Statement(
    "UPDATE {J} SET state = 'waiting', due_at = ? WHERE id = ? AND channel = ? AND state = 'delayed'",
    "a job delayed by its key waits again now, only if it is still delayed",
)


def all_statements() -> dict[str, Statement | PgStatement]:
    """Every statement of this module by name (``NAME`` or ``NAME[key]`` for per-dialect/per-state ones)."""
    found: dict[str, Statement | PgStatement] = {}
    for name, value in globals().items():
        if isinstance(value, Statement | PgStatement):
            found[name] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, Statement | PgStatement):
                    found[f"{name}[{getattr(key, 'value', key)}]"] = item
    return found
