"""Versioned, idempotent schema migrations for publish state.

Each migration runs once per database and table prefix; the applied versions are kept in
``<prefix>schema_version``. Migrations only add (tables, columns, indexes) — they never drop data.
Concurrent starters are safe: tables are created ``IF NOT EXISTS`` and the version row is inserted
with conflicts ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .models import Models, now_us

log = logging.getLogger("pubq.publishing")


def _v1_initial(models: Models) -> None:
    models.database.create_tables(models.all(), safe=True)


#: (version, name, function). Append only; never edit or remove an applied entry.
MIGRATIONS: list[tuple[int, str, Callable[[Models], None]]] = [
    (1, "initial schema", _v1_initial),
]

LATEST = MIGRATIONS[-1][0]


def applied_versions(models: Models) -> set[int]:
    if not models.database.table_exists(models.SchemaVersion._meta.table_name):
        return set()
    return {row.version for row in models.SchemaVersion.select(models.SchemaVersion.version)}


def migrate(models: Models) -> list[int]:
    """Apply every missing migration in order; return the versions applied now."""
    db = models.database
    db.create_tables([models.SchemaVersion], safe=True)
    done = applied_versions(models)
    applied = []
    for version, name, fn in MIGRATIONS:
        if version in done:
            continue
        fn(models)
        models.SchemaVersion.insert(version=version, name=name, applied_at=now_us()).on_conflict_ignore().execute()
        log.info("publish state: migration %s (%s) applied to %s*", version, name, models.prefix)
        applied.append(version)
    return applied


def drop_all(models: Models) -> None:
    """Drop this prefix's tables (tests only: they own a unique prefix)."""
    models.database.drop_tables(list(reversed(models.all())), safe=True)
