"""One way to open, classify the errors of, and fork past every SQL database pubq uses.

Both users go through here: the ``db`` queue driver (``pubq.drivers.db_conn``) and publish state
(``pubq.publishing``). This module imports nothing else of pubq but :mod:`pubq.errors`, and Peewee
only when it builds a database, so the log setup can use :func:`redact_url` without loading a
database driver.

URLs (:func:`open_database` returns a Peewee database, not connected)::

    sqlite:///relative/file.db          relative to the base dir (the config file's folder, else the cwd)
    sqlite:////absolute/file.db
    sqlite:///:memory:
    postgresql://user:pw@host:port/db   also postgres://; a host list h1:p1,h2:p2; a socket dir as %2Fvar%2Frun…
    mysql://user:pw@host:port/db        also mariadb:// and mysql+pymysql://

A sqlite URL has no host: ``sqlite://file.db`` is refused, not read as a relative path. Query options,
one set per scheme (anything else is a :class:`~pubq.errors.ConfigError` naming the option)::

    sqlite      timeout          seconds a writer waits for the write lock (busy_timeout; default 30)
    postgresql  connect_timeout (default 10), application_name, options, target_session_attrs,
                sslmode, sslrootcert, sslcert, sslkey, sslcrl, keepalives, keepalives_idle,
                keepalives_interval, keepalives_count, tcp_user_timeout, passfile,
                host (a socket directory, when the URL names no host),
                pooler (pubq's own, not sent to the server: ``session``, ``transaction`` or ``none``,
                the PgBouncer-style pool in front of the server; see :data:`POOLERS`)
    mysql       connect_timeout (default 10), read_timeout, write_timeout, unix_socket,
                ssl_ca, ssl_cert, ssl_key, ssl_verify_cert, ssl_verify_identity, ssl_disabled

Every connection gets the same settings, whoever opened it:

* SQLite: ``journal_mode=wal`` (readers run beside the one writer), ``synchronous=normal`` (durable
  across process crashes; only an OS crash can lose the last commits), ``busy_timeout`` (writers queue
  instead of failing with "database is locked"), ``foreign_keys=on`` (publish state declares foreign
  keys; the queue tables declare none, so it changes nothing there), and ``BEGIN IMMEDIATE`` for
  Peewee's ``atomic()`` (a writer takes the lock at once instead of failing on a lock upgrade).
* MySQL/MariaDB: READ COMMITTED (locking reads take no gap locks, so reserve and push do not deadlock,
  and a guarded UPDATE followed by a re-read sees the current row, as on PostgreSQL) and ``utf8mb4``,
  both as connect parameters (``init_command``, ``charset``), so every connection Peewee or the driver
  opens has them before its first statement.
* PostgreSQL: the server's defaults (READ COMMITTED).

Errors are sorted by :mod:`pubq.db_errors` (:func:`~pubq.db_errors.classify` into
:class:`~pubq.db_errors.ErrorKind`); a forked child forgets its parent's connections through
:mod:`pubq.db_fork` (:func:`~pubq.db_fork.on_fork_in_child`, :func:`~pubq.db_fork.forget_connection`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from pubq.errors import ConfigError

if TYPE_CHECKING:
    import peewee as pw

#: Seconds a SQLite writer waits for the write lock, unless the URL says ``?timeout=``.
SQLITE_TIMEOUT = 30.0
#: Seconds to wait for a PostgreSQL/MySQL server to accept a connection, unless the URL says otherwise.
CONNECT_TIMEOUT = 10
#: Run by every MySQL/MariaDB connection before its first statement.
MYSQL_INIT_COMMAND = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
MYSQL_CHARSET = "utf8mb4"

#: URL scheme → kind of database.
SCHEMES = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+pymysql": "mysql",
}


def sqlite_pragmas(timeout: float = SQLITE_TIMEOUT) -> dict[str, Any]:
    """The pragmas every SQLite connection runs (see the module docstring for why each)."""
    return {
        "journal_mode": "wal",
        "synchronous": "normal",
        "busy_timeout": int(timeout * 1000),
        "foreign_keys": 1,
    }


# -- URL options ----------------------------------------------------------------------------------


def _text(value: str) -> str:
    return value


def _count(value: str) -> int:
    if not value.isdigit():
        raise ValueError("must be a whole number")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not 0 <= seconds < 1e6:
        raise ValueError("must be a number of seconds")
    return seconds


#: ``?pooler=`` values. ``transaction``: each transaction may run on another server session, so
#: nothing may outlive one (no prepared statements, no ``LISTEN``); ``session``/``none``: the client
#: keeps its server session, as when connected directly.
POOLERS = ("none", "session", "transaction")


def _pooler(value: str) -> str:
    lowered = value.lower()
    if lowered not in POOLERS:
        raise ValueError(f"must be one of {', '.join(POOLERS)}")
    return lowered


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


#: kind → option → parser of its value. What is listed here is passed on; anything else is refused.
OPTIONS: dict[str, dict[str, Callable[[str], Any]]] = {
    "sqlite": {"timeout": _seconds},
    "postgres": {
        **dict.fromkeys(
            ("application_name", "options", "target_session_attrs", "sslmode", "sslrootcert", "sslcert",
             "sslkey", "sslcrl", "passfile", "host"),
            _text,
        ),
        **dict.fromkeys(
            ("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
             "tcp_user_timeout"),
            _count,
        ),
        "pooler": _pooler,
    },
    "mysql": {
        **dict.fromkeys(("connect_timeout", "read_timeout", "write_timeout"), _count),
        **dict.fromkeys(("unix_socket", "ssl_ca", "ssl_cert", "ssl_key"), _text),
        **dict.fromkeys(("ssl_verify_cert", "ssl_verify_identity", "ssl_disabled"), _flag),
    },
}


# -- URL parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed database URL: what :func:`open_database` hands to Peewee."""

    kind: str  # "sqlite" | "postgres" | "mysql"
    #: SQLite: an absolute path or ":memory:"; PostgreSQL/MySQL: the database name.
    database: str
    #: Keyword arguments of the Peewee database class (connect parameters, pragmas…).
    params: dict[str, Any] = field(default_factory=dict)
    #: The URL with its secrets replaced, for messages.
    display: str = ""
    #: PostgreSQL: the connection pooler in front of the server (``?pooler=``; see POOLERS).
    pooler: str = "none"


def parse_url(url: str, base_dir: str | Path | None = None) -> DatabaseUrl:
    """Parse a database URL (see the module docstring); a relative SQLite path is taken against
    ``base_dir`` (default: the current directory). Raises ConfigError naming what is wrong."""
    if not isinstance(url, str) or "://" not in url:
        shown = redact_url(url) if isinstance(url, str) else url
        raise ConfigError(f"not a database URL: {shown!r} (use sqlite:///file.db, postgresql://…, mysql://…)")
    scheme, rest = url.split("://", 1)
    kind = SCHEMES.get(scheme.lower())
    display = redact_url(url)
    if kind is None:
        raise ConfigError(
            f"unsupported database URL scheme {scheme!r} in {display} (use sqlite, postgresql or mysql)"
        )
    body, _, query = rest.partition("?")
    options = _options(kind, query, display)
    if kind == "sqlite":
        path = _sqlite_path(body, display, base_dir)
        timeout = options.get("timeout", SQLITE_TIMEOUT)
        params = {"timeout": timeout, "pragmas": sqlite_pragmas(timeout), "lock_type": "IMMEDIATE"}
        return DatabaseUrl("sqlite", path, params, display)
    return _server(kind, body, options, display)


def _options(kind: str, query: str, display: str) -> dict[str, Any]:
    known = OPTIONS[kind]
    pairs = parse_qsl(query, keep_blank_values=True)
    unknown = sorted({k for k, _ in pairs if k not in known})
    if unknown:
        raise ConfigError(
            f"unknown {kind} URL option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in {display}"
            f" (known: {', '.join(sorted(known))})"
        )
    options: dict[str, Any] = {}
    for key, value in pairs:
        try:
            options[key] = known[key](value)
        except ValueError as exc:
            raise ConfigError(f"{kind} URL option {key}={value!r} {exc} in {display}") from None
    return options


def _sqlite_path(body: str, display: str, base_dir: str | Path | None) -> str:
    if not body.startswith("/"):
        raise ConfigError(
            f"sqlite URL needs three slashes: sqlite:///relative.db or sqlite:////abs.db, got {display!r}"
        )
    raw = unquote(body[1:])
    if not raw:
        raise ConfigError(f"sqlite URL has no file name: {display!r} (sqlite:///:memory: for an in-memory one)")
    if raw == ":memory:":
        return raw
    path = Path(raw)
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else os.getcwd()) / path
    return str(path.resolve())


def _host_port(item: str, display: str) -> tuple[str, str]:
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else tail
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if port and not port.isdigit():
        raise ConfigError(f"database URL has a bad port {port!r}: {display}")
    return unquote(host), port


def _server(kind: str, body: str, options: dict[str, Any], display: str) -> DatabaseUrl:
    netloc, _, path = body.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    params: dict[str, Any] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            params["user"] = unquote(user)
        if colon:
            params["password"] = unquote(password)
    name = unquote(path)
    if not name:
        raise ConfigError(f"{kind} URL names no database: {display}")
    pairs = [_host_port(item, display) for item in hosts.split(",")] if hosts else []
    if kind == "postgres":
        # libpq takes lists: host "h1,h2" and port "5432,5433" (an empty item is the default port).
        if any(h for h, _ in pairs):
            if "host" in options:
                raise ConfigError(f"postgresql URL names a host twice (in the URL and ?host=): {display}")
            params["host"] = ",".join(h for h, _ in pairs)
        if any(p for _, p in pairs):
            params["port"] = ",".join(p for _, p in pairs) if len(pairs) > 1 else int(pairs[0][1])
        params["connect_timeout"] = CONNECT_TIMEOUT
        pooler = options.pop("pooler", "none")
        params.update(options)
        return DatabaseUrl("postgres", name, params, display, pooler)
    if len(pairs) > 1:
        raise ConfigError(f"mysql URL names more than one host: {display}")
    host, port = pairs[0] if pairs else ("", "")
    params["host"] = host or "127.0.0.1"
    params["port"] = int(port) if port else 3306
    params["connect_timeout"] = CONNECT_TIMEOUT
    params.update(options)
    params["charset"] = MYSQL_CHARSET
    params["init_command"] = MYSQL_INIT_COMMAND
    return DatabaseUrl("mysql", name, params, display)


def resolve_url(url: str, base_dir: str | Path) -> str:
    """The URL with a relative SQLite path made absolute against ``base_dir``; any other URL as it is.

    What :func:`open_database` would open with the same ``base_dir``, so a URL can be resolved once
    (against the config file's folder) and opened later from any working directory."""
    if not isinstance(url, str) or not url.lower().startswith("sqlite:///") or url.startswith("sqlite:////"):
        return url
    body, q, query = url[len("sqlite://"):].partition("?")
    raw = unquote(body[1:])
    if not raw or raw == ":memory:" or Path(raw).is_absolute():
        return url
    path = str((Path(base_dir) / raw).resolve())
    # quote only what would change the parse: a literal % and ? in the folder's name
    return "sqlite:///" + path.replace("%", "%25").replace("?", "%3F") + q + query


# -- opening --------------------------------------------------------------------------------------

#: Databases built by open_database: their connect parameters carry pubq's session settings.
_OPENED: weakref.WeakSet[Any] = weakref.WeakSet()


def _require_driver(kind: str, display: str) -> None:
    scheme = display.split("://", 1)[0]
    if kind == "postgres":
        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is None:
            raise ConfigError(f"{scheme}:// URLs need the psycopg2 (or psycopg) package: pip install pubq[postgres]")
    elif kind == "mysql" and importlib.util.find_spec("pymysql") is None:
        raise ConfigError(f"{scheme}:// URLs need the PyMySQL package: pip install pubq[mysql]")


def open_database(url: str, base_dir: str | Path | None = None) -> pw.Database:
    """A Peewee database for ``url``, not connected (see the module docstring for URLs and settings).

    A relative SQLite path is taken against ``base_dir`` (default: the current directory); no folder
    is created. A bad URL, an unknown option or a missing driver package is a ConfigError."""
    parsed = parse_url(url, base_dir)
    _require_driver(parsed.kind, parsed.display)
    import peewee as pw

    cls = {"sqlite": pw.SqliteDatabase, "postgres": pw.PostgresqlDatabase, "mysql": pw.MySQLDatabase}
    db = cls[parsed.kind](parsed.database, **parsed.params)
    _OPENED.add(db)
    return db


def kind_of(db: pw.Database) -> str:
    """``"sqlite"``, ``"postgres"`` or ``"mysql"``; ConfigError for any other Peewee database."""
    import peewee as pw

    if isinstance(db, pw.SqliteDatabase):
        return "sqlite"
    if isinstance(db, pw.PostgresqlDatabase):
        return "postgres"
    if isinstance(db, pw.MySQLDatabase):
        return "mysql"
    raise ConfigError(f"unsupported Peewee database {type(db).__name__} (SQLite, PostgreSQL, MySQL only)")


def prepare_connection(db: pw.Database, conn: Any) -> None:
    """Give a new connection of a database that :func:`open_database` did not build (a caller's own
    Peewee database) the settings pubq relies on: READ COMMITTED on MySQL, WAL and a busy timeout on
    SQLite. Nothing to do for a database built here: its connect parameters carry them."""
    if db in _OPENED:
        return
    kind = kind_of(db)
    cur = conn.cursor()
    if kind == "mysql":
        cur.execute(MYSQL_INIT_COMMAND)
    elif kind == "sqlite":
        cur.execute("PRAGMA journal_mode = wal")
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_TIMEOUT * 1000)}")


def drop_connection(db: pw.Database) -> None:
    """Close this thread's connection of ``db`` (it is broken or lost); the next use reconnects."""
    try:
        db.close()
    except Exception:  # noqa: BLE001 - a broken connection (or one mid-transaction): just forget it
        db._state.reset()


# -- redaction ------------------------------------------------------------------------------------

_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: Query keys whose values are secrets.
_SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "ssl_key_password", "secret", "token")
_QUERY_SECRET = re.compile(r"(?i)(^|&)((?:" + "|".join(_SECRET_KEYS) + r")=)[^&#]*")


def redact_url(url: str) -> str:
    """The URL with its password (and any secret query value) replaced by ``***``, fit for messages
    and logs. When in doubt it hides more: everything from ``user:`` up to the last ``@``."""
    start = _URL_START.match(url)
    if start is None:
        return url
    scheme, rest = url[: start.end()], url[start.end():]
    colon, at = rest.find(":"), rest.rfind("@")
    if 0 <= colon < at and not any(c in rest[:colon] for c in "/?#@"):
        rest = rest[: colon + 1] + "***" + rest[at:]
    body, q, query = rest.partition("?")
    if q:
        query = _QUERY_SECRET.sub(r"\1\2***", query)
    return scheme + body + q + query
