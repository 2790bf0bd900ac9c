"""The ``db`` driver's statements of unique keys, marks (:mod:`pubq.drivers.db_unique`) and per-key
limits (:mod:`pubq.drivers.db_limits`).

Templates and tokens as in :mod:`pubq.drivers.db_sql`.
"""

from __future__ import annotations

from pubq.drivers.db_sql import (
    HELD,
    INSERT_JOBS_HEAD,
    ONE_JOB_ROW,
    Statement,
    ensure_row,
)

# -- unique keys and marks (db_unique) ----------------------------------------------------------------

UNIQUE_ROW_EXISTS = Statement(
    "SELECT 1 AS found FROM {U} WHERE channel = ? AND ukey = ?", "whether the key's row exists (a plain read)",
)
ENSURE_UNIQUE_ROW = ensure_row(
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
INSERT_JOB_RETURNING = Statement(INSERT_JOBS_HEAD + ONE_JOB_ROW + " RETURNING id", "one job stored; its id comes back")
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
ENSURE_LIMIT_KEY = ensure_row(
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
