"""The publish-state database of one process: its connection, the models bound to it, transactions.

Every other part of the package reaches the database through a :class:`PublishStore`, so the way a
database is opened and a unit of work is retried lives in one place (:mod:`.database`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw

from .database import forget_connection, open_database, run_in_transaction
from .migrations import migrate
from .models import Models, build_models

T = TypeVar("T")


class PublishStore:
    def __init__(self, database: str | pw.Database, table_prefix: str, *, base_dir: Path | None = None) -> None:
        self.db: pw.Database = open_database(database, base_dir) if isinstance(database, str) else database
        self.models: Models = build_models(self.db, table_prefix)

    def tx(self, unit: Callable[[], T]) -> T:
        """Run ``unit`` in one transaction (retried whole on deadlocks and lost connections), or in a
        savepoint when a transaction is already open."""
        return run_in_transaction(self.db, unit)

    def locking(self, query: Any) -> Any:
        """``query`` with ``FOR UPDATE`` where the database has it (SQLite locks the whole file)."""
        return query.for_update() if self.db.for_update else query

    def migrate(self) -> list[int]:
        """Create or upgrade this prefix's tables (idempotent); returns the versions applied now."""
        return migrate(self.models)

    def forget_inherited_connection(self) -> None:
        """In a forked child: drop the parent's connection without closing it; the next use opens one."""
        forget_connection(self.db)

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
