"""What a database error means: retry the transaction, reconnect, or refuse the input.

Shared by the ``db`` queue driver (:mod:`pubq.drivers.db_conn`) and publish state
(:mod:`pubq.publishing.database`). :func:`classify` sorts an error by its driver's code (SQLSTATE,
errno, SQLite result code) into :class:`ErrorKind`; it imports no database driver, it only reads
the exception it is given.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """What a database error means for the code that ran the statement."""

    #: The server rolled the transaction back (deadlock, lock timeout, serialization, SQLite busy):
    #: run the whole transaction again.
    RETRY = "retry"
    #: The connection is unusable (closed, killed, server gone): drop it; the next use reconnects.
    #: A COMMIT whose answer was lost may or may not have happened.
    LOST = "lost"
    #: The statement's input is bad (a value out of range, too long, not a number…): never retried.
    DATA = "data"
    #: Anything else (a constraint, a syntax error, a bug): not retried.
    OTHER = "other"


#: PostgreSQL SQLSTATEs that roll back: serialization_failure, deadlock_detected, lock_not_available.
_PG_RETRY = frozenset({"40001", "40P01", "55P03"})
#: SQLSTATE classes of a lost connection: 08 connection exception, 57P operator intervention
#: (admin_shutdown, crash_shutdown, cannot_connect_now, idle_session_timeout…; 57014, a cancelled
#: statement, is not one of them).
_PG_LOST = ("08", "57P")
#: SQLSTATE class 22, data exception (numeric_value_out_of_range, string_data_right_truncation…).
_PG_DATA = "22"
#: MySQL/MariaDB errnos: lock wait timeout (MariaDB's NOWAIT too), deadlock, MySQL 8's NOWAIT.
_MYSQL_RETRY = frozenset({1205, 1213, 3572})
#: Server errnos of a lost session: server shutdown, connection killed (MariaDB), disconnected for
#: inactivity (MySQL 8); client errnos 2000–2999 (CR_*: 2003 cannot connect, 2006 gone away, 2013
#: lost during query…) and PyMySQL's 0 (the connection is closed) are lost too.
_MYSQL_LOST = frozenset({1053, 1927, 4031})
#: out of range (1264, 1690), truncated (1265), bad value (1292, 1366, 1367, 1411), division by zero
#: (1365), too long (1406), datetime overflow (1441), invalid JSON (3140).
_MYSQL_DATA = frozenset({1264, 1265, 1292, 1365, 1366, 1367, 1406, 1411, 1441, 1690, 3140})
#: SQLite primary result codes: SQLITE_BUSY, SQLITE_LOCKED (retry); SQLITE_TOOBIG, SQLITE_MISMATCH (data).
_SQLITE_RETRY = frozenset({5, 6})
_SQLITE_DATA = frozenset({18, 20})
_SQLITE_MODULES = ("sqlite3", "pysqlite3", "pysqlite2")


def unwrap(exc: BaseException) -> BaseException:
    """The DB-API exception under a Peewee wrapper (or ``exc`` itself)."""
    if type(exc).__module__ == "peewee":
        orig = getattr(exc, "orig", None)
        if isinstance(orig, BaseException):
            return orig
        if exc.args and isinstance(exc.args[0], BaseException):
            return exc.args[0]
        if exc.__context__ is not None and is_db_error(exc.__context__):
            return exc.__context__
    return exc


def is_db_error(exc: BaseException) -> bool:
    """An error raised by the database layer (a DB-API module or Peewee), as opposed to a bug."""
    module = type(exc).__module__ or ""
    return module == "peewee" or module.startswith(("psycopg", "pymysql", "MySQLdb", *_SQLITE_MODULES))


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of an error (psycopg2 ``pgcode``, psycopg ``sqlstate``), else None."""
    exc = unwrap(exc)
    return getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)


def _is_a(exc: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def classify(exc: BaseException) -> ErrorKind:
    """Sort a database error (Peewee-wrapped or not) by its driver's code.

    PostgreSQL by SQLSTATE; MySQL/MariaDB by errno; SQLite by its result code (``sqlite_errorcode``).
    Where the driver gives no code, by class: a psycopg ``OperationalError``/``InterfaceError`` without
    a SQLSTATE is raised by the client for a broken link ("server closed the connection
    unexpectedly", "connection already closed"), so it is LOST; a PyMySQL ``InterfaceError`` likewise.
    The message text is read in one case only: a SQLite error without ``sqlite_errorcode`` (a sqlite3
    module that does not set it) is RETRY when it says "locked" or "busy".
    """
    exc = unwrap(exc)
    module = type(exc).__module__ or ""
    if module.startswith(_SQLITE_MODULES):
        return _classify_sqlite(exc)
    if module.startswith("psycopg"):
        return _classify_postgres(exc)
    if module.startswith(("pymysql", "MySQLdb")):
        return _classify_mysql(exc)
    return ErrorKind.OTHER


def _classify_sqlite(exc: BaseException) -> ErrorKind:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        text = str(exc).lower()
        if _is_a(exc, "OperationalError") and ("locked" in text or "busy" in text):
            return ErrorKind.RETRY
        return ErrorKind.DATA if _is_a(exc, "DataError") else ErrorKind.OTHER
    primary = code & 0xFF  # extended codes (SQLITE_BUSY_SNAPSHOT = 517…) keep the primary in the low byte
    if primary in _SQLITE_RETRY:
        return ErrorKind.RETRY
    if primary in _SQLITE_DATA:
        return ErrorKind.DATA
    return ErrorKind.OTHER


def _classify_postgres(exc: BaseException) -> ErrorKind:
    code = sqlstate(exc)
    if code is None:
        if _is_a(exc, "OperationalError", "InterfaceError"):
            return ErrorKind.LOST
        return ErrorKind.DATA if _is_a(exc, "DataError") else ErrorKind.OTHER
    if code in _PG_RETRY:
        return ErrorKind.RETRY
    if code.startswith(_PG_LOST):
        return ErrorKind.LOST
    if code.startswith(_PG_DATA):
        return ErrorKind.DATA
    return ErrorKind.OTHER


def _classify_mysql(exc: BaseException) -> ErrorKind:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in _MYSQL_RETRY:
        return ErrorKind.RETRY
    if (
        _is_a(exc, "InterfaceError")
        or code == 0
        or code in _MYSQL_LOST
        or (code is not None and 2000 <= code < 3000)
    ):
        return ErrorKind.LOST
    if code in _MYSQL_DATA or _is_a(exc, "DataError"):
        return ErrorKind.DATA
    return ErrorKind.OTHER
