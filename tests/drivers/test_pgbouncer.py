"""PostgreSQL behind PgBouncer: what the pooler changes for the ``db`` driver.

The whole conformance suite and the db-specific tests also run through a PgBouncer the tests start
(kinds ``pgbouncer-session`` and ``pgbouncer-transaction`` of ``backends.py``). These tests pin what
differs: behind a transaction pooler (``?pooler=transaction``) a blocking reserve polls instead of
LISTENing and nothing is prepared; behind a session pooler it LISTENs as on a direct connection; a
driver not told about a transaction pooler finds it out when its prepared statements vanish, and
drains correctly meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from pubq.database import parse_url
from pubq.drivers.base import PushItem, Reservation
from pubq.drivers.db import DbDriver
from pubq.errors import ConfigError
from tests.drivers.backends import DB_TABLE_PREFIX, open_driver, pgbouncer_url, unique_channel
from tests.helpers import wait_until


@pytest.fixture
def opened(tmp_path):
    cleanups: list[Callable[[], None]] = []

    def make(kind: str, **opts: Any) -> DbDriver:
        driver, cleanup = open_driver(kind, tmp_path, **opts)
        cleanups.append(cleanup)
        return driver

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


# -- the URL option ---------------------------------------------------------------------------


def test_the_pooler_option_is_pubqs_own_and_never_reaches_the_server():
    url = parse_url("postgresql://app:secret@db.example:6432/app?pooler=transaction&application_name=w")
    assert url.pooler == "transaction"
    assert "pooler" not in url.params and url.params["application_name"] == "w"
    assert parse_url("postgresql://app@db.example/app?pooler=Session").pooler == "session"
    assert parse_url("postgresql://app@db.example/app").pooler == "none"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://app:secret@h/app?pooler=pgbouncer", "pooler='pgbouncer' must be one of none, session, transaction"),
        ("mysql://root:secret@h/app?pooler=transaction", "unknown mysql URL option pooler"),
    ],
)
def test_a_bad_pooler_option_is_a_config_error_naming_it(url, words):
    with pytest.raises(ConfigError) as caught:
        parse_url(url)
    assert words in str(caught.value) and "secret" not in str(caught.value)


def test_a_pooler_given_to_the_driver_itself_is_checked():
    with pytest.raises(ConfigError, match="pooler must be one of none, session, transaction"):
        DbDriver("sqlite:///:memory:", "q", pooler="statement")


# -- pickup -----------------------------------------------------------------------------------


def _reserve_while_another_client_pushes(d: DbDriver, pusher: DbDriver) -> Reservation | None:
    """A blocking reserve of ``d`` in a thread; once it has looked at least twice (it is waiting),
    ``pusher`` pushes one job. Returns what the reserve got."""
    looks = []
    real_once = d._reserve_once

    def counting(*args: Any, **kwargs: Any) -> Any:
        looks.append(1)
        return real_once(*args, **kwargs)

    d._reserve_once = counting  # type: ignore[method-assign]
    got: list[Reservation | None] = []
    waiter = threading.Thread(target=lambda: got.append(d.reserve(timeout=20)))
    waiter.start()
    try:
        wait_until(lambda: len(looks) >= 2, message="the reserve to be waiting")
        pusher.push(b"wake up", ttr=30)
    finally:
        waiter.join(30)
    assert got, "the blocking reserve did not return"
    return got[0]


def test_behind_a_transaction_pooler_a_waiting_reserve_polls_and_picks_up_a_push(opened):
    d = opened("pgbouncer-transaction")
    pusher = opened("pgbouncer-transaction", channel=d.channel)
    assert d.conn.transaction_pooled and not d.conn.prepare_statements
    r = _reserve_while_another_client_pushes(d, pusher)
    assert r is not None and r.payload == b"wake up"
    assert d.conn.listener is None  # no LISTEN: it would stay on a server session others get
    assert d.ack(r) is True and d.counts().done == 1


def test_behind_a_session_pooler_a_waiting_reserve_listens_as_on_a_direct_connection(opened):
    d = opened("pgbouncer-session")
    pusher = opened("pgbouncer-session", channel=d.channel)
    assert not d.conn.transaction_pooled and d.conn.prepare_statements
    r = _reserve_while_another_client_pushes(d, pusher)
    assert r is not None and r.payload == b"wake up"
    assert d.conn.listener is not None
    assert d.ack(r) is True


# -- a transaction pooler the driver was not told about ---------------------------------------------


def test_a_driver_whose_prepared_statements_vanish_twice_stops_preparing_and_listening(opened):
    """As behind an undeclared transaction pooler (here: the session is reset under the driver)."""
    d = opened("postgres")
    d.push(b"first", ttr=30)
    assert d.reserve(timeout=0.05) is not None  # prepares its statements; opens no listener (a job was there)
    d.conn.listen(d._notify_name)
    assert d.conn.listener is not None
    for n in (2, 3):
        d.conn.cursor().execute("DEALLOCATE ALL")  # what a pooler handing us another session looks like
        d.push(b"again", ttr=30)  # refused once (26000), prepared again, run again
        assert d.counts().waiting == n - 1
    assert d.conn.transaction_pooled and not d.conn.prepare_statements
    assert d.conn.listener is None
    assert d.reserve(timeout=0.05) is not None and d.counts().waiting == 1


def test_an_undeclared_transaction_pooler_still_runs_each_job_exactly_once(opened, tmp_path):
    url = pgbouncer_url("transaction").replace("?pooler=transaction", "")
    channel = unique_channel("pgbouncer")
    drivers = [DbDriver(url, channel, table_prefix=DB_TABLE_PREFIX) for _ in range(3)]
    try:
        ids = drivers[0].push_many([PushItem(b"%d" % i, ttr=60) for i in range(300)])
        acked: list[list[int]] = [[] for _ in drivers[1:]]
        errors: list[BaseException] = []

        def drain(d: DbDriver, out: list[int]) -> None:
            try:
                r = d.reserve(0)
                while r is not None:
                    out.append(r.job_id)
                    ok, r = d.ack_and_reserve(r)
                    assert ok
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=drain, args=(d, out)) for d, out in zip(drivers[1:], acked, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        done = [j for out in acked for j in out]
        assert sorted(done) == sorted(ids)  # each once: none lost, none twice
        assert drivers[0].counts().done == 300 and drivers[0].counts().waiting == 0
    finally:
        drivers[0].clear()
        for d in drivers:
            d.close()
