"""SQL of the ``db`` driver.

Templates (here and inline in ``db.py``) use ``?`` placeholders, rewritten to ``%s`` for
PostgreSQL/MySQL, and these tokens: ``{J}`` jobs table, ``{C}`` counters, ``{F}`` follow-ups, ``{Q}``
pause flags, ``{W}`` worker registry, ``{NOW}``
the database clock in unix seconds, ``{LOCK}`` a row lock (`` FOR UPDATE``; nothing on SQLite, whose
write transactions are exclusive), ``{SKIP}`` a row lock that skips rows other workers hold
(`` FOR UPDATE SKIP LOCKED`` where the server has it, else a plain ``FOR UPDATE``), ``{IDS}`` a list
of ``?`` for an ``IN``.

Lock order, so InnoDB and PostgreSQL do not deadlock (yii2-queue #245): a transaction takes its blocking
job-row locks first and its counter row last (counter deltas are flushed just before COMMIT); bulk
reads of jobs use ``SKIP LOCKED`` and never wait. Deadlocks and lock timeouts that happen anyway are
retried (the transaction was rolled back, so running it again is safe).

PostgreSQL's hot paths (push, reserve, ack, ack + reserve) are the statements at the bottom: ``$n``
parameters, prepared once per connection, several sent in one round trip. A counter row is updated by
at most one CTE per statement (two updates of one row in one statement would lose one). Rows are
updated by ``id = (subquery)`` / ``id = ANY(ARRAY(subquery))``, never by a join: the planner cannot
estimate ``due_at <= now()`` and would otherwise hash-join the whole table on every reserve.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Columns of a job row as the driver reads it (``db._failed`` and ``reclaim_expired`` index them).
JOB_COLUMNS = (
    "id, state, payload, attempt, ttr, priority, pushed_at, due_at, deadline, expires_at,"
    " error_class, error_message, error_traceback, error_code, lease, retry_delay,"
    " holder, cancel_reason, progress, progress_message"
)
#: Not while the queue is paused: the reserve statement reads the flag itself (spec §7.3). One
#: parameter, the channel.
NOT_PAUSED = "NOT EXISTS (SELECT 1 FROM {Q} WHERE channel = ? AND paused = 1)"

NOW_SQL = {
    # SQLite is local: its clock is this host's, through a function registered on each connection.
    "sqlite": "pubq_now()",
    "postgres": "extract(epoch FROM now())::float8",  # the transaction's start: one "now" per step
    "mysql": "UNIX_TIMESTAMP(NOW(6))",
}

#: Due delayed jobs promoted to waiting per reserve (the rest on the next one).
PROMOTE_BATCH = 1000


@dataclass(frozen=True)
class PgStatement:
    """One PostgreSQL statement with ``$n`` parameters of the given types."""

    sql: str
    types: tuple[str, ...]


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
)

#: $1 notification channel.
PG_NOTIFY = PgStatement("SELECT pg_notify($1, '')", ("text",))

#: Due delayed jobs become waiting. $1 channel, $2 shard.
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
)

_ACK = """
WITH a AS (DELETE FROM {J} WHERE id = $3 AND channel = $1 AND state = 'reserved' AND lease = $4 RETURNING 1),
c AS (UPDATE {C} SET done = done + 1, n_reserved = n_reserved - 1
      WHERE channel = $1 AND shard = $2 AND EXISTS (SELECT 1 FROM a))
"""
_ACK_TYPES = ("varchar", "int", "bigint", "bigint")

#: $1 channel, $2 shard, $3 job id, $4 lease token → 1 if acked, else 0.
PG_ACK = PgStatement(_ACK + "SELECT count(*) FROM a", _ACK_TYPES)
#: The same, the outcome kept in a transaction-local setting for the reserve that follows.
PG_ACK_KEEP = PgStatement(
    _ACK + "SELECT set_config('pubq.acked', (SELECT count(*) FROM a)::text, true)", _ACK_TYPES
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
                                   - {_PG_NOW} END
FROM (SELECT 1) AS one LEFT JOIN r ON true"""

#: Take the first waiting job; with none, the seconds until the next delayed one is due.
#: $1 channel, $2 shard, $3 grace, $4 holder. Row: id, payload, attempt, ttr, deadline, lease, priority, pushed_at,
#: due_in.
PG_RESERVE = PgStatement(_RESERVE.replace("ACKED ", ""), ("varchar", "int", "float8", "varchar"))
#: The same row after a leading "acked" column (0/1) read from PG_ACK_KEEP's setting.
PG_RESERVE_ACKED = PgStatement(
    _RESERVE.replace("ACKED ", "current_setting('pubq.acked')::int,"), ("varchar", "int", "float8", "varchar")
)

#: Take up to $5 waiting jobs in run order (a worker's free slots), each as PG_RESERVE takes one.
#: $1 channel, $2 shard, $3 grace, $4 holder, $5 n. Rows: id, payload, attempt, ttr, deadline, lease,
#: priority, pushed_at; none when nothing is due.
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
)

#: Ack many reservations at once. $1 channel, $2 shard, $3 ids, $4 lease tokens → the ids acked.
PG_ACK_MANY = PgStatement(
    """
WITH a AS (DELETE FROM {J} WHERE channel = $1 AND state = 'reserved'
           AND (id, lease) IN (SELECT * FROM unnest($3::bigint[], $4::bigint[])) RETURNING id),
n AS (SELECT count(*) AS k FROM a),
c AS (UPDATE {C} SET done = done + n.k, n_reserved = n_reserved - n.k FROM n
      WHERE channel = $1 AND shard = $2 AND n.k > 0)
SELECT id FROM a""",
    ("varchar", "int", "bigint[]", "bigint[]"),
)
