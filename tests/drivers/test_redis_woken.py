"""The woken worker's fast take (lua/_staged.lua): same state and reply as ingest() + reserve().

A worker woken by its ``BLMOVE inbox -> stage`` runs ``reserve_woken`` / ``reserve_many_woken``;
when its staged entry is the only job anywhere those reserve it straight from the stage. Each case
builds the same scenario on two channels, takes through the woken script on one and through BLMOVE
plus the plain script (ingest, then reserve) on the other, and compares every key of both queues
and the replies. ``HSETNX`` (only the fast take writes it) tells which path ran, so a case meant
for the fast take cannot pass on the full path, nor a fallback case on the fast one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from pubq.drivers import redis_wait
from pubq.drivers.base import PushItem
from pubq.drivers.redis import KEY_NAMES, RedisDriver
from pubq.drivers.redis_inbox import pack
from tests.helpers import PrivateRedis

PAYLOAD = b'{"job":"tests.Noop","args":{}}'
PUSHED = 1796000000.25


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateRedis]:
    """A private server: the test counts HSETNX calls in INFO commandstats."""
    with PrivateRedis() as srv:
        yield srv


@pytest.fixture
def pair(server: PrivateRedis) -> Iterator[tuple[RedisDriver, RedisDriver]]:
    client = redis.Redis.from_url(server.url)
    client.flushall()
    yield RedisDriver(client, "woken"), RedisDriver(client, "full")
    client.close()


def k(driver: RedisDriver, name: str) -> str:
    return f"{{{driver.channel}}}:{name}"


def entry(driver: RedisDriver, *, ttr: int = 60, priority: int = 1024, job_id: int | None = None) -> int:
    """An inbox entry as a producer's id block writes it (the id taken from the queue's counter)."""
    if job_id is None:
        job_id = driver.client.hincrby(k(driver, "stats"), "id", 1)
    driver.client.lpush(k(driver, "inbox"), pack(job_id, ttr, priority, PAYLOAD, PUSHED))
    return job_id


def script_push(driver: RedisDriver, *, priority: int = 1024, delay: float = 0) -> None:
    """A job stored by the push script, without the wake marker it leaves in the inbox."""
    driver.push_many([PushItem(PAYLOAD, ttr=30, delay=delay, priority=priority)])
    driver.client.lrem(k(driver, "inbox"), 0, "~")
    driver.client.hset(k(driver, "stats"), "markers", 0)


def only(driver: RedisDriver) -> None:
    entry(driver)


def odd_numbers(driver: RedisDriver) -> None:
    entry(driver, ttr=0, priority=0)


def paused(driver: RedisDriver) -> None:
    entry(driver)
    driver.pause()


def older_waiting(driver: RedisDriver) -> None:
    script_push(driver, priority=2000)
    entry(driver)


def urgent_waiting(driver: RedisDriver) -> None:
    script_push(driver, priority=1)
    entry(driver)


def delayed_due(driver: RedisDriver) -> None:
    script_push(driver, delay=600)
    (member,) = driver.client.zrange(k(driver, "delayed"), 0, -1)
    driver.client.zadd(k(driver, "delayed"), {member: time.time() - 1})  # due a second ago
    entry(driver)


def delayed_later(driver: RedisDriver) -> None:
    script_push(driver, delay=600)
    entry(driver)


def two_entries(driver: RedisDriver) -> None:
    entry(driver)
    entry(driver, priority=5)


def repeated_push(driver: RedisDriver) -> None:
    first = entry(driver)
    driver.client.blmove(k(driver, "inbox"), k(driver, "stage"), 1, "RIGHT", "LEFT")
    driver._run("counts")  # ingests it: stored as waiting
    entry(driver, job_id=first)  # the same entry again (a retried push whose first reply was lost)


def marker(driver: RedisDriver) -> None:
    driver.client.hincrby(k(driver, "stats"), "markers", 1)
    driver.client.lpush(k(driver, "inbox"), "~")


def garbage(driver: RedisDriver) -> None:
    driver.client.lpush(k(driver, "inbox"), b"not an entry")


def unknown_id(driver: RedisDriver) -> None:
    entry(driver, job_id=999)


def negative_ttr(driver: RedisDriver) -> None:
    driver.client.hincrby(k(driver, "stats"), "id", 1)
    driver.client.lpush(k(driver, "inbox"), b"1|-5|1024|1796000000.250000|" + PAYLOAD)


FAST = [only, odd_numbers, delayed_later]
FULL = [paused, older_waiting, urgent_waiting, delayed_due, two_entries, repeated_push, marker, garbage,
        unknown_id, negative_ttr]
#: (script, its own arguments): the single reserve, and reserve_many's holder / held-ahead cases.
CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("reserve", ("w-1",)), ("reserve", ("",)),
    ("reserve_many", (1, "w-1", 0)), ("reserve_many", (3, "w-1", 2)), ("reserve_many", (2, "", 2)),
    ("reserve_many", (1, "", 1)),
]


def hsetnx_calls(driver: RedisDriver) -> int:
    return int(driver.client.info("commandstats").get("cmdstat_hsetnx", {}).get("calls", 0))


def snapshot(driver: RedisDriver) -> dict[str, Any]:
    """Every key of the queue, times (deadlines, reserved scores) reduced to "T" when within an hour
    of now, so two queues written a few ms apart compare equal."""
    client, now, out = driver.client, time.time(), {}
    for name in KEY_NAMES:
        key = k(driver, name)
        kind = client.type(key).decode()
        if kind == "hash":
            value: Any = {f: _times(v, now) for f, v in client.hgetall(key).items()}
        elif kind == "zset":
            value = [(m, "T" if abs(s - now) < 3600 else s) for m, s in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "string":
            value = "set"
        else:
            value = None
        out[name] = (kind, value)
    return out


def _times(value: bytes, now: float) -> Any:
    fields = value.split(b"|")
    return b"|".join(b"T" if _is_now(f, now) else f for f in fields)


def _is_now(field: bytes, now: float) -> bool:
    try:
        return abs(float(field) - now) < 3600
    except ValueError:
        return False


def normal(reply: Any, now: float) -> Any:
    if isinstance(reply, list):
        return [normal(v, now) for v in reply]
    if isinstance(reply, bytes) and _is_now(reply, now):
        return "T"
    return reply


def take_both(pair: tuple[RedisDriver, RedisDriver], build: Callable[[RedisDriver], None], call: str,
              args: tuple[Any, ...]) -> tuple[Any, Any, int]:
    woken, full = pair
    build(woken)
    build(full)
    before = hsetnx_calls(woken)
    got = woken._wait_then(1.0, call, *args)
    fast = hsetnx_calls(woken) - before
    full.client.blmove(k(full, "inbox"), k(full, "stage"), 1, "RIGHT", "LEFT")
    want = full._run(call, *args)
    return got, want, fast


@pytest.mark.parametrize("call,args", CALLS, ids=[f"{c}{a}" for c, a in CALLS])
@pytest.mark.parametrize("build", FAST + FULL, ids=lambda f: f.__name__)
def test_a_woken_take_leaves_what_ingest_and_reserve_leave(pair, build, call, args) -> None:
    got, want, hsetnx = take_both(pair, build, call, args)
    now = time.time()
    assert normal(got, now) == normal(want, now)
    woken, full = pair
    assert snapshot(woken) == snapshot(full)
    if build in FAST:
        assert hsetnx == 1, "the fast take did not run"
        row = got[1:] if call == "reserve" else got[1]
        assert got[0] == (1 if call == "reserve" else b"")
        ttr, priority = (0, 0) if build is odd_numbers else (60, 1024)
        last_id = int(woken.client.hget(k(woken, "stats"), "id"))  # the entry's, in these scenarios
        assert normal(row, now) == [last_id, PAYLOAD, 1, ttr, "T", 1, priority, b"1796000000.250000"]
    else:
        assert hsetnx in (0, 1)  # the fast take gave up before or at HSETNX, the full path ran
        assert hsetnx == 0 or build is repeated_push


def test_the_fast_take_reserves_a_job_the_worker_can_run_and_ack(pair) -> None:
    woken, _ = pair
    only(woken)
    [r] = woken._many(woken._wait_then(1.0, "reserve_many", 1, "w-1", 0))[0]
    assert (r.job_id, r.payload, r.attempt, r.ttr, r.token) == (1, PAYLOAD, 1, 60, 1)
    assert r.deadline == pytest.approx(time.time() + 60, abs=5)
    assert woken.client.hget(k(woken, "holder"), "1") == b"w-1"
    assert woken.ack(r)
    assert woken.counts().done == 1
    assert woken.client.hgetall(k(woken, "meta")) == {}


# -- the wait right after a take that found nothing ---------------------------------------------


def calls(driver: RedisDriver, command: str) -> int:
    return int(driver.client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_wait_right_after_an_empty_take_goes_straight_to_the_blmove(pair) -> None:
    driver, _ = pair
    assert driver.reserve_many(2, 0) == []
    evalsha, blmove = calls(driver, "evalsha"), calls(driver, "blmove")
    assert driver.reserve_many(2, 0.05) == []
    # one BLMOVE and the woken script behind it; no second look before it
    assert (calls(driver, "evalsha") - evalsha, calls(driver, "blmove") - blmove) == (1, 1)


def test_a_wait_after_an_old_empty_take_looks_first(pair, monkeypatch) -> None:
    driver, _ = pair
    assert driver.reserve_many(1, 0) == []
    monkeypatch.setattr(redis_wait, "FOUND_NONE_FRESH", -1.0)  # every note is already too old
    evalsha = calls(driver, "evalsha")
    assert driver.reserve_many(1, 0.05) == []
    assert calls(driver, "evalsha") - evalsha == 2


def test_a_take_that_found_a_job_leaves_no_note_for_the_wait(pair) -> None:
    driver, _ = pair
    assert driver.reserve_many(1, 0) == []
    driver.push(PAYLOAD, ttr=60)
    driver.push(PAYLOAD, ttr=60)
    assert len(driver.reserve_many(1, 0)) == 1  # ingests both, takes one
    driver.client.delete(k(driver, "inbox"))  # nothing left that would wake a BLMOVE
    driver.client.hset(k(driver, "stats"), "markers", 0)
    started = time.monotonic()
    assert len(driver.reserve_many(1, 3.0)) == 1
    assert time.monotonic() - started < 1.5, "the wait skipped its look and slept on a waiting job"


def test_a_push_between_the_empty_take_and_the_wait_ends_the_wait(pair) -> None:
    driver, _ = pair
    assert driver.reserve_many(1, 0) == []
    driver.push(PAYLOAD, ttr=60)
    started = time.monotonic()
    assert len(driver.reserve_many(1, 3.0)) == 1
    assert time.monotonic() - started < 1.5


def test_the_wait_keeps_the_empty_takes_next_due_time(pair) -> None:
    driver, _ = pair
    driver.push(PAYLOAD, ttr=60, delay=0.3)
    driver.client.delete(k(driver, "inbox"))  # its wake marker: only the next-due time can end the wait
    driver.client.hset(k(driver, "stats"), "markers", 0)
    assert driver.reserve_many(1, 0) == []
    started = time.monotonic()
    got = driver.reserve_many(1, 5.0)
    assert len(got) == 1 and time.monotonic() - started < 2.0
