"""The publish-state database: opened by :mod:`pubq.database` (as the queue driver's is), and units of
work run with bounded retries.

SQLite transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead
of failing on a lock upgrade; MySQL/MariaDB sessions use READ COMMITTED so a guarded ``UPDATE``
followed by a re-read sees the current row (as on PostgreSQL). Both come with the connection.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import peewee as pw

from ..database import drop_connection, open_database, redact_url
from ..db_errors import ErrorKind, classify
from ..db_fork import forget_connection
from ..errors import DriverError

__all__ = ["forget_connection", "open_database", "redact_url", "run_in_transaction"]

log = logging.getLogger("pubq.publishing")
T = TypeVar("T")

#: Errors after which the whole unit of work runs again: the server rolled it back, or the connection
#: was lost (the unit is dropped with the connection and re-run on a new one).
_TRANSIENT = (ErrorKind.RETRY, ErrorKind.LOST)


def run_in_transaction(db: pw.Database, fn: Callable[[], T], *, attempts: int = 6) -> T:
    """Run ``fn`` in one transaction; retry the whole unit on deadlocks, lock timeouts and lost
    connections. Inside an outer transaction it is just a savepoint (no retry: the outer one owns it)."""
    if db.transaction_depth() > 0:
        with db.atomic():
            return fn()
    for attempt in range(1, attempts + 1):
        try:
            with db.atomic():
                return fn()
        except Exception as exc:
            kind = classify(exc)
            if kind not in _TRANSIENT or attempt == attempts:
                if isinstance(exc, (pw.OperationalError, pw.InterfaceError)):
                    raise DriverError(f"publish-state database: {exc}") from exc
                raise
            log.warning("publish-state transaction retried (%s/%s): %s", attempt, attempts - 1, exc)
            if kind is ErrorKind.LOST:
                drop_connection(db)
            time.sleep(min(0.05 * 2 ** attempt, 1.0) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover
