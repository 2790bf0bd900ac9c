"""Per-key limits of the ``db`` driver (a mixin of :class:`pubq.drivers.db.DbDriver`).

Each limit key of a channel is one row of ``<prefix>limits`` holding the key's state as JSON
(:class:`pubq.drivers.limiter.KeyState`). An admission is one transaction: lock the key's row
(``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` is already exclusive), read which of its slots' jobs
are still reserved under their lease, apply the rule, and either record the slot or move the job
back to delayed with a guarded UPDATE — so two workers never both take a key's last slot.
"""

from __future__ import annotations

from typing import Any

from pubq.drivers.base import Reservation
from pubq.drivers.db_conn import Tx
from pubq.drivers.limiter import KeyState, admit, release

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
        def fn(tx: Tx) -> float | None:
            if tx.one(f"SELECT 1 FROM {{J}} WHERE {_HELD}", (r.job_id, self.channel, r.token)) is None:
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
                tx.add(reserved=-1, delayed=1, limited=1)
                self._notify(tx)
            self._save_key(tx, key, state)
            return wait

        return self._write(fn)

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
            self._save_key(tx, key, state)

        self._write(fn)
