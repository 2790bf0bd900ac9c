"""Forking past open SQL connections: a child never uses nor closes its parent's connections.

Shared by the ``db`` queue driver (:mod:`pubq.drivers.db_conn`) and publish state
(:mod:`pubq.publishing`); the databases are opened by :mod:`pubq.database`.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import peewee as pw

# A forked child must neither use nor close its parent's connections: closing a psycopg2 connection
# sends a Terminate message on the shared socket and ends the parent's session. Users register a
# hook that runs in every child right after fork; it forgets their connections (forget_connection):
# each socket is pointed at /dev/null, so a late close writes nowhere, and the objects stay referenced,
# so they are not finalized while the child runs. The child then opens connections of its own.

_fork_hooks: list[Callable[[], Callable[[], Any] | None]] = []
_fork_lock = threading.Lock()
_fork_installed = False
#: Connections forgotten in this (child) process, kept alive on purpose.
_ABANDONED: list[Any] = []
_LOCK_TYPE = type(threading.Lock())


def on_fork_in_child(callback: Callable[[], Any]) -> None:
    """Call ``callback()`` in every child forked after now, before the child runs anything else.

    A bound method is held weakly (registering does not keep its object alive); other callables are
    held for good. A hook that raises is ignored: a fork never fails because of it."""
    global _fork_installed
    ref: Callable[[], Callable[[], Any] | None]
    if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
        ref = weakref.WeakMethod(callback)  # type: ignore[arg-type]
    else:
        ref = lambda: callback  # noqa: E731
    with _fork_lock:
        if not _fork_installed:
            os.register_at_fork(after_in_child=_run_fork_hooks)
            _fork_installed = True
        _fork_hooks[:] = [r for r in _fork_hooks if r() is not None] + [ref]


def _run_fork_hooks() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()  # another parent thread may have held it at fork
    for ref in list(_fork_hooks):
        callback = ref()
        if callback is None:
            continue
        try:
            callback()
        except Exception:  # noqa: BLE001 - never break a fork
            pass


def _socket_fd(conn: Any) -> int | None:
    try:
        if hasattr(conn, "fileno"):  # psycopg2 / psycopg
            return int(conn.fileno())
        sock = getattr(conn, "_sock", None)  # PyMySQL
        return int(sock.fileno()) if sock is not None else None
    except Exception:  # noqa: BLE001 - closed or unusual connection: nothing to neutralize
        return None


def abandon(conn: Any) -> None:
    """In a forked child: forget an inherited DB-API connection without touching the parent's session."""
    if conn is None:
        return
    fd = _socket_fd(conn)
    if fd is not None and fd >= 0:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except OSError:
            pass
    _ABANDONED.append(conn)


def forget_connection(db: pw.Database) -> None:
    """In a forked child: drop ``db``'s inherited connection (abandoned, never closed) so that the
    next use opens one of the child's own."""
    state = db._state
    abandon(state.conn)
    state.reset()
    if type(getattr(db, "_lock", None)) is _LOCK_TYPE:
        db._lock = threading.Lock()  # another parent thread may have held it at fork
