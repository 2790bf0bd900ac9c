"""What only the Redis driver has: its key layout, the BLMOVE wake-up, scripts, connection errors.

The inbox (plain pushes, ingest, wake markers) has its own file, ``test_redis_inbox.py``.

The shared behaviour of every driver is in ``test_contract.py``; these run on the real Redis at
``PUBQ_TEST_REDIS_URL`` (never mocked) and touch only keys of channels they create.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from pubq.drivers.base import FailureInfo, FollowUpFailure, JobStatus, PushItem
from pubq.drivers.redis import KEY_NAMES, RedisDriver
from pubq.errors import BackendUnavailableError, DriverError
from tests.drivers.backends import REDIS_URL, unique_channel
from tests.helpers import PrivateRedis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make(make_redis: Callable[..., RedisDriver]) -> Callable[..., RedisDriver]:
    return make_redis


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stored_keys(driver: RedisDriver, pattern: str) -> set[str]:
    return {k.decode() for k in driver.client.scan_iter(match=pattern, count=1000)}


def fill_every_structure(driver: RedisDriver) -> None:
    driver.push(b"waiting", ttr=60)
    driver.push(b"delayed", ttr=60, delay=600)
    r = driver.reserve()
    assert r is not None
    driver.push(b"to fail", ttr=60)
    f = driver.reserve()
    assert f is not None
    driver.fail(f, FailureInfo("ValueError", "boom"))
    driver.record_follow_up(FollowUpFailure(1, 1, "afterExec", "h", "E", "m", "", 0.0))
    driver.push(b"waiting too", ttr=60)


def test_every_key_of_a_queue_shares_one_hash_tag_and_cluster_slot(make):
    channel = unique_channel("layout")
    driver = make(channel=channel)
    fill_every_structure(driver)

    keys = stored_keys(driver, f"{{{channel}}}*")
    assert keys, "the queue stored nothing"
    assert keys <= {f"{{{channel}}}:{name}" for name in KEY_NAMES}
    assert {key_slot(k.encode()) for k in keys} == {key_slot(channel.encode())}


def test_clear_deletes_only_its_own_keys_not_a_prefix_sibling_or_dotted_child(make):
    channel = unique_channel("clear")
    driver = make(channel=channel)
    siblings = [make(channel=channel + "2"), make(channel=channel + ".other")]
    for d in (driver, *siblings):
        fill_every_structure(d)
    for d in siblings:  # a read ingests their inboxes and leaves wake markers; the next drops them
        d.counts()
        d.counts()
    before = [(d.counts(), stored_keys(d, f"{{{d.channel}}}*")) for d in siblings]

    assert driver.clear() == 3  # waiting, delayed and reserved; the failed entry is not counted

    assert [(d.counts(), stored_keys(d, f"{{{d.channel}}}*")) for d in siblings] == before
    # only the counters survive: ids are never reused
    assert stored_keys(driver, f"{{{channel}}}*") == {f"{{{channel}}}:stats"}
    assert driver.push(b"after clear", ttr=60) > 4  # 4 pushes before


def test_a_worker_killed_while_blocked_in_blmove_loses_no_job(make):
    channel = unique_channel("blmove")
    name = f"pubq-test-{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in REDIS_URL else "?"
    script = textwrap.dedent(f"""
        from pubq.drivers.redis import RedisDriver
        d = RedisDriver({REDIS_URL + sep + 'client_name=' + name!r}, {channel!r})
        print("reserved", d.reserve(timeout=30), flush=True)
    """)
    driver = make(channel=channel)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        def blocked() -> bool:
            return any(c.get("name") == name and c.get("cmd") == "blmove" for c in driver.client.client_list())

        wait_for(blocked, what="the child to block in BLMOVE")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        wait_for(lambda: not any(c.get("name") == name for c in driver.client.client_list()),
                 what="Redis to drop the killed client")

        job_id = driver.push(b"after the kill", ttr=60)
        r = driver.reserve(timeout=5)
        assert r is not None and r.job_id == job_id and r.attempt == 1
        assert driver.counts().reserved == 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.stdout is not None and child.stdout.read() == b""  # it never got a job


def test_a_blocked_reserve_wakes_on_push_not_at_its_timeout(make):
    name = f"pubq-test-{uuid.uuid4().hex[:10]}"
    producer = make()
    waiter = RedisDriver(redis.Redis.from_url(REDIS_URL, client_name=name), producer.channel)
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(waiter.reserve(timeout=20)))
    started = time.monotonic()
    thread.start()
    try:
        wait_for(lambda: any(c.get("name") == name and c.get("cmd") == "blmove"
                             for c in producer.client.client_list()), what="the reserve to block")
        job_id = producer.push(b"wake up", ttr=60)
    finally:
        thread.join(25)
    assert found and found[0] is not None and found[0].job_id == job_id
    assert time.monotonic() - started < 10
    waiter.client.close()


def test_a_woken_reserve_takes_its_job_in_the_wake_up_reply_and_after_a_script_flush(make):
    # the blocking move and the reserve script go in one pipeline: Redis runs the script once the
    # move is served. A SCRIPT FLUSH while blocked makes that EVALSHA fail: the job is still taken.
    # a server of our own: SCRIPT FLUSH on the shared one would hit other tests' scripts mid-call
    server = PrivateRedis().start()
    name = f"pubq-test-{uuid.uuid4().hex[:10]}"
    producer = RedisDriver(server.url, unique_channel("woken"))
    waiter = RedisDriver(redis.Redis.from_url(server.url, client_name=name), producer.channel)
    found: list[Any] = []
    try:
        for flush in (False, True):
            thread = threading.Thread(target=lambda: found.append(waiter.reserve(timeout=20)))
            thread.start()
            try:
                wait_for(lambda: any(c.get("name") == name and c.get("cmd") == "blmove"
                                     for c in producer.client.client_list()), what="the reserve to block")
                if flush:
                    producer.client.script_flush()
                job_id = producer.push(b"flushed" if flush else b"plain", ttr=60)
            finally:
                thread.join(25)
            assert found[-1] is not None and found[-1].job_id == job_id
            assert found[-1].payload == (b"flushed" if flush else b"plain")
        assert producer.counts().reserved == 2 and producer.counts().waiting == 0
    finally:
        waiter.client.close()
        producer.close()
        server.stop()


def test_wake_markers_are_capped(make):
    driver = make(wake_cap=5)
    driver.push_many([PushItem(b"x", 60) for _ in range(20)])  # stored by the script: markers
    driver.push(b"one more", ttr=60)  # an entry, not a marker
    inbox = driver.client.lrange(f"{{{driver.channel}}}:inbox", 0, -1)
    assert inbox.count(b"~") == 5 and len(inbox) == 6
    assert driver.client.hget(f"{{{driver.channel}}}:stats", "markers") == b"5"


def test_a_reserve_drops_the_wake_markers(make):
    driver = make()
    driver.push_many([PushItem(b"x", 60) for _ in range(3)])
    assert driver.reserve() is not None
    assert driver.reserve() is not None
    assert driver.reserve() is not None
    assert driver.reserve() is None
    assert driver.client.llen(f"{{{driver.channel}}}:inbox") == 0
    assert driver.client.hget(f"{{{driver.channel}}}:stats", "markers") == b"0"


def test_a_job_whose_payload_was_deleted_under_it_is_skipped(make):
    driver = make()
    gone = driver.push(b"gone", ttr=60)
    kept = driver.push(b"kept", ttr=60)
    assert driver.status(gone) is JobStatus.WAITING  # ingested
    driver.client.hdel(f"{{{driver.channel}}}:payload", gone)

    r = driver.reserve()
    assert r is not None and r.job_id == kept and r.payload == b"kept"
    assert driver.reserve() is None
    assert driver.status(gone) is JobStatus.DONE
    assert driver.counts().waiting == 0


def test_scripts_are_reloaded_after_script_flush():
    # a server of our own: SCRIPT FLUSH on the shared one would hit other tests' scripts mid-call
    with PrivateRedis() as server:
        driver = RedisDriver(server.url, unique_channel())
        try:
            driver.push(b"before", ttr=60)
            driver.client.script_flush()
            assert driver.push(b"after", ttr=60) == 2
            r = driver.reserve()
            assert r is not None and r.payload == b"before"
        finally:
            driver.close()


def test_payloads_stay_bytes_and_a_decoding_client_is_refused(make):
    driver = make()
    raw = bytes(range(256))
    driver.push(raw, ttr=60)
    r = driver.reserve()
    assert r is not None and r.payload == raw
    with pytest.raises(ValueError, match="decode_responses"):
        RedisDriver(redis.Redis.from_url(REDIS_URL, decode_responses=True), unique_channel())


def test_deadlines_come_from_the_redis_clock(make):
    driver = make()
    driver.push(b"x", ttr=100)
    sec, usec = driver.client.time()
    r = driver.reserve()
    assert r is not None
    assert abs(r.deadline - (sec + usec / 1e6 + 100)) < 2
    assert abs(driver.now() - (sec + usec / 1e6)) < 2


def test_an_unreachable_redis_is_a_driver_error_with_the_redis_error_as_cause():
    driver = RedisDriver("redis://127.0.0.1:1/0", unique_channel())
    with pytest.raises(BackendUnavailableError) as ping:
        driver.ping()
    assert isinstance(ping.value.__cause__, redis.ConnectionError)
    for call in (lambda: driver.push(b"x", ttr=1), lambda: driver.reserve(timeout=1), driver.counts, driver.now):
        with pytest.raises(DriverError):
            call()
    driver.close()


def test_a_redis_error_reply_is_a_driver_error(make):
    driver = make()
    driver.client.set(f"{{{driver.channel}}}:delayed", b"not a zset")
    with pytest.raises(DriverError) as err:
        driver.push(b"x", ttr=1, delay=5)
    assert isinstance(err.value.__cause__, redis.ResponseError)
    driver.client.set(f"{{{driver.channel}}}:inbox", b"not a list")
    with pytest.raises(DriverError) as err:
        driver.push(b"x", ttr=1)
    assert isinstance(err.value.__cause__, redis.ResponseError)
    driver.client.delete(f"{{{driver.channel}}}:inbox", f"{{{driver.channel}}}:delayed")


def test_a_reservations_holder_progress_and_cancel_live_in_one_hash_dropped_by_the_ack(make):
    """One HDEL on ack drops all three (they were three hashes, three HDELs per job); nothing is
    left behind for an acked job, and the old per-kind hashes are no longer written."""
    driver = make()
    jid = driver.push(b"x", ttr=60)
    r = driver.reserve(holder="w-1")
    assert r is not None and r.job_id == jid
    assert driver.progress(r, 0.5, "half")
    assert driver.cancel(jid, "stop it").state.value == "requested"
    live = f"{{{driver.channel}}}:holder"
    assert driver.client.hgetall(live) == {str(jid).encode(): b"w-1", f"{jid}:p".encode(): b"0.5000|half",
                                           f"{jid}:c".encode(): b"stop it"}
    assert driver.cancel_requested(r) == "stop it"
    info = driver.get(jid)
    assert info is not None and info.holder == "w-1" and info.progress == 0.5 and info.cancel_reason == "stop it"
    assert driver.ack(r)
    assert driver.client.exists(live, f"{{{driver.channel}}}:progress", f"{{{driver.channel}}}:cancel") == 0


def test_a_drained_job_costs_eighteen_redis_commands():
    """The count the bench reports (bench/README.md, issue 17): EVALSHA plus the commands the
    ack_reserve script runs for one acked and one reserved job: the ack's 7 (HGET meta, ZREM
    reserved, HDEL live, HDEL payload/meta/history, HINCRBY done), the reserve's 9 (TIME, EXISTS
    paused, ZRANGEBYSCORE delayed, ZPOPMIN, HGET meta and payload, HSET meta, ZADD reserved, HSET
    live) and, since the inbox, one EXISTS inbox+stage before the ingest (nothing to ingest here:
    the three jobs were ingested by the first reserve). A change that adds a command to the hot path
    shows up here first; lower it when the count goes down."""
    # a server of our own: commandstats counts every client's commands
    with PrivateRedis() as server:
        driver = RedisDriver(server.url, unique_channel("cmds"))
        try:
            assert_drained_job_costs_eighteen(driver)
        finally:
            driver.close()


def assert_drained_job_costs_eighteen(driver: RedisDriver) -> None:
    for _ in range(3):
        driver.push(b"x", ttr=60)
    r = driver.reserve(holder="w-1")
    assert r is not None
    ok, r2 = driver.ack_and_reserve(r, holder="w-1")  # warm: the script is loaded
    assert ok and r2 is not None
    before = {k: v["calls"] for k, v in driver.client.info("commandstats").items()}
    ok, r3 = driver.ack_and_reserve(r2, holder="w-1")
    assert ok and r3 is not None
    after = {k: v["calls"] for k, v in driver.client.info("commandstats").items()}
    spent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    spent.pop("cmdstat_info", None)
    assert sum(spent.values()) == 18, spent
    assert spent["cmdstat_exists"] == 2, spent  # paused, and inbox+stage
