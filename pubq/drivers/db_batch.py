"""The SQL driver's batch steps: ``reserve_many`` and ``ack_and_reserve_many`` (a concurrent worker).

PostgreSQL takes the whole batch with one ``UPDATE … WHERE id = ANY(ARRAY(SELECT … LIMIT n FOR
UPDATE SKIP LOCKED))`` behind the promotion of due jobs, in one round trip, and acks a batch with one
``DELETE … WHERE (id, lease) IN unnest(…)``. SQLite and MySQL run the acks and ``n`` single reserve
steps in one transaction. A blocking wait reuses ``reserve`` (LISTEN/NOTIFY or polling), then fills the
other slots without waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pubq.drivers import db_sql_pg as pg_sql
from pubq.drivers.db_rows import reservation
from pubq.drivers.records import Policy, Reservation

if TYPE_CHECKING:
    from pubq.drivers.db_conn import DbConnection, Tx


class DbBatch:
    """Mixed into :class:`~pubq.drivers.db.DbDriver`; uses its connection and single steps."""

    channel: str
    policy: Policy
    conn: DbConnection

    # provided by DbDriver
    def reserve(self, timeout: float = 0, *, holder: str = "") -> Reservation | None: ...  # pragma: no cover
    def _ack_tx(self, tx: Tx, r: Reservation) -> bool: ...  # pragma: no cover
    def _reserve_tx(self, tx: Tx, grace: float,
                    holder: str = "") -> tuple[Reservation | None, float | None]: ...  # pragma: no cover

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "") -> list[Reservation]:
        if n < 1:
            return []
        found = self._take_many(n, holder)
        if found:
            return found
        # Nothing due now: wait (or look past rows locked by a sibling's scan) like reserve, then fill.
        first = self.reserve(timeout, holder=holder)
        if first is None:
            return []
        return [first, *(self._take_many(n - 1, holder) if n > 1 else [])]

    def ack_and_reserve_many(self, acks: Sequence[Reservation], n: int, *,
                             holder: str = "") -> tuple[list[bool], list[Reservation]]:
        self.conn.cursor()
        if self.conn.pg_round_trips:
            flags = self._pg_ack_many(acks)
            return flags, self._take_many(n, holder)

        def fn(tx: Tx) -> tuple[list[bool], list[Reservation]]:
            flags = [self._ack_tx(tx, r) for r in acks]
            return flags, self._take_tx(tx, n, holder)

        return self.conn.transaction(fn)

    def _take_many(self, n: int, holder: str) -> list[Reservation]:
        if n < 1:
            return []
        self.conn.cursor()
        if self.conn.pg_round_trips:
            ch, shard = self.channel, self.conn.counter_shard
            grace = float(self.policy.grace)
            rows = self.conn.pg_round_trip((pg_sql.PG_PROMOTE, (ch, shard)),
                                           (pg_sql.PG_RESERVE_MANY, (ch, shard, grace, holder or None, int(n))))
            return [reservation(row) for row in rows]
        return self.conn.transaction(lambda tx: self._take_tx(tx, n, holder))

    def _take_tx(self, tx: Tx, n: int, holder: str) -> list[Reservation]:
        grace = float(self.policy.grace)
        out: list[Reservation] = []
        while len(out) < n:
            r, _ = self._reserve_tx(tx, grace, holder)
            if r is None:
                break
            out.append(r)
        return out

    def _pg_ack_many(self, acks: Sequence[Reservation]) -> list[bool]:
        if not acks:
            return []
        ids = [r.job_id for r in acks]
        tokens = [r.token for r in acks]
        rows = self.conn.pg_round_trip((pg_sql.PG_ACK_MANY, (self.channel, self.conn.counter_shard, ids, tokens)))
        acked = {row["id"] for row in rows}
        return [r.job_id in acked for r in acks]
