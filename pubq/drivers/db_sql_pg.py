"""The ``db`` driver's PostgreSQL hot paths: push, promote, reserve, ack, ack + reserve and their batch
forms as ``$n`` statements prepared once per connection, several sent in one round trip (see
"PostgreSQL's hot paths" in :mod:`pubq.drivers.db_sql`).
"""

from __future__ import annotations

from pubq.drivers.db_sql import (
    PROMOTE_BATCH,
    PgStatement,
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
