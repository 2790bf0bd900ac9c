"""The SQL driver's batch steps: ``reserve_many`` and ``ack_and_reserve_many`` (a concurrent worker).

PostgreSQL takes the whole batch with one ``UPDATE … WHERE id = ANY(ARRAY(SELECT … LIMIT n FOR
UPDATE SKIP LOCKED))`` behind the promotion of due jobs, in one round trip, and acks a batch with one
``DELETE … WHERE (id, lease) IN unnest(…)``. SQLite and MySQL run the acks and ``n`` single reserve
steps in one transaction. A blocking wait reuses ``reserve`` (LISTEN/NOTIFY or polling), then fills the
other slots without waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Reservation
from .db_conn import Tx
from .db_sql import PG_ACK_MANY, PG_PROMOTE, PG_RESERVE_MANY


class DbBatch:
    """Mixed into :class:`~pubq.drivers.db.DbDriver`; uses its connection and single steps."""

    channel: str

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "") -> list[Reservation]:
        if n < 1:
            return []
        found = self._take_many(n, holder)
        if found:
            return found
        # Nothing due now: wait (or look past rows locked by a sibling's scan) like reserve, then fill.
        first = self.reserve(timeout, holder=holder)  # type: ignore[attr-defined]
        if first is None:
            return []
        return [first, *(self._take_many(n - 1, holder) if n > 1 else [])]

    def ack_and_reserve_many(self, acks: Sequence[Reservation], n: int, *,
                             holder: str = "") -> tuple[list[bool], list[Reservation]]:
        self._cursor()  # type: ignore[attr-defined]
        if self._pg_fast:  # type: ignore[attr-defined]
            flags = self._pg_ack_many(acks)
            return flags, self._take_many(n, holder)

        def fn(tx: Tx) -> tuple[list[bool], list[Reservation]]:
            flags = [self._ack_tx(tx, r) for r in acks]  # type: ignore[attr-defined]
            return flags, self._take_tx(tx, n, holder)

        return self._write(fn)  # type: ignore[attr-defined,no-any-return]

    def _take_many(self, n: int, holder: str) -> list[Reservation]:
        if n < 1:
            return []
        self._cursor()  # type: ignore[attr-defined]
        if self._pg_fast:  # type: ignore[attr-defined]
            ch, shard = self.channel, self._shard  # type: ignore[attr-defined]
            grace = float(self.policy.grace)  # type: ignore[attr-defined]
            rows = self._pg((PG_PROMOTE, (ch, shard)),  # type: ignore[attr-defined]
                            (PG_RESERVE_MANY, (ch, shard, grace, holder or None, int(n))))
            return [_reservation(row) for row in rows]
        return self._write(lambda tx: self._take_tx(tx, n, holder))  # type: ignore[attr-defined,no-any-return]

    def _take_tx(self, tx: Tx, n: int, holder: str) -> list[Reservation]:
        grace = float(self.policy.grace)  # type: ignore[attr-defined]
        out: list[Reservation] = []
        while len(out) < n:
            r, _ = self._reserve_tx(tx, grace, holder)  # type: ignore[attr-defined]
            if r is None:
                break
            out.append(r)
        return out

    def _pg_ack_many(self, acks: Sequence[Reservation]) -> list[bool]:
        if not acks:
            return []
        ids = [r.job_id for r in acks]
        tokens = [r.token for r in acks]
        rows = self._pg((PG_ACK_MANY, (self.channel, self._shard, ids, tokens)))  # type: ignore[attr-defined]
        acked = {row[0] for row in rows}
        return [r.job_id in acked for r in acks]


def _reservation(row: Sequence[Any]) -> Reservation:
    job_id, payload, attempt, ttr, deadline, lease, priority, pushed_at = row
    if isinstance(payload, str):
        data = payload.encode("utf-8", "surrogateescape")
    else:
        data = b"" if payload is None else bytes(payload)
    return Reservation(job_id, data, attempt, ttr, float(deadline), int(lease), priority, float(pushed_at))
