"""pubq.database, pubq.db_errors, pubq.db_fork: the one opener, redactor, error classifier and fork
hook of the queue driver and publish state.

URL parsing needs no server. Every classification is of a real error, produced on real SQLite,
PostgreSQL and MariaDB/MySQL (the URLs of ``tests/drivers/backends.py``); an unreachable server fails
the test, it is never skipped.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sqlite3
import threading
import types
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

import pubq.publishing.database as publishing_database
from pubq import database, db_errors
from pubq.config import resolve_sqlite
from pubq.database import MYSQL_INIT_COMMAND, open_database, parse_url, redact_url
from pubq.db_errors import ErrorKind, classify, sqlstate
from pubq.db_fork import forget_connection, on_fork_in_child
from pubq.drivers.db import DbDriver
from pubq.errors import ConfigError, DriverError
from pubq.logs import redact
from pubq.publishing.database import run_in_transaction
from pubq.publishing.migrations import drop_all
from pubq.publishing.service import PublishingService
from pubq.publishing.settings import load_settings
from tests.drivers.backends import MYSQL_URL, POSTGRES_URL, open_driver
from tests.helpers import wait_until

SERVERS = {"postgres": POSTGRES_URL, "mysql": MYSQL_URL}
KINDS = ["sqlite", "postgres", "mysql"]


def connected(url: str, base_dir: Path | None = None) -> pw.Database:
    db = open_database(url, base_dir)
    try:
        db.connect()
    except Exception as exc:  # noqa: BLE001 - reported as a failure, never a skip
        pytest.fail(f"{redact_url(url)} is unreachable: {exc}", pytrace=False)
    return db


def session_id(db: pw.Database) -> int:
    """The server's id of this thread's session of ``db``."""
    sql = "SELECT pg_backend_pid()" if isinstance(db, pw.PostgresqlDatabase) else "SELECT CONNECTION_ID()"
    return int(db.execute_sql(sql).fetchone()[0])


def end_session(killer: pw.Database, victim_id: int) -> None:
    """End another session from ``killer`` and wait until the server has let it go."""
    if isinstance(killer, pw.PostgresqlDatabase):
        killer.execute_sql("SELECT pg_terminate_backend(%s)", (victim_id,))
        alive = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
    else:
        killer.execute_sql(f"KILL {int(victim_id)}")
        alive = "SELECT 1 FROM information_schema.processlist WHERE id = %s"
    wait_until(lambda: killer.execute_sql(alive, (victim_id,)).fetchone() is None, message="the session to end")


def error_of(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the error is what the test is about
        return exc
    raise AssertionError("no error raised")


def closing(*dbs: pw.Database) -> None:
    for db in dbs:
        database.drop_connection(db)


# -- URLs -------------------------------------------------------------------------------------------


def test_a_relative_sqlite_path_is_taken_against_the_base_dir_and_an_absolute_one_as_it_is(tmp_path):
    base = tmp_path.resolve()
    assert parse_url("sqlite:///state.db", tmp_path).database == str(base / "state.db")
    assert parse_url("sqlite:///sub/../state.db", tmp_path).database == str(base / "state.db")
    assert parse_url("sqlite:///my%20file.db", tmp_path).database == str(base / "my file.db")
    assert parse_url(f"sqlite:///{tmp_path}/abs.db", "/elsewhere").database == str(base / "abs.db")
    assert parse_url("sqlite:///:memory:", tmp_path).database == ":memory:"


def test_without_a_base_dir_a_relative_sqlite_path_is_taken_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = open_database("sqlite:///here.db")
    assert db.database == str(tmp_path.resolve() / "here.db")
    assert not (tmp_path / "here.db").exists()  # not connected


def test_opening_creates_no_folder(tmp_path):
    db = open_database("sqlite:///missing/state.db", tmp_path)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(pw.OperationalError):
        db.connect()


@pytest.mark.parametrize("url", ["sqlite://state.db", "sqlite://localhost/state.db", "sqlite://", "sqlite:///"])
def test_a_sqlite_url_with_a_host_or_without_a_file_is_refused(url):
    with pytest.raises(ConfigError, match="sqlite URL"):
        parse_url(url)


def test_every_sqlite_connection_gets_wal_normal_sync_the_busy_timeout_and_foreign_keys(tmp_path):
    db = connected("sqlite:///q.db?timeout=2.5", tmp_path)
    try:
        def pragma(name: str) -> Any:
            return db.execute_sql(f"PRAGMA {name}").fetchone()[0]

        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("busy_timeout") == 2500
        assert pragma("foreign_keys") == 1
    finally:
        db.close()
    assert parse_url("sqlite:///q.db").params["pragmas"]["busy_timeout"] == 30000


def test_the_queue_tables_declare_no_foreign_keys_so_the_shared_pragma_changes_nothing_for_them(tmp_path):
    d, cleanup = open_driver("sqlite", tmp_path)
    try:
        d.push(b"x", ttr=5)
        assert d.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        for table in ("jobs", "counters", "follow_ups", "schema"):
            assert d.db.execute_sql(f"PRAGMA foreign_key_list({d.table_prefix}{table})").fetchall() == []
    finally:
        cleanup()


def test_postgres_urls_become_libpq_connect_parameters():
    p = parse_url("postgresql://pubq:p%40ss@db.example:5433/app?sslmode=require&application_name=w1")
    assert (p.kind, p.database) == ("postgres", "app")
    assert p.params == {"user": "pubq", "password": "p@ss", "host": "db.example", "port": 5433,
                        "connect_timeout": 10, "sslmode": "require", "application_name": "w1"}
    assert parse_url("postgres://u@h/app?connect_timeout=3").params == {"user": "u", "host": "h", "connect_timeout": 3}
    # libpq's other forms: a host list, a socket directory as the host or as ?host=, no host at all
    many = parse_url("postgresql://h1:5432,[::1]:5433,h3/app").params
    assert (many["host"], many["port"]) == ("h1,::1,h3", "5432,5433,")
    assert parse_url("postgresql://%2Fvar%2Frun%2Fpostgresql/app").params["host"] == "/var/run/postgresql"
    assert parse_url("postgresql:///app?host=/tmp").params == {"host": "/tmp", "connect_timeout": 10}
    assert parse_url("postgresql:///app").params == {"connect_timeout": 10}


def test_mysql_and_mariadb_urls_always_ask_for_read_committed_and_utf8mb4():
    for scheme in ("mysql", "mariadb", "mysql+pymysql"):
        p = parse_url(f"{scheme}://root:pw@db.example:3307/app?read_timeout=30&ssl_disabled=true")
        assert (p.kind, p.database) == ("mysql", "app")
        assert p.params == {"user": "root", "password": "pw", "host": "db.example", "port": 3307,
                            "connect_timeout": 10, "read_timeout": 30, "ssl_disabled": True,
                            "charset": "utf8mb4", "init_command": MYSQL_INIT_COMMAND}
    assert parse_url("mysql://root@/app").params["host"] == "127.0.0.1"
    assert parse_url("mysql://root@h/app").params["port"] == 3306


@pytest.mark.parametrize(
    "url, option",
    [
        ("sqlite:///q.db?mode=ro", "mode"),
        ("postgresql://u:s3cret@h/app?password=s3cret", "password"),
        ("mysql://u:s3cret@h/app?charset=latin1", "charset"),
        ("mysql://h/app?init_command=SET+autocommit%3D0", "init_command"),
    ],
)
def test_an_unknown_url_option_is_a_config_error_naming_it_without_the_password(url, option):
    with pytest.raises(ConfigError, match=rf"unknown \w+ URL option {option} in ") as info:
        parse_url(url)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url, message",
    [
        ("sqlite:///q.db?timeout=soon", "timeout='soon' must be a number of seconds"),
        ("postgresql://h/app?connect_timeout=-1", "connect_timeout='-1' must be a whole number"),
        ("mysql://h/app?ssl_disabled=maybe", "ssl_disabled='maybe' must be true or false"),
        ("postgresql://h:port/app", "bad port 'port'"),
        ("postgresql://h/", "names no database"),
        ("mysql://u:s3cret@h", "names no database"),
        ("mysql://h1,h2/app", "more than one host"),
        ("postgresql://h/app?host=/tmp", "names a host twice"),
        ("redis://h/0", "unsupported database URL scheme 'redis'"),
        ("nonsense", "not a database URL"),
    ],
)
def test_a_bad_url_is_a_config_error_that_says_what_is_wrong(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_url(url)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("user", ["queue driver", "publish state"])
def test_a_missing_driver_package_names_the_extra_to_install_for_both_users(user, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name.startswith(("psycopg", "pymysql")) else real(name, *a),
    )
    settings = load_settings({}, tmp_path)
    open_with: Callable[[str], Any] = {
        "queue driver": lambda url: DbDriver(url, "c"),
        "publish state": lambda url: PublishingService(url, settings, auto_migrate=False),
    }[user]
    with pytest.raises(ConfigError, match=r"pip install pubq\[postgres\]"):
        open_with("postgresql://postgres@127.0.0.1/test")
    with pytest.raises(ConfigError, match=r"pip install pubq\[mysql\]"):
        open_with("mariadb://root@127.0.0.1/test")
    assert parse_url("postgresql://postgres@127.0.0.1/test").kind == "postgres"  # parsing needs no driver


def test_both_users_open_with_the_same_function():
    assert publishing_database.open_database is open_database
    assert publishing_database.redact_url is redact_url


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///state.db",
        "sqlite:///sub/../state.db?timeout=3",
        "sqlite:///my%20file.db",
        "sqlite:///:memory:",
        "sqlite:///:memory:?timeout=1",
        "sqlite:////abs/state.db",
        "postgresql://u:pw@h/app",
        "mysql://h/app",
    ],
)
def test_config_resolves_a_url_to_what_the_opener_opens_from_the_config_folder(url, tmp_path):
    base = tmp_path / "conf 100% ?x"
    base.mkdir()
    resolved = resolve_sqlite(url, base)
    here, there = parse_url(resolved, "/any/other/dir"), parse_url(url, base)
    assert (here.kind, here.database, here.params) == (there.kind, there.database, there.params)
    if not url.startswith("sqlite:///") or url.startswith("sqlite:////") or ":memory:" in url:
        assert resolved == url


# -- redaction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://pubq:s3cret@h:5432/app", "postgresql://pubq:***@h:5432/app"),
        ("mysql://root:s3cret@h/app?connect_timeout=3", "mysql://root:***@h/app?connect_timeout=3"),
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://pubq:s3c@ret@h/app", "postgresql://pubq:***@h/app"),  # an unescaped @ in the password
        ("postgresql://pubq:s3c/ret@h/app", "postgresql://pubq:***@h/app"),  # an unescaped /
        ("postgresql://h/app?sslmode=require&password=s3cret", "postgresql://h/app?sslmode=require&password=***"),
        ("mysql://root@h/app", "mysql://root@h/app"),
        ("postgresql://h1:5432,h2:5433/app", "postgresql://h1:5432,h2:5433/app"),
        ("sqlite:////srv/a:b@c.db", "sqlite:////srv/a:b@c.db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_hides_the_password_and_keeps_the_rest(url, shown):
    assert redact_url(url) == shown


def test_log_lines_redact_urls_with_the_same_function():
    line = "cannot connect to postgresql://pubq:s3c@ret@db:5432/app (timeout); token=abc123"
    assert redact(line) == "cannot connect to postgresql://pubq:***@db:5432/app (timeout); token=***"


# -- session settings on real servers -----------------------------------------------------------------


def _isolation(db: pw.Database) -> str:
    try:
        return db.execute_sql("SELECT @@session.transaction_isolation").fetchone()[0]
    except pw.OperationalError:  # MariaDB before 11.1
        return db.execute_sql("SELECT @@session.tx_isolation").fetchone()[0]


@pytest.mark.parametrize("user", ["queue driver", "publish state", "a foreign database"])
def test_every_mysql_connection_is_read_committed_and_utf8mb4(user, tmp_path):
    if user == "queue driver":
        d, cleanup = open_driver("mysql", tmp_path)
        d.ping()
        db = d.db
    elif user == "publish state":
        db, cleanup = connected(MYSQL_URL), None
    else:  # a caller's own Peewee database handed to the driver: prepare_connection sets it per connection
        p = parse_url(MYSQL_URL)
        db = pw.MySQLDatabase(p.database, host=p.params["host"], port=p.params["port"],
                              user=p.params.get("user"), password=p.params.get("password", ""))
        prefix = f"pubq_f{uuid.uuid4().hex[:8]}_"
        d = DbDriver(db, "foreign", table_prefix=prefix)
        d.ping()

        def cleanup() -> None:
            for table in ("jobs", "counters", "follow_ups", "schema"):
                db.execute_sql(f"DROP TABLE IF EXISTS `{prefix}{table}`")
            d.close()
            db.close()
    try:
        assert _isolation(db) == "READ-COMMITTED"
        if user != "a foreign database":
            assert db.execute_sql("SELECT @@character_set_client").fetchone()[0] == "utf8mb4"
            emoji = db.execute_sql("SELECT CHAR_LENGTH(%s)", ("\U0001f680 ok",)).fetchone()[0]
            assert emoji == 4
    finally:
        if cleanup:
            cleanup()
        else:
            db.close()


# -- classification of real errors ------------------------------------------------------------------


def test_sqlite_busy_is_retry_and_too_big_is_data_and_a_constraint_is_other(tmp_path):
    holder = connected("sqlite:///busy.db", tmp_path)
    waiter = connected("sqlite:///busy.db?timeout=0", tmp_path)
    try:
        holder.execute_sql("CREATE TABLE t (i INTEGER PRIMARY KEY)")
        holder.execute_sql("BEGIN IMMEDIATE")
        busy = error_of(lambda: waiter.execute_sql("BEGIN IMMEDIATE"))
        assert isinstance(busy, pw.OperationalError) and "locked" in str(busy)
        assert classify(busy) is ErrorKind.RETRY
        holder.execute_sql("ROLLBACK")

        waiter.connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100)
        too_big = error_of(lambda: waiter.execute_sql("SELECT ?", (b"x" * 1000,)))
        assert classify(too_big) is ErrorKind.DATA

        holder.execute_sql("INSERT INTO t VALUES (1)")
        duplicate = error_of(lambda: holder.execute_sql("INSERT INTO t VALUES (1)"))
        assert isinstance(duplicate, pw.IntegrityError) and classify(duplicate) is ErrorKind.OTHER
        assert classify(error_of(lambda: holder.execute_sql("SELEKT 1"))) is ErrorKind.OTHER
    finally:
        closing(holder, waiter)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_session_ended_by_the_server_is_lost_and_the_next_use_reconnects(kind):
    victim, killer = connected(SERVERS[kind]), connected(SERVERS[kind])
    try:
        old = session_id(victim)
        end_session(killer, old)
        first = error_of(lambda: victim.execute_sql("SELECT 1"))
        assert classify(first) is ErrorKind.LOST, repr(db_errors.unwrap(first))
        again = error_of(lambda: victim.execute_sql("SELECT 1"))  # the client now knows it is closed
        assert classify(again) is ErrorKind.LOST, repr(db_errors.unwrap(again))
        database.drop_connection(victim)
        assert session_id(victim) != old
    finally:
        closing(victim, killer)


@pytest.mark.parametrize(
    "kind, sql, code",
    [
        ("postgres", "SELECT 2147483647::int + 1", "22003"),
        ("postgres", "SELECT 'abc'::int", "22P02"),
        ("mysql", "SELECT 9223372036854775807 + 1", 1690),
    ],
)
def test_a_value_out_of_range_or_bad_input_is_a_data_error(kind, sql, code):
    db = connected(SERVERS[kind])
    try:
        exc = error_of(lambda: db.execute_sql(sql))
        got = sqlstate(exc) if kind == "postgres" else db_errors.unwrap(exc).args[0]
        assert got == code
        assert classify(exc) is ErrorKind.DATA
        assert db.execute_sql("SELECT 1").fetchone()[0] == 1  # the connection is fine
    finally:
        closing(db)


def test_postgres_lock_timeout_and_deadlock_are_retry_and_a_cancelled_statement_is_not_lost():
    a, b, watcher = (connected(POSTGRES_URL) for _ in range(3))
    k1, k2 = (int.from_bytes(os.urandom(6), "big") for _ in range(2))
    try:
        a.execute_sql("BEGIN")
        a.execute_sql("SELECT pg_advisory_xact_lock(%s)", (k1,))
        b.execute_sql("SET lock_timeout = '50ms'")
        timeout = error_of(lambda: b.execute_sql("SELECT pg_advisory_lock(%s)", (k1,)))
        assert sqlstate(timeout) == "55P03" and classify(timeout) is ErrorKind.RETRY

        b.execute_sql("SET lock_timeout = 0")
        b.execute_sql("BEGIN")
        b.execute_sql("SELECT pg_advisory_xact_lock(%s)", (k2,))
        a_pid, a_conn = session_id(a), a.connection()
        errors: list[BaseException] = []

        def a_wants_k2() -> None:
            try:
                a_conn.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (k2,))
            except Exception as exc:  # noqa: BLE001 - collected
                errors.append(exc)

        waiting = threading.Thread(target=a_wants_k2)
        waiting.start()
        wait_until(lambda: watcher.execute_sql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                               (a_pid,)).fetchone()[0] == "Lock", message="a to wait for k2")
        try:
            b.execute_sql("SELECT pg_advisory_xact_lock(%s)", (k1,))
        except Exception as exc:  # noqa: BLE001 - collected
            errors.append(exc)
        waiting.join(30)
        assert [sqlstate(e) for e in errors] == ["40P01"]
        assert classify(errors[0]) is ErrorKind.RETRY

        watcher.execute_sql("SET statement_timeout = '20ms'")
        cancelled = error_of(lambda: watcher.execute_sql("SELECT pg_sleep(5)"))
        assert sqlstate(cancelled) == "57014" and classify(cancelled) is ErrorKind.OTHER
    finally:
        closing(a, b, watcher)


def test_mysql_nowait_and_deadlock_are_retry_and_a_duplicate_is_other():
    setup, a, b, watcher = (connected(MYSQL_URL) for _ in range(4))
    table = f"pubq_t_lock_{uuid.uuid4().hex[:10]}"
    setup.execute_sql(f"CREATE TABLE {table} (id INT PRIMARY KEY) ENGINE=InnoDB")
    try:
        setup.execute_sql(f"INSERT INTO {table} VALUES (1), (2)")
        duplicate = error_of(lambda: setup.execute_sql(f"INSERT INTO {table} VALUES (1)"))
        assert classify(duplicate) is ErrorKind.OTHER

        a.execute_sql("BEGIN")
        a.execute_sql(f"SELECT id FROM {table} WHERE id = 1 FOR UPDATE")
        nowait = error_of(lambda: b.execute_sql(f"SELECT id FROM {table} WHERE id = 1 FOR UPDATE NOWAIT"))
        assert db_errors.unwrap(nowait).args[0] in (1205, 3572)  # MariaDB, MySQL 8
        assert classify(nowait) is ErrorKind.RETRY

        b.execute_sql("BEGIN")
        b.execute_sql(f"SELECT id FROM {table} WHERE id = 2 FOR UPDATE")
        a_id, a_conn = session_id(a), a.connection()
        errors: list[BaseException] = []

        def a_wants_2() -> None:
            try:
                a_conn.cursor().execute(f"SELECT id FROM {table} WHERE id = 2 FOR UPDATE")
            except Exception as exc:  # noqa: BLE001 - collected
                errors.append(exc)

        waiting = threading.Thread(target=a_wants_2)
        waiting.start()
        # InnoDB refreshes innodb_trx only when it was not read for 0.1 s: poll slower than that
        wait_until(lambda: watcher.execute_sql(
            "SELECT 1 FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT'",
            (a_id,)).fetchone(), interval=0.15, message="a to wait for row 2")
        try:
            b.execute_sql(f"SELECT id FROM {table} WHERE id = 1 FOR UPDATE")
        except Exception as exc:  # noqa: BLE001 - collected
            errors.append(exc)
        waiting.join(30)
        assert [db_errors.unwrap(e).args[0] for e in errors] == [1213]
        assert classify(errors[0]) is ErrorKind.RETRY
    finally:
        closing(a, b, watcher)
        setup.execute_sql(f"DROP TABLE IF EXISTS {table}")
        closing(setup)


def test_an_error_that_is_not_the_database_s_is_other():
    assert classify(ValueError("x")) is ErrorKind.OTHER
    assert classify(pw.InterfaceError("Query must be bound to a database")) is ErrorKind.OTHER
    assert not db_errors.is_db_error(ValueError("x"))


# -- the publish-state retry loop uses the classifier ------------------------------------------------


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_unit_of_work_whose_connection_is_lost_runs_again_on_a_new_one(kind):
    db, killer = connected(SERVERS[kind]), connected(SERVERS[kind])
    sessions: list[int] = []

    def unit() -> int:
        sessions.append(session_id(db))
        if len(sessions) == 1:
            end_session(killer, sessions[0])
        return int(db.execute_sql("SELECT 1").fetchone()[0])

    try:
        assert run_in_transaction(db, unit) == 1
        assert len(sessions) == 2 and sessions[0] != sessions[1]
    finally:
        closing(db, killer)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_unit_of_work_with_a_data_error_is_not_run_again(kind):
    db = connected(SERVERS[kind])
    calls: list[int] = []
    sql = "SELECT 2147483647::int + 1" if kind == "postgres" else "SELECT 9223372036854775807 + 1"

    def unit() -> None:
        calls.append(1)
        db.execute_sql(sql)

    try:
        with pytest.raises((pw.DataError, DriverError)):
            run_in_transaction(db, unit)
        assert calls == [1]
    finally:
        closing(db)


def test_a_unit_of_work_that_finds_sqlite_busy_runs_again(tmp_path, monkeypatch):
    holder = connected("sqlite:///busy.db", tmp_path)
    db = connected("sqlite:///busy.db?timeout=0", tmp_path)
    holder.execute_sql("CREATE TABLE t (i INTEGER)")
    holder.execute_sql("BEGIN IMMEDIATE")
    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the retry's pause: the other writer finishes meanwhile
        pauses.append(seconds)
        if holder.connection().in_transaction:
            holder.execute_sql("COMMIT")

    monkeypatch.setattr(publishing_database, "time", types.SimpleNamespace(sleep=pause))
    try:
        assert run_in_transaction(db, lambda: db.execute_sql("INSERT INTO t VALUES (1)").rowcount) == 1
        assert len(pauses) == 1
    finally:
        closing(holder, db)


# -- fork ---------------------------------------------------------------------------------------------


class _Owner:
    """Something that holds a database and forgets it in a forked child, as the driver and service do."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        on_fork_in_child(self.after_fork)

    def after_fork(self) -> None:
        forget_connection(self.db)


def _in_child(body: Callable[[], bool]) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            code = 0 if body() else 2
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_a_forked_child_that_even_closes_the_inherited_connection_leaves_the_parent_session_alive(kind, tmp_path):
    url = SERVERS.get(kind, "sqlite:///fork.db")
    db = connected(url, tmp_path)
    owner = _Owner(db)
    inherited = db.connection()
    before = session_id(db) if kind != "sqlite" else None

    def child() -> bool:
        mine = db.connection()  # forgotten by the hook: a connection of the child's own
        ok = mine is not inherited and (kind == "sqlite" or session_id(db) != before)
        inherited.close()  # the worst a child can do (what a finalizer would do at exit)
        db.close()
        return ok

    try:
        assert _in_child(child) == 0
        assert db.connection() is inherited
        assert db.execute_sql("SELECT 1").fetchone()[0] == 1
        if kind != "sqlite":
            assert session_id(db) == before
    finally:
        closing(owner.db)


def test_a_fork_hook_does_not_keep_its_owner_alive(tmp_path):
    owner = _Owner(open_database("sqlite:///x.db", tmp_path))
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_forked_child_using_the_queue_driver_and_publish_state_leaves_both_parent_sessions_alive(
    kind, tmp_path
):
    driver, cleanup = open_driver(kind, tmp_path)
    url = SERVERS.get(kind, "sqlite:///state.db")
    prefix = f"pf{uuid.uuid4().hex[:8]}_"
    service = PublishingService(url, load_settings({"table_prefix": prefix}, tmp_path), base_dir=tmp_path)
    try:
        driver.push(b"before the fork", ttr=30)
        service.store.tx(lambda: service.models.Task.select().count())
        inherited = [driver.db.connection(), service.db.connection()]
        before = [session_id(driver.db), session_id(service.db)] if kind != "sqlite" else []

        def child() -> bool:
            driver.push(b"from the child", ttr=30)
            count = service.store.tx(lambda: service.models.Task.select().count())
            mine = [driver.db.connection(), service.db.connection()]
            ok = count == 0 and all(m is not i for m, i in zip(mine, inherited, strict=True))
            for conn in inherited:
                conn.close()
            driver.close()
            service.close()
            return ok

        assert _in_child(child) == 0
        assert [driver.db.connection(), service.db.connection()] == inherited
        if kind != "sqlite":
            assert [session_id(driver.db), session_id(service.db)] == before
        assert driver.counts().waiting == 2
        assert service.store.tx(lambda: service.models.Task.select().count()) == 0
    finally:
        drop_all(service.models)
        service.close()
        cleanup()
