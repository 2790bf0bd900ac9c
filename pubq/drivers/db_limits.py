"""Per-key limits of the ``db`` driver (a mixin of :class:`pubq.drivers.db.DbDriver`).

Each limit key of a channel is one row of ``<prefix>limits`` holding the key's state as JSON
(:class:`pubq.drivers.limiter.KeyState`). An admission is one transaction: lock the key's row
(``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` is already exclusive), read which of its slots' jobs
are still reserved under their lease, apply the rule, and either record the slot or move the job
back to delayed with a guarded UPDATE — so two workers never both take a key's last slot.

Rows of idle keys (:func:`pubq.drivers.limiter.idle`) are deleted by a sweep that every
``SWEEP_EVERY``-th admission or release of a driver object runs: it looks at the next
``SWEEP_BATCH`` rows of the channel (a cursor over the keys, wrapping around), so one call does
bounded work and every row is looked at over time. A row is deleted only if its state is still
the one judged idle (``WHERE state = ?``): an admission that locked it meanwhile wins.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pubq.drivers import db_sql_keys as keys_sql
from pubq.drivers.limiter import KeyState, admit, idle, release
from pubq.drivers.records import Reservation

if TYPE_CHECKING:
    from pubq.drivers.db_conn import DbConnection, Tx

log = logging.getLogger("pubq.drivers")

#: Every this many limit calls of a driver object, one sweep of idle rows ...
SWEEP_EVERY = 64
#: ... looking at this many rows.
SWEEP_BATCH = 50


class DbLimits:
    """``limit_acquire``, ``limit_release``, ``sweep_limits`` (see the module docstring)."""

    channel: str
    conn: DbConnection
    _limit_calls = 0
    _sweep_after = ""

    # provided by DbDriver
    def _notify(self, tx: Tx) -> None: ...  # pragma: no cover

    def _count_limit_call(self) -> None:
        self._limit_calls += 1
        if self._limit_calls % SWEEP_EVERY == 0:
            try:
                self.sweep_limits()
            except Exception:  # noqa: BLE001 - best effort: the rows are looked at again later
                log.debug("sweep of idle limit keys failed; tried again later", exc_info=True)

    def sweep_limits(self, batch: int = SWEEP_BATCH) -> int:
        """Delete the idle keys' rows among the next ``batch`` of this channel; returns how many."""
        def fn(tx: Tx) -> int:
            rows = tx.fetch_all(keys_sql.LIMIT_KEYS_AFTER, (self.channel, self._sweep_after, int(batch)))
            self._sweep_after = str(rows[-1]["lkey"]) if len(rows) >= batch else ""
            states = [(str(row["lkey"]), row["state"], KeyState.loads(row["state"])) for row in rows]
            ids = sorted({s[0] for _, _, st in states for s in st.slots} | {w for _, _, st in states for w in st.waiters})
            jobs = {int(row["id"]): (str(row["state"]), int(row["lease"])) for row in tx.fetch_all(
                keys_sql.JOBS_STATE_AND_LEASE, (self.channel,), ids)} if ids else {}  # fmt: skip
            deleted = 0
            for key, text, state in states:
                if idle(state, tx.now, live=lambda i, t: jobs.get(i) == ("reserved", t),
                                is_delayed=lambda i: jobs.get(i, ("", 0))[0] == "delayed"):
                    deleted += tx.execute(keys_sql.DELETE_IDLE_LIMIT_KEY, (self.channel, key, text)).rowcount
            return deleted

        return self.conn.transaction(fn)

    def _locked_key(self, tx: Tx, key: str) -> KeyState:
        """The key's state, its row locked for the transaction (created on first use)."""
        row = tx.fetch_one(keys_sql.LOCK_LIMIT_KEY, (self.channel, key))
        if row is None:
            tx.execute(keys_sql.ENSURE_LIMIT_KEY[self.conn.kind], (self.channel, key))
            row = tx.fetch_one(keys_sql.LOCK_LIMIT_KEY, (self.channel, key))
        return KeyState.loads(row["state"] if row is not None else None)

    def _save_key(self, tx: Tx, key: str, state: KeyState) -> None:
        tx.execute(keys_sql.SAVE_LIMIT_KEY, (state.dumps(), self.channel, key))

    def limit_acquire(self, r: Reservation, key: str, *, concurrency: int = 0, rate: int = 0, per: float = 1.0,
                      jitter: float = 0.0, burst: int = 0) -> float | None:
        pending: list[str] = []

        def fn(tx: Tx) -> float | None:
            pending.clear()
            held = tx.fetch_one(keys_sql.HELD_CANCEL_REASON, (r.job_id, self.channel, r.token))
            if held is None:
                return None
            state = self._locked_key(tx, key)
            ids = sorted({s[0] for s in state.slots if s[0] != r.job_id})
            leases = {int(row["id"]): int(row["lease"]) for row in tx.fetch_all(
                keys_sql.RESERVED_LEASES, (self.channel,), ids)} if ids else {}  # fmt: skip
            wait = admit(state, job_id=r.job_id, token=r.token, now=tx.now, concurrency=concurrency, rate=rate,
                         per=per, live=lambda job_id, token: leases.get(job_id) == token, burst=burst)
            if wait > 0:
                wait += max(float(jitter), 0.0)
                n = tx.execute(keys_sql.DELAY_FOR_LIMIT, (tx.now + wait, r.job_id, self.channel, r.token)).rowcount
                if n != 1:
                    return None
                if held["cancel_reason"] is not None:
                    pending.append(str(held["cancel_reason"]))
                tx.count(reserved=-1, delayed=1, limited=1)
                self._notify(tx)
            self._save_key(tx, key, state)
            return wait

        self._count_limit_call()
        wait = self.conn.transaction(fn)
        if pending:  # a cancel requested before the refusal is not dropped: the delayed job is cancelled
            self.cancel(r.job_id, pending[0])  # type: ignore[attr-defined]
        return wait

    def limit_release(self, r: Reservation, key: str) -> None:
        def fn(tx: Tx) -> None:
            row = tx.fetch_one(keys_sql.LOCK_LIMIT_KEY, (self.channel, key))
            if row is None:
                return
            state = KeyState.loads(row["state"])

            def is_delayed(job_id: int) -> bool:
                found = tx.fetch_one(keys_sql.JOB_STATE, (job_id, self.channel))
                return found is not None and found["state"] == "delayed"

            first = release(state, job_id=r.job_id, is_delayed=is_delayed)
            if first is not None:
                n = tx.execute(keys_sql.WAKE_DELAYED, (tx.now, first, self.channel)).rowcount
                if n == 1:
                    tx.count(delayed=-1, waiting=1)
                    self._notify(tx)
            if state.empty and state.idle_at <= tx.now:  # nothing left to remember (the row is locked)
                tx.execute(keys_sql.DELETE_LIMIT_KEY, (self.channel, key))
            else:
                self._save_key(tx, key, state)

        self._count_limit_call()
        self.conn.transaction(fn)
