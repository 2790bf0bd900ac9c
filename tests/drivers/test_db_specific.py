"""What only the ``db`` driver has to prove: schema migrations, worker processes sharing one table,
index use with many delayed rows, fork safety, errors of unreachable databases, odd rows.

Runs on SQLite (a file in tmp_path), PostgreSQL and MySQL/MariaDB (the URLs of ``backends.py``, the
session's own table prefix). An unreachable server fails the test, it is never skipped.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import select
import threading
import time
import uuid
from typing import Any

import pytest

from pubq.drivers import db_schema
from pubq.drivers.base import Counts, PushItem
from pubq.drivers.db import DbDriver
from pubq.drivers.db_sql import COUNTS, DUE_IDS, FIRST_WAITING
from pubq.drivers.db_sql_pg import PG_PROMOTE, PG_RESERVE
from pubq.errors import ConfigError, DriverError
from tests.drivers.backends import (
    DB_TABLE_PREFIX,
    MYSQL_URL,
    POSTGRES_URL,
    open_driver,
    pgbouncer_url,
    unique_channel,
)

KINDS = ["sqlite", "postgres", "mysql", "pgbouncer-session", "pgbouncer-transaction"]


def target(kind: str, tmp_path) -> tuple[str, str]:
    """(URL, table prefix) that the ``kind`` factory of backends.py opens, for other processes."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/queue.db", "pubq_"
    if kind.startswith("pgbouncer-"):
        return pgbouncer_url(kind.partition("-")[2]), DB_TABLE_PREFIX
    return (POSTGRES_URL if kind == "postgres" else MYSQL_URL), DB_TABLE_PREFIX


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def opened(kind: str, tmp_path):
    cleanups = []

    def make(**opts: Any) -> DbDriver:
        driver, cleanup = open_driver(kind, tmp_path, **opts)
        cleanups.append(cleanup)
        return driver

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


def raw(d: DbDriver, sql: str, params: tuple = ()) -> list[Any]:
    """One statement on the driver's own connection, with its {J}/{C}/? templating."""
    cur = d.conn.cursor()
    cur.execute(d.conn.render(sql), params)
    return cur.fetchall() if cur.description else []


# -- schema -----------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_keeps_every_row(opened):
    d = opened()
    ids = d.push_many([PushItem(b"job-%d" % i, ttr=30, delay=60 * (i % 2)) for i in range(6)])
    r = d.reserve(0)
    assert d.migrate() == (db_schema.SCHEMA_VERSION, db_schema.SCHEMA_VERSION)
    # As if the version row were lost (or an older pubq had made the tables): every step runs again
    # over the existing tables and indexes without error and without touching a row.
    quote = "`" if d.kind == "mysql" else '"'
    raw(d, f"DELETE FROM {quote}{d.table_prefix}schema{quote}")
    assert d.migrate() == (0, db_schema.SCHEMA_VERSION)
    url, prefix = _url_and_prefix(d)
    again = DbDriver(url, d.channel, table_prefix=prefix)
    try:
        assert again.counts() == Counts(waiting=2, delayed=3, reserved=1)
        assert [again.get(i).payload for i in ids] == [b"job-%d" % i for i in range(6)]
        assert again.ack(r) is True
    finally:
        again.close()


def test_a_version_2_table_gains_the_history_column_and_keeps_its_rows(kind, tmp_path):
    from pubq.drivers.base import FailureInfo
    from tests.drivers.backends import drop_session_tables

    url, _ = target(kind, tmp_path)
    prefix = f"pubq_v2_{uuid.uuid4().hex[:8]}_"
    d = DbDriver(url, "v2-upgrade", table_prefix=prefix)
    try:
        jid = d.push(b"old", ttr=30)
        quote = "`" if d.kind == "mysql" else '"'
        # What a pubq of schema version 2 left: no history column, version row at 2.
        d.db.execute_sql(f"ALTER TABLE {quote}{prefix}jobs{quote} DROP COLUMN {quote}history{quote}")
        d.db.execute_sql(f"UPDATE {quote}{prefix}schema{quote} SET version = 2")
        d.close()
        d = DbDriver(url, "v2-upgrade", table_prefix=prefix)
        r = d.reserve(0)  # the first connection migrates
        assert db_schema.current_version(d.db, d.conn.models) == db_schema.SCHEMA_VERSION
        assert (r.job_id, r.payload) == (jid, b"old")
        assert d.fail(r, FailureInfo("E", "m", "tb")) is True
        assert [a.traceback for a in d.failed_get(jid).history] == ["tb"]
    finally:
        d.close()
        if kind != "sqlite":
            drop_session_tables(url, prefix)


def _url_and_prefix(d: DbDriver) -> tuple[str, str]:
    if d.kind == "sqlite":
        return f"sqlite:///{d.db.database}", d.table_prefix
    return (POSTGRES_URL if d.kind == "postgres" else MYSQL_URL), d.table_prefix


def test_two_drivers_migrating_at_once_both_succeed(kind, tmp_path):
    url, _ = target(kind, tmp_path)
    prefix = f"{DB_TABLE_PREFIX}m{os.getpid() % 1000}_" if kind != "sqlite" else "pubq_race_"
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_migrate_in_child, args=(url, prefix, out)) for _ in range(3)]
    try:
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        assert results == [("ok", db_schema.SCHEMA_VERSION)] * 3, results
    finally:
        for p in procs:
            p.join(10)
        if kind != "sqlite":
            from tests.drivers.backends import drop_session_tables

            drop_session_tables(url, prefix)


def _migrate_in_child(url: str, prefix: str, out: Any) -> None:
    try:
        d = DbDriver(url, "migrate-race", table_prefix=prefix)
        out.put(("ok", d.migrate()[1]))
        d.close()
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", repr(exc)))


def test_a_new_sqlite_connection_waits_out_a_lock_its_pragmas_meet(tmp_path):
    # CI (2026-11-30): three schedulers released by a barrier onto a new SQLite file; one failed at
    # connect with "database is locked", raised by the connection pragmas (the switch to WAL) without
    # SQLite's busy handler waiting. Here the busy handler is off (?timeout=0) and another connection
    # holds an exclusive lock for 0.5 s: the new connection retries until it is released.
    import sqlite3

    path = tmp_path / "locked.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    d = DbDriver(f"sqlite:///{path}?timeout=0", "locked")
    try:
        job_id = d.push(b"x", ttr=60)
        assert d.counts().waiting == 1 and d.get(job_id) is not None
    finally:
        release.join()
        d.close()
        other.close()


# -- many worker processes ----------------------------------------------------------------------


def _drain_in_child(url: str, channel: str, prefix: str, out: Any) -> None:
    acked: list[int] = []
    try:
        d = DbDriver(url, channel, table_prefix=prefix)
        r = d.reserve(0)
        while r is not None:
            ok, nxt = d.ack_and_reserve(r)
            if ok:
                acked.append(r.job_id)
            r = nxt
        d.close()
        out.put(("ok", acked))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_four_worker_processes_drain_one_queue_acking_each_job_exactly_once(opened, kind, tmp_path):
    producer = opened()
    url, prefix = target(kind, tmp_path)
    ids: list[int] = []
    for start in range(0, 5000, 1000):
        ids += producer.push_many([PushItem(b"%d" % i, ttr=300) for i in range(start, start + 1000)])
    # fork with the producer's connection open: the children must leave it alone (see db_conn.abandon)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_drain_in_child, args=(url, producer.channel, prefix, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [r[1] for r in results if r[0] == "error"]
    assert errors == []  # no "database is locked", no deadlock left unretried
    acked = [job_id for _, got in results for job_id in got]
    # SKIP LOCKED can hide the last rows behind a sibling's open transaction; a draining reserve
    # waits such rows out (DbDriver._reserve_past_locks), so the workers leave nothing waiting.
    leftovers = [r.job_id for r in iter(lambda: producer.reserve(0), None) if producer.ack(r)]
    missing = sorted(set(ids) - set(acked) - set(leftovers))
    acked += leftovers
    assert leftovers == [], f"draining workers exited with {len(leftovers)} jobs still waiting"
    assert len(acked) == len(set(acked)) == 5000, (
        f"missing {missing}: {[producer.get(m) for m in missing]}; counts {producer.counts()}")
    assert sorted(acked) == ids
    assert producer.counts() == Counts(done=5000)  # the sharded counters add up, on the parent's connection


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_draining_reserve_waits_out_a_row_that_skip_locked_hid(opened, kind, tmp_path):
    d = opened()
    job_id = d.push(b"hidden for a moment", ttr=30)
    url, prefix = target(kind, tmp_path)
    holder = DbDriver(url, d.channel, table_prefix=prefix)
    cur = holder.conn.cursor()
    cur.execute("BEGIN")
    cur.execute(holder.conn.render("SELECT id FROM {J} WHERE id = ? FOR UPDATE"), (job_id,))
    release = threading.Timer(0.3, lambda: cur.execute("ROLLBACK"))
    release.start()
    try:
        r = d.reserve(0)  # a `run` worker: without waiting, it would exit with the job waiting
    finally:
        release.join()
        holder.close()
    assert r is not None and r.job_id == job_id


def test_a_forked_child_uses_a_connection_of_its_own_and_the_parent_keeps_its_own(opened):
    d = opened()
    d.push(b"before fork", ttr=30)
    assert d.counts().waiting == 1  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # child: must reconnect, and closing must not end the parent's session
        code = 1
        try:
            d.push(b"from the child", ttr=30)
            d.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert d.counts().waiting == 2  # same connection as before the fork, still usable
    assert [d.reserve(0).payload, d.reserve(0).payload] == [b"before fork", b"from the child"]


# -- indexes: reserve stays O(log n) with many delayed rows (yii2-queue #280) ------------------


def _plan(d: DbDriver, statement: Any, params: tuple) -> str:
    sql = statement.sql
    if d.kind == "sqlite":
        return " ".join(str(row[-1]) for row in raw(d, "EXPLAIN QUERY PLAN " + sql, params))
    if d.kind == "mysql":
        cur = d.conn.cursor()
        cur.execute("EXPLAIN " + d.conn.render(sql), params)
        names = [c[0] for c in cur.description]
        return " ".join(
            f"key={row[names.index('key')]} extra={row[names.index('Extra')]}" for row in cur.fetchall()
        )
    raise AssertionError(d.kind)


def _pg_plan(d: DbDriver, stmt: Any, args: tuple) -> str:
    """EXPLAIN of a hot-path statement with its parameters inlined (a custom plan, as at first use)."""
    cur = d.conn.cursor()
    text = d.conn.render(stmt.sql)
    for i, value in reversed(list(enumerate(args, start=1))):
        text = text.replace(f"${i}", cur.mogrify("%s", (value,)).decode())
    cur.execute("EXPLAIN " + text)
    return "\n".join(row[0] for row in cur.fetchall())


@pytest.mark.slow
# The plans are the server's: through PgBouncer they are the same PostgreSQL's, so they are read once there.
@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_reserve_uses_the_ready_and_due_indexes_with_many_delayed_rows(opened):
    d = opened()
    # Delayed rows with the best priority: a reserve that scanned them would have to read them all.
    for _ in range(4):
        d.push_many([PushItem(b"later", ttr=60, delay=3600, priority=0) for _ in range(5000)])
    d.push_many([PushItem(b"now", ttr=60) for _ in range(200)])
    other = opened()  # another queue in the same table
    other.push_many([PushItem(b"theirs", ttr=60) for _ in range(2000)])
    ready, due = f"{d.table_prefix}jobs_ready", f"{d.table_prefix}jobs_due"
    if d.kind == "postgres":
        raw(d, f"VACUUM ANALYZE {d.conn.tables['J']}")  # dead rows of earlier tests would sway the planner
        pick = _pg_plan(d, PG_RESERVE, (d.channel, 0, 0.0, ""))
        promote = _pg_plan(d, PG_PROMOTE, (d.channel, 0))
        assert f"Index Scan using {ready}" in pick, pick
        # Either index-scan form is fine (the planner picks a bitmap scan for larger ranges).
        assert f"using {due}" in promote or f"Bitmap Index Scan on {due}" in promote, promote
        assert "Seq Scan" not in pick + promote, pick + promote
        cur = d.conn.cursor()
        cur.execute("EXPLAIN ANALYZE " + d.conn.render(COUNTS), (d.channel,) * 3)
        counts_plan = "\n".join(row[0] for row in cur.fetchall())
        # No delayed row is due: the count of due rows is skipped, not run over 20,000 delayed rows.
        assert "never executed" in counts_plan and "Rows Removed by Filter: 20000" not in counts_plan, counts_plan
    else:
        if d.kind == "sqlite":
            raw(d, "ANALYZE")
        pick = _plan(d, FIRST_WAITING, (d.channel, d.channel))
        promote = _plan(d, DUE_IDS, (d.channel, d.now()))
        assert ready in pick and "TEMP B-TREE" not in pick and "filesort" not in pick, pick
        assert due in promote, promote
    r = d.reserve(0)
    assert r is not None and r.payload == b"now"


def test_counts_stay_o1_reads_of_the_counter_rows(opened):
    d = opened()
    d.push_many([PushItem(b"x", ttr=60) for _ in range(50)])
    rows = raw(d, "SELECT count(*) FROM {C} WHERE channel = ?", (d.channel,))
    assert 1 <= rows[0][0] <= db_schema.SHARDS
    assert d.counts().waiting == 50


# -- errors and odd rows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pubq:s3cret@127.0.0.1:1/nowhere",
        "mysql://pubq:s3cret@127.0.0.1:1/nowhere",
        "sqlite:////nonexistent-dir/pubq/queue.db",
    ],
    ids=["postgres", "mysql", "sqlite"],
)
def test_an_unreachable_database_raises_driver_error_naming_it_without_the_password(url):
    d = DbDriver(url, unique_channel("down"))
    with pytest.raises(DriverError) as info:
        d.push(b"x", ttr=1)
    message = str(info.value)
    assert "cannot connect to the queue database" in message
    assert "127.0.0.1:1" in message or "nonexistent-dir" in message
    assert "s3cret" not in message
    assert info.value.__cause__ is not None
    with pytest.raises(DriverError):
        d.ping()
    d.close()


def test_a_missing_database_package_names_the_extra_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith(("psycopg", "pymysql")) else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install pubq\[postgres\]"):
        DbDriver("postgresql://postgres@127.0.0.1/test", "c")
    with pytest.raises(ConfigError, match=r"pip install pubq\[mysql\]"):
        DbDriver("mysql://root@127.0.0.1/test", "c")


@pytest.mark.parametrize("url", ["sqlite://relative.db", "redis://x/0", "nonsense"])
def test_a_bad_database_url_is_a_config_error(url):
    with pytest.raises(ConfigError):
        DbDriver(url, "c")


def test_a_row_with_a_garbage_payload_still_round_trips_as_bytes(opened):
    d = opened()
    jid = d.push(b"{}", ttr=30)
    garbage = {
        # SQLite is dynamically typed: a hand-written row may hold TEXT where the driver writes BLOB
        "sqlite": ("'not json \u00ff'", "not json \u00ff".encode()),
        "postgres": ("'\\xff00fe'::bytea", b"\xff\x00\xfe"),
        "mysql": ("X'FF00FE'", b"\xff\x00\xfe"),
    }[d.kind]
    raw(d, f"UPDATE {{J}} SET payload = {garbage[0]} WHERE id = ?", (jid,))
    assert d.get(jid).payload == garbage[1]
    r = d.reserve(0)
    assert type(r.payload) is bytes and r.payload == garbage[1]
    assert d.ack(r) is True


def test_postgres_push_notifies_listeners_of_the_queue(tmp_path):
    d, cleanup = open_driver("postgres", tmp_path)
    listener = d.db._connect()
    try:
        listener.autocommit = True
        listener.cursor().execute(f'LISTEN "{d._notify_name}"')
        d.push(b"wake up", ttr=5)
        end = time.monotonic() + 5
        while not listener.notifies and time.monotonic() < end:
            if select.select([listener], [], [], 0.5)[0]:
                listener.poll()
        assert [n.channel for n in listener.notifies] == [d._notify_name]
    finally:
        listener.close()
        cleanup()


@pytest.mark.parametrize("server", ["postgres", "mysql"])
def test_a_killed_server_session_is_replaced_reads_recover_and_a_write_fails_once_then_works(
    server, tmp_path
):
    d, cleanup = open_driver(server, tmp_path)
    killer, _ = open_driver(server, tmp_path)  # a second connection of the same session tables
    try:
        d.push(b"a", ttr=30)

        def kill_my_session() -> None:
            if server == "postgres":
                pid = d.conn.read("SELECT pg_backend_pid() AS pid")["pid"]
                raw(killer, "SELECT pg_terminate_backend(?)", (pid,))
            else:
                pid = d.conn.read("SELECT CONNECTION_ID() AS pid")["pid"]
                raw(killer, f"KILL {int(pid)}")

        kill_my_session()
        assert d.counts().waiting == 1  # a read reconnects by itself
        kill_my_session()
        with pytest.raises(DriverError) as info:  # a write may have landed: reported, not repeated
            d.push(b"b", ttr=30)
        assert info.value.__cause__ is not None
        d.push(b"c", ttr=30)  # the next call has a new connection
        assert d.counts().waiting == 2
    finally:
        killer.close()
        cleanup()


def test_sqlite_writers_queue_on_the_lock_file_and_a_forked_child_has_its_own(tmp_path):
    import fcntl

    d, cleanup = open_driver("sqlite", tmp_path)
    try:
        d.push(b"first", ttr=30)  # opens the gate
        gate = tmp_path / "queue.db-pubq.lock"
        assert gate.exists()
        holder = os.open(gate, os.O_RDWR)
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process's writer in the middle of its transaction
        done = threading.Event()
        pusher = threading.Thread(target=lambda: (d.push(b"second", ttr=30), done.set()))
        pusher.start()
        assert not done.wait(0.3), "the write did not wait for the gate"
        fcntl.flock(holder, fcntl.LOCK_UN)
        assert done.wait(10)
        pusher.join()
        os.close(holder)
        # a child forked while the parent's descriptor is open must not share the parent's lock
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                d.push(b"from the child", ttr=30)
                code = 0
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert d.counts().waiting == 3
    finally:
        cleanup()


# -- the statements ---------------------------------------------------------------------------------


def test_every_statement_is_named_with_its_guarantee_and_renders_on_every_dialect():
    from pubq.drivers import db_sql_catalog

    statements = db_sql_catalog.all_statements()
    assert {"ACK", "FIRST_WAITING", "PG_RESERVE", "HEARTBEAT[mysql]", "LIST_AFTER[failed]"} <= set(statements)
    tokens = {"J": "j", "C": "c", "F": "f", "Q": "q", "W": "w", "U": "u", "M": "m", "L": "l", "T": "t",
              "NOW": "now()", "LOCK": "", "SKIP": "", "IDS": "?"}
    for name, statement in statements.items():
        assert statement.guarantee.strip() and "\n" not in statement.guarantee, name
        statement.sql.format(**tokens)  # every {token} is one of the documented ones
        assert "{" not in statement.sql.format(**tokens), name


def test_the_db_driver_reads_rows_by_column_name_never_by_position():
    import re
    from pathlib import Path

    import pubq.drivers

    folder = Path(pubq.drivers.__file__).parent
    for module in ("db.py", "db_ops.py", "db_conn.py", "db_rows.py", "db_inspect.py", "db_batch.py", "db_unique.py",
                   "db_limits.py"):
        text = (folder / module).read_text()
        found = re.findall(r"\b(?:row|rows\[0\]|fetchone\(\))\[\d+\]", text)
        assert not found, f"{module} reads a row by position: {found}"


# -- per-key limits: rows of idle keys go ------------------------------------------------------------


def _limit_keys(driver) -> set[str]:
    return {str(row["lkey"]) for row in driver.conn.read_all("SELECT lkey FROM {L} WHERE channel = ?",
                                                             (driver.channel,))}


def test_limits_rows_of_idle_keys_are_swept_in_bounded_batches(opened) -> None:
    driver = opened()
    tag = uuid.uuid4().hex[:6]
    busy, spent, window, waiting = (f"{name}-{tag}" for name in ("busy", "spent", "window", "waiting"))
    rs = []
    for _ in range(6):
        driver.push(b'{"job":"x"}', ttr=30)
    rs = [driver.reserve(0) for _ in range(6)]
    assert driver.limit_acquire(rs[0], busy, concurrency=1) == 0  # a live slot: kept
    assert driver.limit_acquire(rs[1], spent, concurrency=1) == 0
    assert driver.ack(rs[1])  # its slot's lease ended: idle
    assert driver.limit_acquire(rs[2], window, rate=1, per=3600) == 0  # a start in its window: kept
    assert driver.limit_acquire(rs[3], waiting, concurrency=1) == 0
    assert driver.limit_acquire(rs[4], waiting, concurrency=1) > 0  # a waiter still delayed: kept
    assert driver.ack(rs[3])
    idle_keys = [f"idle{i}-{tag}" for i in range(5)]
    for key in idle_keys:  # their jobs ended and they have no rate: nothing left to remember
        driver.push(b'{"job":"x"}', ttr=30)
        r = driver.reserve(0)
        assert driver.limit_acquire(r, key, concurrency=2) == 0
        assert driver.ack(r)
    assert _limit_keys(driver) == {busy, spent, window, waiting, *idle_keys}
    deleted = [driver.sweep_limits(batch=3) for _ in range(4)]  # 9 rows, 3 per call: each seen once
    assert all(n <= 3 for n in deleted) and sum(deleted) == 6
    assert _limit_keys(driver) == {busy, window, waiting}
    assert driver.limit_acquire(rs[5], busy, concurrency=1) > 0  # the kept slot still counts
    assert driver.sweep_limits() == 0


def test_limit_calls_sweep_idle_rows_on_their_own(opened) -> None:
    from pubq.drivers import db_limits

    driver = opened()
    for i in range(db_limits.SWEEP_EVERY):  # no limit_release: each key's row stays behind its job
        driver.push(b'{"job":"x"}', ttr=30)
        r = driver.reserve(0)
        assert driver.limit_acquire(r, f"once-{i}", concurrency=1) == 0
        assert driver.ack(r)
    assert len(_limit_keys(driver)) <= db_limits.SWEEP_EVERY - min(db_limits.SWEEP_BATCH, db_limits.SWEEP_EVERY - 1)


def test_a_release_leaving_nothing_to_remember_keeps_the_row_until_the_sweep(opened) -> None:
    driver = opened()
    for _ in range(2):
        driver.push(b'{"job":"x"}', ttr=30)
    r = driver.reserve(0)
    assert driver.limit_acquire(r, "alone", concurrency=1) == 0
    assert _limit_keys(driver) == {"alone"}
    assert driver.ack(r)
    driver.limit_release(r, "alone")
    assert _limit_keys(driver) == {"alone"}  # the key's next job finds it in one statement
    nxt = driver.reserve(0)
    assert driver.limit_acquire(nxt, "alone", concurrency=1) == 0  # the released slot is free
    assert driver.sweep_limits() == 0  # a live slot: kept
    assert driver.ack(nxt)
    driver.limit_release(nxt, "alone")
    assert driver.sweep_limits() == 1 and _limit_keys(driver) == set()
