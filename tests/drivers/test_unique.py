"""Unique keys on every driver (spec §7.9): atomic with the push, released at the documented point.

Release is read from the holder's state at push time, so each test drives the holder to one end
(ack, final failure, remove, cancel, reclaim after a lost worker, first reserve, expiry) and checks
that a push of the same key is refused before and accepted after, never earlier.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import replace

import pytest

from pubq.drivers.base import CancelState, FailureInfo, ReclaimKind, UniqueSpec
from tests.drivers.backends import DB_TABLE_PREFIX, DRIVER_KINDS, kind_params, unique_channel
from tests.helpers import wait_until

INFO = FailureInfo("app.Boom", "boom", "Traceback…", "")
DONE = UniqueSpec("k")


def push(driver, spec: UniqueSpec = DONE, payload: bytes = b"p", **kw):
    return driver.push_unique(payload, ttr=kw.pop("ttr", 60), unique=spec, **kw)


def held(driver, job_id: int, spec: UniqueSpec = DONE) -> bool:
    """Whether a push of the key is refused as a duplicate of ``job_id`` (a new job otherwise)."""
    got, created = push(driver, spec, b"probe")
    if created:
        driver.remove(got)  # the probe's own job: drop it, its record is released with it
        return False
    assert got == job_id
    return True


def test_a_duplicate_returns_the_holders_id_and_stores_nothing(driver):
    first, created = push(driver)
    assert created is True
    assert push(driver, payload=b"other") == (first, False)
    assert driver.counts().waiting == 1
    other, created = push(driver, UniqueSpec("k2"))
    assert created is True and other != first
    assert driver.get(first).payload == b"p"


def test_done_releases_at_ack_and_not_while_running(driver):
    job_id, _ = push(driver)
    r = driver.reserve(0)
    assert r.job_id == job_id
    assert held(driver, job_id)
    assert driver.ack(r) is True
    assert not held(driver, job_id)


def test_done_holds_through_a_retry_and_an_unsettled_failure_and_releases_when_settled(driver):
    job_id, _ = push(driver)
    r = driver.reserve(0)
    assert driver.retry_later(r, 0, INFO) is True
    assert held(driver, job_id)  # another attempt follows: not final
    r = driver.reserve(0)
    assert driver.fail(r, INFO) is True
    assert held(driver, job_id)  # unsettled: its handlers may still decide to retry
    assert driver.settle(r) is True
    assert not held(driver, job_id)


def test_an_unfailed_attempt_keeps_holding(driver):
    job_id, _ = push(driver)
    r = driver.reserve(0)
    driver.fail(r, replace(INFO, retry_delay=0))
    assert driver.unfail(r, 0) is True
    assert held(driver, job_id)


def test_remove_and_cancel_release(driver):
    job_id, _ = push(driver)
    assert driver.remove(job_id) is True
    assert not held(driver, job_id)
    job_id, _ = push(driver)
    result = driver.cancel(job_id, "operator")
    assert result.state is CancelState.CANCELLED
    assert held(driver, job_id)  # the cancel's afterError has not run yet
    assert driver.settle(result.reservation) is True
    assert not held(driver, job_id)


def test_start_releases_at_the_first_reserve(driver):
    spec = UniqueSpec("s", until="start")
    job_id, _ = push(driver, spec, delay=30)
    assert held(driver, job_id, spec)  # delayed, not started
    other, _ = push(driver, UniqueSpec("s2", until="start"))
    r = driver.reserve(0)
    assert r.job_id == other
    assert not held(driver, other, UniqueSpec("s2", until="start"))
    assert held(driver, job_id, spec)


def test_ttl_holds_whatever_the_job_does_until_it_expires(driver):
    spec = UniqueSpec("t", until="ttl", ttl=1.0)
    job_id, _ = push(driver, spec)
    r = driver.reserve(0)
    assert driver.ack(r) is True
    early = push(driver, spec, b"again")
    if early[1]:  # only when a second passed since the push (a slow machine): then it must be later
        assert driver.now() >= driver.now() - 1
    else:
        assert early[0] == job_id
        wait_until(lambda: push(driver, spec, b"again")[1], timeout=10, message="the key's expiry")


def test_unique_for_releases_a_done_key_at_its_time_even_while_the_job_waits(driver):
    spec = UniqueSpec("f", until="done", ttl=0.5)
    job_id, _ = push(driver, spec)
    wait_until(lambda: push(driver, spec, b"later")[1], timeout=10, message="unique_for to run out")
    assert driver.counts().waiting == 2 and driver.get(job_id) is not None


def test_a_lost_workers_job_keeps_its_key_until_the_reclaimer_ends_it(make_driver):
    driver = make_driver(grace=0, hold=60)
    job_id, _ = push(driver, ttr=1)
    dead = driver.reserve(0)  # the worker is SIGKILLed while holding it: nobody acks
    assert dead.job_id == job_id
    (item,) = wait_until(lambda: driver.reclaim_expired(), timeout=10, message="the lost job")
    assert item.kind is ReclaimKind.LOST
    assert held(driver, job_id)  # reclaimed, not ended
    assert driver.fail(item.reservation, INFO) is True and held(driver, job_id)
    assert driver.settle(item.reservation) is True
    assert not held(driver, job_id)


def _unique_keys(kind: str, driver) -> set[str]:
    if kind == "redis-sharded":  # each key's record lives on the shard its key hashes to
        return {k.decode() for shard in driver._all() for k in shard.client.hkeys(f"{{{shard.channel}}}:unique")}
    if kind.startswith("redis"):
        return {k.decode() for k in driver.client.hkeys(f"{{{driver.channel}}}:unique")}
    if kind == "memory":
        return set(driver._unique)
    return {row["ukey"] for row in driver.conn.read_all("SELECT ukey FROM {U} WHERE channel = ?", (driver.channel,))}


def test_released_records_are_swept(kind, make_driver):
    driver = make_driver()
    done, _ = push(driver, UniqueSpec("acked"))
    driver.ack(driver.reserve(0))
    for i in range(3):
        push(driver, UniqueSpec(f"gone{i}", until="ttl", ttl=0.05))
    expired_at = driver.now() + 0.1
    wait_until(lambda: driver.now() > expired_at, timeout=10, message="the records to expire")
    push(driver, UniqueSpec("live0"))
    if kind != "memory" and not kind.startswith("redis"):  # SQL sweeps every 32nd unique push: run it now
        driver._sweep_unique()
    else:  # a unique push looks at 3 due records; the acked one is due in RECHECK s, not yet
        push(driver, UniqueSpec("live1"))
    keys = _unique_keys(kind, driver)
    assert not any(k.startswith("gone") for k in keys), keys
    assert "live0" in keys and not held(driver, done, UniqueSpec("acked"))


def test_marks_only_move_forward(driver):
    assert driver.mark_get("sched:a") is None
    assert driver.mark_advance("sched:a", 100.5) == 100.5
    assert driver.mark_advance("sched:a", 50.0) == 100.5
    assert driver.mark_advance("sched:a", 200.25) == 200.25
    assert driver.mark_get("sched:a") == 200.25
    assert driver.mark_get("sched:b") is None


# -- concurrency: 8 pushers, 1,000 pushes each, one key -------------------------------------------

PUSHERS = 8
PUSHES = 1000


def _pusher(kind: str, tmp: str, channel: str, prefix: str, start, out) -> None:
    from pubq.drivers.db import DbDriver
    from pubq.drivers.redis import RedisDriver
    from tests.drivers.backends import MYSQL_URL, POSTGRES_URL, REDIS_URL, pgbouncer_url

    if kind == "redis":
        driver = RedisDriver(REDIS_URL, channel)
    elif kind.startswith("redis-"):  # the parent's topology (tests/topology.py; inherited over the fork)
        from pubq.drivers.sharded import ShardedDriver
        from tests.topology import session_cluster, session_sentinel

        if kind == "redis-sentinel":
            driver = RedisDriver(session_sentinel().url, channel)
        elif kind == "redis-cluster":
            driver = RedisDriver(session_cluster().url, channel)
        else:
            driver = ShardedDriver(session_cluster().url, channel, shards=3, key_of=lambda payload: "b")
    elif kind == "sqlite":
        driver = DbDriver(f"sqlite:///{tmp}/queue.db", channel)
    else:  # the parent's tables (their prefix names the parent's pid)
        url = {"postgres": POSTGRES_URL, "mysql": MYSQL_URL}.get(kind) or pgbouncer_url(kind.partition("-")[2])
        driver = DbDriver(url, channel, table_prefix=prefix)
    try:
        driver.ping()
        start.wait(30)
        ids = {push(driver, UniqueSpec("race"), b"race")[0] for _ in range(PUSHES)}
        out.put(sorted(ids))
    finally:
        driver.close()


@pytest.mark.slow
# Row locking is the server's: through PgBouncer it is the same PostgreSQL, so the race runs once there.
@pytest.mark.parametrize("kind", kind_params(tuple(k for k in DRIVER_KINDS if not k.startswith("pgbouncer"))))
def test_eight_processes_pushing_one_key_a_thousand_times_store_one_job(kind, make_driver, tmp_path):
    channel = unique_channel("race")
    driver = make_driver(channel=channel)
    if kind == "memory":  # one process's memory: threads race for its lock instead
        results: list[set[int]] = []
        start = threading.Barrier(PUSHERS)

        def run() -> None:
            start.wait()
            results.append({push(driver, UniqueSpec("race"), b"race")[0] for _ in range(PUSHES)})

        threads = [threading.Thread(target=run) for _ in range(PUSHERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seen = set().union(*results)
    else:
        ctx = multiprocessing.get_context("fork")  # each child opens its own driver after the fork
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_pusher, args=(kind, str(tmp_path), channel, DB_TABLE_PREFIX, start, out))
                 for _ in range(PUSHERS)]
        for p in procs:
            p.start()
        start.set()
        seen = set()
        for _ in procs:
            seen.update(out.get(timeout=110))
        for p in procs:
            p.join(10)
            assert p.exitcode == 0
    counts = driver.counts()
    assert len(seen) == 1, seen
    assert counts.waiting == 1 and counts.delayed == 0
