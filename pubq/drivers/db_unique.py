"""Unique keys and marks of the ``db`` driver (:mod:`pubq.drivers.db`); mixed into DbDriver.

A unique push is one transaction that locks the key's row (``SELECT … FOR UPDATE``; SQLite's
``BEGIN IMMEDIATE`` serializes writers anyway), reads its holder's state and inserts the job only
when the key is free. The row exists before that transaction: a missing one is first inserted on
its own (``INSERT … ON CONFLICT DO NOTHING`` / ``INSERT IGNORE``), so racing pushers all end up
queueing on one row lock instead of racing inserts into a unique index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pubq.drivers import db_sql as sql
from pubq.drivers import db_sql_keys as keys_sql
from pubq.drivers.records import DEFAULT_PRIORITY, UniqueSpec
from pubq.drivers.unique import (
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

if TYPE_CHECKING:
    from pubq.drivers.db_conn import DbConnection, Tx

#: A unique push runs the sweep of released records once per this many calls (per driver object).
SWEEP_EVERY = 32


class DbUniqueOps:
    """``push_unique``, ``mark_get``, ``mark_advance`` (see the module docstring)."""

    channel: str
    conn: DbConnection

    # provided by DbDriver
    def _notify(self, tx: Tx) -> None: ...  # pragma: no cover

    _unique_calls = 0

    def push_unique(
        self, payload: bytes, *, ttr: int, unique: UniqueSpec, delay: float = 0, priority: int = DEFAULT_PRIORITY,
    ) -> tuple[int, bool]:
        check_spec(unique)
        self.conn.cursor()  # connect and detect the dialect before choosing the SQL
        job = (bytes(payload), int(ttr), float(delay), int(priority))
        for _ in range(10):
            if self.conn.read(keys_sql.UNIQUE_ROW_EXISTS, (self.channel, unique.key)) is None:
                self.conn.execute(keys_sql.ENSURE_UNIQUE_ROW[self.conn.kind], (self.channel, unique.key))
            result = self.conn.transaction(lambda tx: self._push_unique_tx(tx, job, unique))
            if result is not None:
                break
        else:  # the row kept vanishing under a sweep: cannot happen more than once in practice
            raise RuntimeError(f"unique key {unique.key!r}: its row could not be locked")
        self._unique_calls += 1
        if self._unique_calls % SWEEP_EVERY == 1:
            self._sweep_unique()
        return result

    def _push_unique_tx(self, tx: Tx, job: tuple[bytes, int, float, int],
                        unique: UniqueSpec) -> tuple[int, bool] | None:
        ch, now = self.channel, tx.now
        found = tx.fetch_one(keys_sql.LOCK_UNIQUE_ROW, (ch, unique.key))
        if found is None:
            return None  # swept between the two steps: make it again
        if int(found["job_id"]) != 0:
            expires_at = found["expires_at"]
            record = UniqueRecord(int(found["job_id"]), str(found["mode"]),
                                  None if expires_at is None else float(expires_at))
            holder = tx.fetch_one(keys_sql.UNIQUE_HOLDER, (record.job_id, ch))
            if holds(record, *_state(holder), now):
                return record.job_id, False
        payload, ttr, delay, priority = job
        state = "delayed" if delay > 0 else "waiting"
        values = (ch, state, payload, ttr, priority, 0, now, now + delay)
        dialect = self.conn.dialect
        if dialect is not None and dialect.insert_returning:
            job_id = int(tx.fetch_one(keys_sql.INSERT_JOB_RETURNING, values)["id"])  # type: ignore[index]
        else:
            job_id = int(tx.execute(sql.INSERT_JOB, values).lastrowid)
        tx.count(**{state: 1})
        record = UniqueRecord(job_id, unique.until, expiry(unique, now))
        tx.execute(keys_sql.HOLD_UNIQUE_KEY,
                   (job_id, record.until, record.expires_at, next_check(record, now), ch, unique.key))
        self._notify(tx)
        return job_id, True

    def _sweep_unique(self) -> None:
        """Drop released records due for a look; look at the held ones again later. Best effort."""
        now = float(self.conn.read(sql.NOW)["db_now"])  # type: ignore[index]
        ch = self.channel
        self.conn.execute(keys_sql.SWEEP_UNIQUE, (ch, now, now, ch))
        self.conn.execute(keys_sql.RECHECK_UNIQUE, (now + RECHECK, now + RECHECK, ch, now))

    def mark_get(self, name: str) -> float | None:
        row = self.conn.read(keys_sql.MARK, (self.channel, name))
        return None if row is None else float(row["value"])

    def mark_advance(self, name: str, value: float) -> float:
        def fn(tx: Tx) -> float:
            tx.execute(keys_sql.ADVANCE_MARK[self.conn.kind], (self.channel, name, float(value)))
            return float(tx.fetch_one(keys_sql.MARK, (self.channel, name))["value"])  # type: ignore[index]

        return self.conn.transaction(fn)


def _state(job: Mapping[str, Any] | None) -> tuple[str, int]:
    """(state, attempt) of a jobs row as the release rules see it."""
    if job is None:
        return GONE, 0
    state, attempt, expires_at = str(job["state"]), int(job["attempt"] or 0), job["expires_at"]
    if state == "failed":
        return (UNSETTLED if expires_at is not None else GONE), attempt
    return {"waiting": WAITING, "delayed": DELAYED, "reserved": RESERVED}.get(state, RESERVED), attempt
