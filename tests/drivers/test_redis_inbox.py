"""The Redis inbox (issue 17): a plain push is one LPUSH; scripts ingest it; idle workers BLMOVE it.

Real Redis at ``PUBQ_TEST_REDIS_URL`` (a private one where a test needs a lost reply); keys of
channels the tests create only.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pubq.drivers.base import CancelState, FailureInfo, JobStatus, PushItem
from pubq.drivers.redis import KEY_NAMES, RedisDriver
from pubq.drivers.redis_inbox import MAX_EXTRA, pack
from pubq.worker import Worker
from tests.drivers.backends import REDIS_URL
from tests.drivers.test_redis_specific import wait_for
from tests.helpers import PrivateRedis, make_queue

NOOP = b'{"job": "tests.Noop", "args": {}}'


@pytest.fixture
def make(make_redis: Callable[..., RedisDriver]) -> Callable[..., RedisDriver]:
    return make_redis


def key(driver: RedisDriver, name: str) -> str:
    return f"{{{driver.channel}}}:{name}"


def inbox(driver: RedisDriver) -> list[bytes]:
    return driver.client.lrange(key(driver, "inbox"), 0, -1)


def entries(driver: RedisDriver) -> list[bytes]:
    """The inbox without its wake markers (a read that ingested jobs leaves some for sleepers)."""
    return [e for e in inbox(driver) if e != b"~"]


def named_waiter(driver: RedisDriver) -> tuple[RedisDriver, str]:
    name = f"pubq-test-{uuid.uuid4().hex[:10]}"
    return RedisDriver(redis.Redis.from_url(REDIS_URL, client_name=name), driver.channel), name


def blocked_in_blmove(driver: RedisDriver, *names: str) -> bool:
    cmds = {c.get("name"): c.get("cmd") for c in driver.client.client_list()}
    return all(cmds.get(n) == "blmove" for n in names)


@contextmanager
def blocked_waiter(driver: RedisDriver, timeout: float) -> Iterator[tuple[list[Any], str]]:
    """Another worker's ``reserve(timeout)`` in a thread, blocked in its BLMOVE when the block starts;
    yields the list its result lands in (once the thread is joined, at the end) and its client name."""
    waiter, name = named_waiter(driver)
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(waiter.reserve(timeout=timeout)))
    thread.start()
    try:
        wait_for(lambda: blocked_in_blmove(driver, name), what="the reserve to block")
        yield found, name
    finally:
        thread.join(timeout + 5)
        waiter.client.close()


def test_a_plain_push_is_one_inbox_entry_and_ids_come_from_blocks(make):
    driver = make()
    ids = [driver.push(b"p%d" % i, ttr=60, priority=7) for i in range(12)]
    assert ids == list(range(1, 13))
    entries = inbox(driver)[::-1]  # oldest first
    assert [e.split(b"|")[:3] for e in entries] == [[b"%d" % i, b"60", b"7"] for i in ids]
    assert all(e.endswith(b"|p%d" % n) for n, e in enumerate(entries))
    # refills at the 1st and 2nd push took 1 and MAX_EXTRA + 1 ids; 12 used
    assert int(driver.client.hget(key(driver, "stats"), "id")) == 1 + MAX_EXTRA + 1
    assert driver.counts().waiting == 12
    assert [driver.reserve().job_id for _ in ids] == ids  # type: ignore[union-attr]


def test_a_one_shot_push_reserves_no_spare_id_and_a_busy_producer_refills_every_256(make):
    driver = make()
    driver.push(b"x", ttr=60)
    assert int(driver.client.hget(key(driver, "stats"), "id")) == 1
    for _ in range(599):
        driver.push(b"x", ttr=60)
    reserved = int(driver.client.hget(key(driver, "stats"), "id"))
    # 1 id for the first push, then blocks of 256 at the 2nd, 258th and 514th
    assert reserved == 1 + 3 * (MAX_EXTRA + 1)


def test_fifo_holds_across_stage_and_inbox(make):
    """Entries a worker's BLMOVE left in stage (it died, or has not ingested yet) run before the
    inbox's, each list oldest first."""
    driver = make()
    ids = [driver.push(b"%d" % i, ttr=60) for i in range(5)]
    for _ in range(2):  # what two idle workers' BLMOVEs do: the two oldest, into stage
        driver.client.lmove(key(driver, "inbox"), key(driver, "stage"), "RIGHT", "LEFT")
    taken = []
    while (r := driver.reserve()) is not None:
        taken.append(r.job_id)
    assert taken == ids


def test_two_blocked_workers_take_the_two_oldest_jobs(make):
    producer = make()
    waiters = [named_waiter(producer) for _ in range(2)]
    found: list[Any] = []
    threads = [threading.Thread(target=lambda w=w: found.append(w.reserve(timeout=20))) for w, _ in waiters]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: blocked_in_blmove(producer, *(n for _, n in waiters)), what="both reserves to block")
        ids = [producer.push(b"%d" % i, ttr=60) for i in range(3)]
    finally:
        for t in threads:
            t.join(25)
    assert sorted(r.job_id for r in found) == ids[:2]
    last = producer.reserve()
    assert last is not None and last.job_id == ids[2]
    for w, _ in waiters:
        w.client.close()


@pytest.mark.parametrize("wake", ["release", "requeue_failed"])
def test_a_blocked_worker_wakes_on_a_marker(make, wake):
    driver = make()
    driver.push(b"x", ttr=60)
    r = driver.reserve()
    assert r is not None
    with blocked_waiter(driver, 20) as (found, _):
        if wake == "release":
            assert driver.release(r)
        else:
            assert driver.fail(r, FailureInfo("E", "m"))
            assert driver.requeue_failed(r.job_id)
    assert found and found[0] is not None and found[0].job_id == r.job_id
    assert inbox(driver) == [] and driver.client.llen(key(driver, "stage")) == 0  # the marker was dropped


def test_get_status_remove_and_cancel_see_a_job_still_in_the_inbox(make):
    driver = make()
    first = driver.push(b"a", ttr=60)
    assert len(entries(driver)) == 1
    info = driver.get(first)
    assert info is not None and (info.status, info.payload, info.ttr) == (JobStatus.WAITING, b"a", 60)

    second = driver.push(b"b", ttr=60)
    assert len(entries(driver)) == 1
    assert driver.status(second) is JobStatus.WAITING

    third = driver.push(b"c", ttr=60)
    assert len(entries(driver)) == 1
    assert driver.remove(third)
    assert driver.status(third) is JobStatus.DONE

    fourth = driver.push(b"d", ttr=60)
    assert len(entries(driver)) == 1
    assert driver.cancel(fourth, "no").state is CancelState.CANCELLED
    assert driver.status(fourth) is JobStatus.FAILED
    assert [r.job_id for r in iter(driver.reserve, None)] == [first, second]


def test_counts_include_inbox_entries_but_not_wake_markers(make):
    driver = make()
    driver.push_many([PushItem(b"s", 60) for _ in range(3)])  # stored by the script, 3 markers
    driver.push(b"i1", ttr=60)
    driver.push(b"i2", ttr=60)
    assert inbox(driver).count(b"~") == 3 and len(inbox(driver)) == 5
    assert driver.counts().waiting == 5
    # the read ingested the two pushes and dropped the three markers, and left one marker per job it
    # ingested: a worker between its empty reserve and its BLMOVE would else sleep past those jobs
    assert inbox(driver) == [b"~", b"~"]
    assert driver.client.hget(key(driver, "stats"), "markers") == b"2"
    assert driver.counts().waiting == 5
    assert inbox(driver) == [] and driver.client.hget(key(driver, "stats"), "markers") == b"0"


def deep_inbox(driver: RedisDriver, n: int) -> list[int]:
    """``n`` entries in the inbox, as n plain pushes would leave them (ids reserved first)."""
    last = int(driver.client.hincrby(key(driver, "stats"), "id", n))
    ids = list(range(last - n + 1, last + 1))
    pipe = driver.client.pipeline(transaction=False)
    for start in range(0, n, 1000):
        pipe.lpush(key(driver, "inbox"), *(pack(i, 60, 5, b"j%d" % i, 1.0) for i in ids[start:start + 1000]))
    pipe.execute()
    return ids


def test_an_inbox_deeper_than_one_ingest_is_counted_and_found(make):
    driver = make()
    ids = deep_inbox(driver, 10_500)  # a read ingests 10,000 per call
    assert driver.counts().waiting == 10_500
    assert driver.client.llen(key(driver, "inbox")) > 0, "one read must not ingest it all"
    info = driver.get(ids[-1])  # the newest: past what one call ingests
    assert info is not None and info.payload == b"j%d" % ids[-1]
    assert driver.counts().waiting == 10_500
    r = driver.reserve()
    assert r is not None and r.job_id == ids[0]


def test_the_same_entry_twice_is_stored_and_run_once(make):
    driver = make()
    job_id = driver.push(b"once", ttr=60)
    (entry,) = inbox(driver)
    driver.client.lpush(key(driver, "inbox"), entry)
    assert driver.counts().waiting == 1
    driver.client.lpush(key(driver, "inbox"), entry)  # after it was stored: still once
    r = driver.reserve()
    assert r is not None and r.job_id == job_id
    assert driver.reserve() is None and driver.counts().waiting == 0


def test_an_unparseable_entry_becomes_a_failed_invalid_job_not_lost(make):
    driver = make()
    ok = driver.push(NOOP, ttr=60)
    driver.client.lpush(key(driver, "inbox"), b"not an entry")
    driver.client.lpush(key(driver, "inbox"), b"0|60|5|1.0|an id that cannot be one")
    assert driver.counts().waiting == 3
    assert Worker(make_queue(driver), isolate=False, install_signals=False).run() == 0
    failed = {f.payload: f for f in driver.failed_list()}
    assert set(failed) >= {b"not an entry", b"0|60|5|1.0|an id that cannot be one"}
    for entry in (b"not an entry", b"0|60|5|1.0|an id that cannot be one"):
        f = failed[entry]
        assert f.error_class == "InvalidJobError" and "inbox entry that does not parse" in f.message
        assert f.job_id not in (ok, 0)
    assert driver.counts().waiting == 0 and driver.status(ok) is JobStatus.DONE


def test_a_block_that_outlived_a_lost_counter_still_pushes_jobs_and_raises_the_counter(make):
    """Redis restarted without persistence, or a FLUSHALL: the producer's id block is above the
    queue's counter. Its pushes are jobs under their ids, and later blocks start above them."""
    driver = make()
    for _ in range(4):
        driver.push(NOOP, ttr=60)
    driver.reserve_many(10)  # ingested and taken: the inbox is empty
    for name in KEY_NAMES:  # everything is gone, the counter too (a restart without persistence)
        driver.client.delete(key(driver, name))
    job_id = driver.push(NOOP, ttr=60)
    assert job_id > 1 and driver.counts().waiting == 1
    assert int(driver.client.hget(key(driver, "stats"), "id")) >= job_id
    r = driver.reserve()
    assert r is not None and (r.job_id, r.payload, r.unreadable) == (job_id, NOOP, "")
    assert driver.ack(r)
    other = RedisDriver(driver.client, driver.channel)
    assert other.push(NOOP, ttr=60) > job_id


def test_a_block_that_outlived_a_rolled_back_counter_never_loses_a_job(make):
    """A failover to a replica that missed a block's HINCRBY: another producer is handed the same
    ids. Both jobs under one id are kept (the later one under a fresh id), none is taken for a
    repeat; a true repeat (the same entry again) is still stored once."""
    a = make()
    for _ in range(4):
        a.push(b"a-warm", ttr=60)
    assert a.counts().waiting == 4  # ingested
    first = a._inbox._next
    assert a._inbox._last > first  # a holds ids first.. in its block
    a.client.hset(key(a, "stats"), "id", first - 1)  # the counter rolled back below a's block
    b = RedisDriver(a.client, a.channel)
    b_id = b.push(b"from b", ttr=60)  # b's refill hands out `first` again
    assert b_id == first and a.counts().waiting == 5  # b's job is stored under `first`
    a_id = a.push(b"from a", ttr=60)
    assert a_id == first
    (entry,) = entries(a)
    a.client.lpush(key(a, "inbox"), entry)  # a's push retried: the same entry twice
    assert a.counts().waiting == 4 + 2
    payloads = []
    while (r := a.reserve()) is not None:
        payloads.append(r.payload)
        assert a.ack(r)
    assert sorted(payloads) == sorted([b"a-warm"] * 4 + [b"from a", b"from b"])


def test_the_same_id_twice_in_one_ingest_keeps_both_jobs_unless_it_is_the_same_entry(make):
    driver = make()
    driver.push(NOOP, ttr=60)
    top = int(driver.client.hget(key(driver, "stats"), "id"))
    twice = pack(top + 1, 60, 5, b"one", 1.0)
    driver.client.lpush(key(driver, "inbox"), twice, twice, pack(top + 1, 60, 5, b"another", 1.0))
    assert driver.counts().waiting == 1 + 2
    got = []
    while (r := driver.reserve()) is not None:
        got.append((r.job_id, r.payload))
        assert driver.ack(r)
    ids = {p: i for i, p in got}
    assert len(got) == 3 and ids[b"one"] == top + 1 and ids[b"another"] > top + 1


def test_a_forked_child_never_reuses_its_parents_ids(make):
    driver = make()
    driver.push(b"p", ttr=60)
    driver.push(b"p", ttr=60)  # this refill reserved one more id: the block holds it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.write(write, b"%d" % driver.push(b"child", ttr=60))
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = int(os.read(read, 64))
    os.close(read)
    parent = driver.push(b"parent", ttr=60)
    assert status == 0 and child != parent
    assert driver.counts().waiting == 4
    assert sorted(driver.get(i).payload for i in (child, parent)) == [b"child", b"parent"]  # type: ignore[union-attr]


def test_a_paused_queue_starts_nothing_pushed_to_its_inbox(make):
    driver = make()
    driver.pause()
    job_id = driver.push(b"x", ttr=60)
    assert driver.reserve(timeout=0.3) is None
    assert driver.status(job_id) is JobStatus.WAITING
    driver.resume()
    r = driver.reserve(timeout=5)
    assert r is not None and r.job_id == job_id


def test_a_worker_blocked_on_a_paused_queue_is_woken_by_a_push_but_starts_nothing(make):
    driver = make()
    driver.pause()
    with blocked_waiter(driver, 30) as (found, name):
        job_id = driver.push(b"x", ttr=60)

        def back_to_sleep() -> bool:  # its BLMOVE took the entry, its reserve stored it and took nothing
            return (driver.client.llen(key(driver, "stage")) == 0 and entries(driver) == []
                    and driver.client.hexists(key(driver, "meta"), job_id) and blocked_in_blmove(driver, name))

        wait_for(back_to_sleep, what="the woken worker to store the job and block again")
        assert found == [] and driver.status(job_id) is JobStatus.WAITING
        driver.resume()
    assert found and found[0] is not None and found[0].job_id == job_id


class DropOneReply:
    """A TCP proxy to a Redis that, once armed, forwards the next command and drops its reply (and
    the connection): a push that landed but whose client never heard so."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.armed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        with client, server:
            while data := client.recv(65536):
                drop = self.armed.is_set()
                self.armed.clear()
                server.sendall(data)
                reply = server.recv(65536)
                if drop:
                    return  # the command ran; its reply is lost with the connection
                client.sendall(reply)

    def close(self) -> None:
        self.listener.close()


def test_a_push_whose_reply_was_lost_is_retried_and_stored_once(tmp_path):
    from pubq.drivers.resilient import OutageBudget, ResilientDriver

    with PrivateRedis() as server:
        proxy = DropOneReply(server.port)
        # redis-py does not retry by itself: the retry is ResilientDriver's, which resends the entry
        through = RedisDriver(redis.Redis(port=proxy.port, retry=Retry(NoBackoff(), 0)), "pubq-test:lost")
        direct = RedisDriver(server.url, "pubq-test:lost")
        try:
            resilient = ResilientDriver(through, budget=OutageBudget(give_up_after=30), sleep=lambda s: None)
            resilient.push(b"a", ttr=60)
            resilient.push(b"b", ttr=60)  # the refill kept one id: the next push is a plain LPUSH
            proxy.armed.set()
            job_id = resilient.push(b"lost reply", ttr=60)
            assert not proxy.armed.is_set(), "the proxy dropped nothing"
            entries = direct.client.lrange(key(direct, "inbox"), 0, -1)
            assert entries[0] == entries[1] and entries[0].startswith(b"%d|" % job_id)  # sent twice
            taken = [r.job_id for r in iter(direct.reserve, None)]
            assert taken == [1, 2, job_id]
        finally:
            proxy.close()
            through.client.close()
            direct.close()
