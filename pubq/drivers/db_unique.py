"""Unique keys and marks of the ``db`` driver (:mod:`pubq.drivers.db`); mixed into DbDriver.

A unique push is one transaction that locks the key's row (``SELECT … FOR UPDATE``; SQLite's
``BEGIN IMMEDIATE`` serializes writers anyway), reads its holder's state and inserts the job only
when the key is free. The row exists before that transaction: a missing one is first inserted on
its own (``INSERT … ON CONFLICT DO NOTHING`` / ``INSERT IGNORE``), so racing pushers all end up
queueing on one row lock instead of racing inserts into a unique index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import DEFAULT_PRIORITY, UniqueSpec
from .unique import (
    DELAYED,
    GONE,
    RECHECK,
    RESERVED,
    UNSETTLED,
    WAITING,
    UniqueRecord,
    check_spec,
    expiry,
    holds,
    next_check,
)

#: A unique push runs the sweep of released records once per this many calls (per driver object).
SWEEP_EVERY = 32
_INSERT_IGNORE = {
    "sqlite": ("INSERT OR IGNORE INTO", ""),
    "mysql": ("INSERT IGNORE INTO", ""),
    "postgres": ("INSERT INTO", " ON CONFLICT DO NOTHING"),
}
_MARK_UPSERT = {
    "sqlite": " ON CONFLICT (channel, name) DO UPDATE SET value = max(value, excluded.value)",
    "postgres": " ON CONFLICT (channel, name) DO UPDATE SET value = GREATEST({M}.value, excluded.value)",
    "mysql": " ON DUPLICATE KEY UPDATE value = GREATEST(value, VALUES(value))",
}
#: Released records: expired, or whose job no longer is in a state their mode holds (see unique.holds).
_SWEEP_SQL = (
    "DELETE FROM {U} WHERE channel = ? AND job_id <> 0 AND check_at <= ? AND ("
    "(expires_at IS NOT NULL AND expires_at <= ?) OR (mode <> 'ttl' AND NOT EXISTS ("
    "SELECT 1 FROM {J} WHERE {J}.id = {U}.job_id AND {J}.channel = ? AND ("
    "({U}.mode = 'done' AND ({J}.state <> 'failed' OR {J}.expires_at IS NOT NULL))"
    " OR ({U}.mode = 'start' AND {J}.state IN ('waiting', 'delayed') AND {J}.attempt = 0)))))"
)
#: ... and the held ones left due are looked at again later.
_BUMP_SQL = (
    "UPDATE {U} SET check_at = CASE WHEN expires_at IS NOT NULL AND expires_at < ? THEN expires_at ELSE ? END"
    " WHERE channel = ? AND job_id <> 0 AND check_at <= ?"
)


class DbUniqueOps:
    """``push_unique``, ``mark_get``, ``mark_advance`` (see the module docstring)."""

    channel: str
    kind: str
    _dialect: Any

    # provided by DbConnection / DbDriver
    def _write(self, fn: Any) -> Any: ...  # pragma: no cover
    def _read(self, sql: str, params: Sequence[Any] = (), *, many: bool = False) -> Any: ...  # pragma: no cover
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int: ...  # pragma: no cover
    def _cursor(self) -> Any: ...  # pragma: no cover
    def _notify(self, tx: Any) -> None: ...  # pragma: no cover

    _unique_calls = 0

    def push_unique(
        self, payload: bytes, *, ttr: int, unique: UniqueSpec, delay: float = 0, priority: int = DEFAULT_PRIORITY,
    ) -> tuple[int, bool]:
        check_spec(unique)
        self._cursor()  # connect and detect the dialect before choosing the SQL
        row = (bytes(payload), int(ttr), float(delay), int(priority))
        head, tail = _INSERT_IGNORE[self.kind]
        for _ in range(10):
            if self._read("SELECT 1 FROM {U} WHERE channel = ? AND ukey = ?", (self.channel, unique.key)) is None:
                self._exec(f"{head} {{U}} (channel, ukey, job_id, mode, check_at) VALUES (?, ?, 0, 'done', 0){tail}",
                           (self.channel, unique.key))
            result = self._write(lambda tx: self._push_unique_tx(tx, row, unique))
            if result is not None:
                break
        else:  # the row kept vanishing under a sweep: cannot happen more than once in practice
            raise RuntimeError(f"unique key {unique.key!r}: its row could not be locked")
        self._unique_calls += 1
        if self._unique_calls % SWEEP_EVERY == 1:
            self._sweep_unique()
        return result

    def _push_unique_tx(self, tx: Any, row: tuple[bytes, int, float, int], unique: UniqueSpec) -> tuple[int, bool] | None:
        ch, now = self.channel, tx.now
        found = tx.one("SELECT job_id, mode, expires_at FROM {U} WHERE channel = ? AND ukey = ?{LOCK}",
                       (ch, unique.key))
        if found is None:
            return None  # swept between the two steps: make it again
        if int(found[0]) != 0:
            record = UniqueRecord(int(found[0]), str(found[1]), None if found[2] is None else float(found[2]))
            job = tx.one("SELECT state, attempt, expires_at FROM {J} WHERE id = ? AND channel = ?", (record.job_id, ch))
            if holds(record, *_state(job), now):
                return record.job_id, False
        payload, ttr, delay, priority = row
        state = "delayed" if delay > 0 else "waiting"
        values = (ch, state, payload, ttr, priority, 0, now, now + delay)
        sql = "INSERT INTO {J} (channel, state, payload, ttr, priority, attempt, pushed_at, due_at)" \
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        if self._dialect is not None and self._dialect.insert_returning:
            job_id = int(tx.one(sql + " RETURNING id", values)[0])
        else:
            job_id = int(tx.x(sql, values).lastrowid)
        tx.add(**{state: 1})
        record = UniqueRecord(job_id, unique.until, expiry(unique, now))
        tx.x("UPDATE {U} SET job_id = ?, mode = ?, expires_at = ?, check_at = ? WHERE channel = ? AND ukey = ?",
             (job_id, record.until, record.expires_at, next_check(record, now), ch, unique.key))
        self._notify(tx)
        return job_id, True

    def _sweep_unique(self) -> None:
        """Drop released records due for a look; look at the held ones again later. Best effort."""
        now = float(self._read("SELECT {NOW}")[0])
        ch = self.channel
        self._exec(_SWEEP_SQL, (ch, now, now, ch))
        self._exec(_BUMP_SQL, (now + RECHECK, now + RECHECK, ch, now))

    def mark_get(self, name: str) -> float | None:
        row = self._read("SELECT value FROM {M} WHERE channel = ? AND name = ?", (self.channel, name))
        return None if row is None else float(row[0])

    def mark_advance(self, name: str, value: float) -> float:
        def tx_fn(tx: Any) -> float:
            tx.x("INSERT INTO {M} (channel, name, value) VALUES (?, ?, ?)" + _MARK_UPSERT[self.kind],
                 (self.channel, name, float(value)))
            return float(tx.one("SELECT value FROM {M} WHERE channel = ? AND name = ?", (self.channel, name))[0])

        return self._write(tx_fn)


def _state(job: Sequence[Any] | None) -> tuple[str, int]:
    """(state, attempt) of a jobs row as the release rules see it."""
    if job is None:
        return GONE, 0
    state, attempt, expires_at = str(job[0]), int(job[1] or 0), job[2]
    if state == "failed":
        return (UNSETTLED if expires_at is not None else GONE), attempt
    return {"waiting": WAITING, "delayed": DELAYED, "reserved": RESERVED}.get(state, RESERVED), attempt
