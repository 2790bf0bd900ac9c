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
from typing import Any

from pubq.drivers.base import Reservation
from pubq.drivers.db_conn import Tx
from pubq.drivers.limiter import KeyState, admit, idle, release

log = logging.getLogger("pubq.drivers")

#: Every this many limit calls of a driver object, one sweep of idle rows ...
SWEEP_EVERY = 64
#: ... looking at this many rows.
SWEEP_BATCH = 50

#: The guard of a write on a held job (the same as db.HELD).
_HELD = "id = ? AND channel = ? AND state = 'reserved' AND lease = ?"
_INSERT_KEY = {
    "sqlite": "INSERT OR IGNORE INTO {L} (channel, lkey, state) VALUES (?, ?, '')",
    "mysql": "INSERT IGNORE INTO {L} (channel, lkey, state) VALUES (?, ?, '')",
    "postgres": "INSERT INTO {L} (channel, lkey, state) VALUES (?, ?, '') ON CONFLICT DO NOTHING",
}


class DbLimits:
    channel: str
    kind: str
    _write: Any
    _notify: Any
    _limit_calls = 0
    _sweep_after = ""

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
            rows = tx.all("SELECT lkey, state FROM {L} WHERE channel = ? AND lkey > ? ORDER BY lkey LIMIT ?",
                          (self.channel, self._sweep_after, int(batch)))
            self._sweep_after = str(rows[-1][0]) if len(rows) >= batch else ""
            states = [(str(k), text, KeyState.loads(text)) for k, text in rows]
            ids = sorted({s[0] for _, _, st in states for s in st.slots} | {w for _, _, st in states for w in st.waiters})
            jobs = {int(i): (str(state), int(lease)) for i, state, lease in tx.x(
                "SELECT id, state, lease FROM {J} WHERE channel = ? AND id IN ({IDS})", (self.channel,),
                ids).fetchall()} if ids else {}  # fmt: skip
            deleted = 0
            for key, text, state in states:
                if idle(state, tx.now, live=lambda i, t: jobs.get(i) == ("reserved", t),
                                is_delayed=lambda i: jobs.get(i, ("", 0))[0] == "delayed"):
                    deleted += tx.x("DELETE FROM {L} WHERE channel = ? AND lkey = ? AND state = ?",
                                    (self.channel, key, text)).rowcount
            return deleted

        return self._write(fn)

    def _locked_key(self, tx: Tx, key: str) -> KeyState:
        """The key's state, its row locked for the transaction (created on first use)."""
        sql = "SELECT state FROM {L} WHERE channel = ? AND lkey = ?{LOCK}"
        row = tx.one(sql, (self.channel, key))
        if row is None:
            tx.x(_INSERT_KEY[self.kind], (self.channel, key))
            row = tx.one(sql, (self.channel, key))
        return KeyState.loads(row[0] if row is not None else None)

    def _save_key(self, tx: Tx, key: str, state: KeyState) -> None:
        tx.x("UPDATE {L} SET state = ? WHERE channel = ? AND lkey = ?", (state.dumps(), self.channel, key))

    def limit_acquire(self, r: Reservation, key: str, *, concurrency: int = 0, rate: int = 0, per: float = 1.0,
                      jitter: float = 0.0, burst: int = 0) -> float | None:
        pending: list[str] = []

        def fn(tx: Tx) -> float | None:
            pending.clear()
            held = tx.one(f"SELECT cancel_reason FROM {{J}} WHERE {_HELD}", (r.job_id, self.channel, r.token))
            if held is None:
                return None
            state = self._locked_key(tx, key)
            ids = sorted({s[0] for s in state.slots if s[0] != r.job_id})
            leases = {int(i): int(lease) for i, lease in tx.x(
                "SELECT id, lease FROM {J} WHERE channel = ? AND state = 'reserved' AND id IN ({IDS})",
                (self.channel,), ids).fetchall()} if ids else {}  # fmt: skip
            wait = admit(state, job_id=r.job_id, token=r.token, now=tx.now, concurrency=concurrency, rate=rate,
                         per=per, live=lambda job_id, token: leases.get(job_id) == token, burst=burst)
            if wait > 0:
                wait += max(float(jitter), 0.0)
                n = tx.x(
                    "UPDATE {J} SET state = 'delayed', attempt = attempt - 1, due_at = ?, deadline = NULL,"
                    " expires_at = NULL, holder = NULL, progress = NULL, progress_message = NULL,"
                    f" cancel_reason = NULL WHERE {_HELD}",
                    (tx.now + wait, r.job_id, self.channel, r.token)).rowcount
                if n != 1:
                    return None
                if held[0] is not None:
                    pending.append(str(held[0]))
                tx.add(reserved=-1, delayed=1, limited=1)
                self._notify(tx)
            self._save_key(tx, key, state)
            return wait

        self._count_limit_call()
        wait = self._write(fn)
        if pending:  # a cancel requested before the refusal is not dropped: the delayed job is cancelled
            self.cancel(r.job_id, pending[0])  # type: ignore[attr-defined]
        return wait

    def limit_release(self, r: Reservation, key: str) -> None:
        def fn(tx: Tx) -> None:
            row = tx.one("SELECT state FROM {L} WHERE channel = ? AND lkey = ?{LOCK}", (self.channel, key))
            if row is None:
                return
            state = KeyState.loads(row[0])

            def is_delayed(job_id: int) -> bool:
                found = tx.one("SELECT state FROM {J} WHERE id = ? AND channel = ?", (job_id, self.channel))
                return found is not None and found[0] == "delayed"

            first = release(state, job_id=r.job_id, is_delayed=is_delayed)
            if first is not None:
                n = tx.x("UPDATE {J} SET state = 'waiting', due_at = ? WHERE id = ? AND channel = ?"
                         " AND state = 'delayed'", (tx.now, first, self.channel)).rowcount
                if n == 1:
                    tx.add(delayed=-1, waiting=1)
                    self._notify(tx)
            if state.empty and state.idle_at <= tx.now:  # nothing left to remember (the row is locked)
                tx.x("DELETE FROM {L} WHERE channel = ? AND lkey = ?", (self.channel, key))
            else:
                self._save_key(tx, key, state)

        self._count_limit_call()
        self._write(fn)
