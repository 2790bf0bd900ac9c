"""The ``db`` driver's statements of inspection and maintenance: one job's state, removal, clear, the
failed registry's pages and requeue, and the follow-up failure records (:mod:`pubq.drivers.db_inspect`).

Templates and tokens as in :mod:`pubq.drivers.db_sql`.
"""

from __future__ import annotations

from pubq.drivers.db_sql import (
    JOB_COLUMNS,
    Statement,
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
