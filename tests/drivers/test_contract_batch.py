"""Conformance of the batch steps a concurrent worker uses: ``reserve_many`` and
``ack_and_reserve_many`` (one step for up to n free slots), on every driver kind."""

from __future__ import annotations

import threading
from typing import Any

from pubq.drivers.base import Counts, JobStatus
from pubq.drivers.resilient import ResilientDriver
from tests.drivers.test_contract import EPS, push, wait_for


def test_reserve_many_takes_up_to_n_in_run_order_each_under_its_own_lease(driver):
    low = push(driver, b"low", priority=5)
    ids = [push(driver, b"%d" % i) for i in range(4)]
    got = driver.reserve_many(3, holder="w1")
    assert [r.job_id for r in got] == [low, ids[0], ids[1]]
    now = driver.now()
    for r in got:
        assert r.attempt == 1 and abs(r.deadline - (now + r.ttr)) < 2
        assert driver.status(r.job_id) is JobStatus.RESERVED
        assert driver.get(r.job_id).holder == "w1"
    assert driver.counts() == Counts(waiting=2, reserved=3)
    rest = driver.reserve_many(10)
    assert [r.job_id for r in rest] == ids[2:]
    assert driver.reserve_many(10) == [] and driver.reserve_many(0) == []
    for r in got + rest:
        assert driver.ack(r) is True
    assert driver.counts() == Counts(done=5)


def test_reserve_many_promotes_due_delayed_jobs_and_skips_paused_queues(driver):
    jid = push(driver, delay=0.2)
    assert driver.reserve_many(5) == []
    got = driver.reserve_many(5, timeout=5)
    assert [r.job_id for r in got] == [jid]
    push(driver)
    driver.pause()
    assert driver.reserve_many(5) == []
    driver.resume()
    assert len(driver.reserve_many(5)) == 1


def test_reserve_many_blocks_until_a_push_then_returns_what_is_due(make_driver):
    driver = make_driver()
    other = make_driver(channel=driver.channel)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.extend(driver.reserve_many(4, timeout=10)))
    t.start()
    try:
        jid = push(other)
    finally:
        t.join(15)
    assert [r.job_id for r in got] == [jid]


def test_ack_and_reserve_many_acks_each_and_refuses_stale_ones_then_fills_the_slots(driver):
    a, b, c = push(driver), push(driver), push(driver)
    first = driver.reserve_many(2, holder="w")
    assert [r.job_id for r in first] == [a, b]
    assert driver.remove(b) is True  # b's lease is gone
    d = push(driver)
    flags, nxt = driver.ack_and_reserve_many(first, 5, holder="w")
    assert flags == [True, False]
    assert [r.job_id for r in nxt] == [c, d]
    flags, nothing = driver.ack_and_reserve_many(nxt, 5)
    assert flags == [True, True] and nothing == []
    assert driver.counts() == Counts(done=3)
    assert driver.ack_and_reserve_many([], 0) == ([], [])


def test_each_batch_reservation_settles_on_its_own(driver):
    ids = [push(driver) for _ in range(3)]
    r1, r2, r3 = driver.reserve_many(3)
    assert driver.release(r2) is True
    assert driver.retry_later(r3, 0) is True
    flags, again = driver.ack_and_reserve_many([r1, r2], 5)
    assert flags == [True, False]  # r2 was released: its lease is stale
    assert sorted(r.job_id for r in again) == sorted(ids[1:])
    by_id = {r.job_id: r for r in again}
    assert by_id[ids[1]].attempt == 1 and by_id[ids[2]].attempt == 2
    assert all(abs(r.deadline - again[0].deadline) < 1 + EPS for r in again)


def test_two_consumers_never_get_the_same_job(make_driver):
    driver = make_driver()
    twin = make_driver(channel=driver.channel)
    ids = {push(driver) for _ in range(40)}
    seen: list[int] = []
    lock = threading.Lock()

    def consume(d: Any) -> None:
        while rs := d.reserve_many(7):
            with lock:
                seen.extend(r.job_id for r in rs)
            flags, _ = d.ack_and_reserve_many(rs, 0)
            assert all(flags)

    threads = [threading.Thread(target=consume, args=(d,)) for d in (driver, twin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(seen) == sorted(ids)
    wait_for(lambda: driver.counts() == Counts(done=40), what="all 40 done")


def test_the_resilient_driver_passes_batches_through(driver):
    view = ResilientDriver(driver, holder="wid")
    ids = [push(driver) for _ in range(3)]
    got = view.reserve_many(2)
    assert [r.job_id for r in got] == ids[:2] and driver.get(ids[0]).holder == "wid"
    flags, nxt = view.ack_and_reserve_many(got, 2)
    assert flags == [True, True] and [r.job_id for r in nxt] == ids[2:]
