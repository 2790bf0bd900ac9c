"""Every SQL statement of the ``db`` driver by name, across the modules that hold them.

The statements live by concern: :mod:`pubq.drivers.db_sql` (the shared pieces, the clock and counters,
push, reserve, settling writes, reclaim), :mod:`~pubq.drivers.db_sql_registry` (inspection and the
failed registry), :mod:`~pubq.drivers.db_sql_ops` (listing, pause, cancel, progress, workers,
throughput), :mod:`~pubq.drivers.db_sql_keys` (unique keys, marks, per-key limits) and
:mod:`~pubq.drivers.db_sql_pg` (PostgreSQL's hot paths). This index lets a check see all of them.
"""

from __future__ import annotations

from types import ModuleType

from pubq.drivers import db_sql, db_sql_keys, db_sql_ops, db_sql_pg, db_sql_registry
from pubq.drivers.db_sql import PgStatement, Statement

#: The modules holding the driver's statements.
MODULES: tuple[ModuleType, ...] = (db_sql, db_sql_registry, db_sql_ops, db_sql_keys, db_sql_pg)


def all_statements() -> dict[str, Statement | PgStatement]:
    """Every statement by name (``NAME`` or ``NAME[key]`` for per-dialect/per-state ones); a name is
    unique across :data:`MODULES`."""
    found: dict[str, Statement | PgStatement] = {}
    for name, value in ((n, v) for module in MODULES for n, v in vars(module).items()):
        if isinstance(value, Statement | PgStatement):
            found[name] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, Statement | PgStatement):
                    found[f"{name}[{getattr(key, 'value', key)}]"] = item
    return found
