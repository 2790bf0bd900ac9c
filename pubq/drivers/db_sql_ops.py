"""The ``db`` driver's statements of operations: keyset listing, pause, cancel, progress, the worker
registry and per-minute throughput (:mod:`pubq.drivers.db_ops`).

Templates and tokens as in :mod:`pubq.drivers.db_sql`.
"""

from __future__ import annotations

from pubq.drivers.db_sql import (
    DIALECTS,
    HELD,
    JOB_COLUMNS,
    Statement,
    upsert,
)
from pubq.drivers.records import JobStatus

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
    kind: Statement(upsert(kind, "{Q}", "channel", ("channel", "paused", "paused_at"), ("?", "1", "{NOW}")),
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
        upsert(kind, "{W}", "id", ("id", "channel", "last_seen", "expires_at", "info"),
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
