"""Open the publish-state database from a URL, and run units of work with bounded retries.

SQLite transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout
instead of failing on a lock upgrade; MySQL/MariaDB sessions use READ COMMITTED so a guarded
``UPDATE`` followed by a re-read sees the current row (as on PostgreSQL).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee as pw

from ..errors import ConfigError, DriverError

log = logging.getLogger("pubq.publishing")
T = TypeVar("T")

#: Fragments of driver messages that mean "run the transaction again".
_TRANSIENT = ("deadlock", "database is locked", "could not serialize", "lock wait timeout",
              "server has gone away", "lost connection", "server closed the connection",
              "connection already closed", "terminating connection")


def open_database(url: str, base_dir: Path | None = None) -> pw.Database:
    """``sqlite:///rel.db`` (relative to ``base_dir``), ``sqlite:////abs.db``, ``postgresql://…``,
    ``mysql://…``. Nothing connects until first use."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query))
    if scheme == "sqlite":
        raw = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if parts.netloc:
            raw = unquote(parts.netloc) + "/" + raw
        if raw in ("", ":memory:"):
            path = ":memory:"
        else:
            p = Path(raw)
            if not p.is_absolute():
                p = Path(base_dir or ".") / p
            p.parent.mkdir(parents=True, exist_ok=True)
            path = str(p)
        return pw.SqliteDatabase(
            path,
            timeout=float(options.get("timeout", 30)),
            lock_type="IMMEDIATE",
            pragmas={"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1,
                     "synchronous": "normal"},
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ConfigError(f"database: URL {redact_url(url)} names no database")
    common = {"host": parts.hostname or "127.0.0.1", "user": unquote(parts.username or "") or None}
    if parts.password:
        common["password"] = unquote(parts.password)
    if scheme in ("postgres", "postgresql"):
        common["port"] = parts.port or 5432
        return pw.PostgresqlDatabase(name, **common, **options)
    if scheme in ("mysql", "mariadb"):
        common["port"] = parts.port or 3306
        return pw.MySQLDatabase(
            name, charset="utf8mb4", **common,
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", **options,
        )
    raise ConfigError(f"database: unsupported URL scheme {scheme!r} (sqlite, postgresql, mysql)")


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def is_transient(error: BaseException) -> bool:
    if not isinstance(error, (pw.OperationalError, pw.InterfaceError)):
        return False
    text = str(error).lower()
    return isinstance(error, pw.InterfaceError) or any(frag in text for frag in _TRANSIENT)


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
        except (pw.OperationalError, pw.InterfaceError) as exc:
            if not is_transient(exc) or attempt == attempts:
                raise DriverError(f"publish-state database: {exc}") from exc
            log.warning("publish-state transaction retried (%s/%s): %s", attempt, attempts - 1, exc)
            if not db.is_closed() and not _alive(db):
                db.close()
            time.sleep(min(0.05 * 2 ** attempt, 1.0) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


def _alive(db: pw.Database) -> bool:
    try:
        db.execute_sql("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means the connection is unusable
        return False


#: Connections abandoned in a forked child; kept referenced so they are never finalized there
#: (finalizing would send a goodbye on the parent's socket and end the parent's session).
_ORPHANED: list[object] = []


def forget_connection(db: pw.Database) -> None:
    """In a forked child: drop the inherited connection state without closing it."""
    state = db._state
    if state.conn is not None:
        _ORPHANED.append(state.conn)
    state.reset()
