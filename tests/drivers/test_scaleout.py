"""Sharded hot queues, Cluster slots and durability on real topologies started by the tests (#15).

The conformance suite runs on Sentinel, Cluster and a one-key sharded queue (``backends.py``); these
tests cover what it cannot: jobs spread over shards, every view seeing the whole queue, pause on every
shard, a shrunk queue still drained, queues on several masters, and WAIT's answer.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter

import pytest
import redis
from redis.cluster import RedisCluster

from pubq.drivers.base import FailureInfo, JobStatus, PushItem
from pubq.drivers.redis import RedisDriver
from pubq.drivers.redis_client import Durability
from pubq.drivers.sharded import SHARD_SPAN, STREAK, ShardedDriver, shard_channel
from pubq.errors import NotDurableError
from pubq.publishing.preset import pipeline_queues
from tests.topology import session_cluster, session_sentinel

#: One test process starts the session's Sentinel set and Cluster (see tests/drivers/backends.py).
pytestmark = pytest.mark.xdist_group("topology")


@pytest.fixture
def opened():
    """Drivers opened by the test; their keys (all shards, counters included) are deleted after it."""
    drivers: list = []
    yield drivers
    for d in drivers:
        try:
            d.clear()
            if isinstance(d, ShardedDriver):
                d.drop_keys()
            else:
                d.client.delete(*d.keys)
        finally:
            d.close()


def sharded(opened, shards=3, channel=None, **opts) -> ShardedDriver:
    d = ShardedDriver(session_cluster().url, channel or f"hot-{uuid.uuid4().hex[:8]}", shards=shards, **opts)
    opened.append(d)
    return d


def per_shard(d: ShardedDriver) -> list[int]:
    return [s.counts().waiting for s in d._all()]


def test_pushes_spread_round_robin_and_ids_name_their_shard(opened):
    d = sharded(opened)
    ids = [d.push(b"x", ttr=30) for _ in range(6)] + d.push_many([PushItem(b"y", ttr=30)] * 6)
    assert per_shard(d) == [4, 4, 4] and len(set(ids)) == 12
    assert sorted(Counter(i % SHARD_SPAN for i in ids).values()) == [4, 4, 4]
    assert all(d.status(i) is JobStatus.WAITING and d.get(i).job_id == i for i in ids)


def test_a_shard_key_keeps_one_keys_jobs_on_one_shard_in_push_order(opened):
    d = sharded(opened, key_of=lambda payload: payload.split(b":")[0].decode())
    pushed = [d.push(f"{key}:{n}".encode(), ttr=30) for n in range(5) for key in ("a", "b", "c", "d")]
    runs: dict[str, list[int]] = {}
    while (r := d.reserve(0)) is not None:
        key, n = r.payload.decode().split(":")
        runs.setdefault(key, []).append(int(n))
        assert d.ack(r)
    assert runs == {k: [0, 1, 2, 3, 4] for k in "abcd"} and d.counts().done == len(pushed)
    assert {i % SHARD_SPAN for i in pushed} == {0, 2}  # crc32: a, c, d → 0; b → 2


def test_a_worker_rotates_over_the_shards_so_none_starves(opened):
    d = sharded(opened)
    d.push_many([PushItem(b"j", ttr=30)] * (6 * STREAK))
    taken, r = [], d.reserve(0)
    while r is not None:
        taken.append(r.job_id % SHARD_SPAN)
        _, r = d.ack_and_reserve(r)
    assert len(taken) == 6 * STREAK and Counter(taken) == {0: 2 * STREAK, 1: 2 * STREAK, 2: 2 * STREAK}
    assert set(taken[:3 * STREAK]) == {0, 1, 2}  # every shard served within one round of streaks


def test_info_listing_failed_registry_and_remove_see_the_whole_queue(opened):
    d = sharded(opened)
    ids = d.push_many([PushItem(b"j", ttr=30)] * 9)
    assert d.counts().waiting == 9
    listed, after = [], None
    while True:
        page = d.list_jobs(JobStatus.WAITING, limit=4, after=after)
        listed += [j.job_id for j in page.jobs]
        if page.next_after is None:
            break
        after = page.next_after
    assert sorted(listed) == sorted(ids)
    failed = []
    for _ in range(3):
        r = d.reserve(0)
        assert d.fail(r, FailureInfo("Boom", "no")) and d.settle(r)
        failed.append(r.job_id)
    assert {f.job_id for f in d.failed_list()} == set(failed) and d.failed_get(failed[0]).message == "no"
    assert d.requeue_failed(failed[0]) and d.status(failed[0]) is JobStatus.WAITING
    gone = next(i for i in ids if i not in failed)
    assert d.remove(gone) and d.get(gone) is None
    c = d.counts()
    assert (c.waiting, c.failed, c.failed_total) == (6, 2, 3)
    assert d.failed_purge() == 2 and d.clear() == 6 and d.counts().waiting == 0


def test_pause_stops_every_shard_and_resume_starts_them(opened):
    d = sharded(opened)
    d.push_many([PushItem(b"j", ttr=30)] * 3)
    other_worker = ShardedDriver(session_cluster().url, d.channel, shards=3)
    try:
        d.pause()
        assert d.paused() and other_worker.paused()
        assert other_worker.reserve(0) is None and other_worker.reserve(0.3) is None
        d.resume()
        got = [other_worker.reserve(0) for _ in range(3)]
        assert all(got) and {r.job_id % SHARD_SPAN for r in got} == {0, 1, 2}
    finally:
        other_worker.close()


def test_a_queue_whose_shards_shrank_still_drains_the_higher_shards(opened):
    wide = sharded(opened, shards=4)
    ids = wide.push_many([PushItem(b"j", ttr=30)] * 8)
    narrow = sharded(opened, shards=2, channel=wide.channel)
    assert narrow.counts().waiting == 8
    drained = []
    while (r := narrow.reserve(0)) is not None:
        drained.append(r.job_id)
        assert narrow.ack(r)
    assert sorted(drained) == sorted(ids)
    assert {narrow.push(b"new", ttr=30) % SHARD_SPAN for _ in range(4)} == {0, 1}


def test_the_pipeline_queues_spread_over_the_masters_once_sharded():
    # Measured, not wished: the four pipeline channels hash to slots 2366-5123, all in the first
    # third of the slot space, so an evenly split 3-master cluster serves them from ONE master
    # (docs/scaling.md). ``shards: 3`` puts each queue's sub-queues on more than one master.
    cluster = session_cluster()
    client = RedisCluster.from_url(cluster.url.replace("redis+cluster://", "redis://").split(",")[0])
    try:
        def master(channel: str) -> int:
            return cluster.master_of_slot(client.keyslot(f"{{{channel}}}:stats"))

        channels = [q["channel"] for q in pipeline_queues().values()]
        assert sorted(client.keyslot(f"{{{c}}}:stats") for c in channels) == [2366, 3895, 3995, 5123]
        assert len({master(c) for c in channels}) == 1
        for channel in channels:
            assert len({master(shard_channel(channel, i)) for i in range(3)}) > 1, channel
        every = {master(shard_channel(c, i)) for c in channels for i in range(3)}
        assert len(every) == 3
    finally:
        client.close()


def test_clear_on_a_cluster_deletes_only_its_own_keys(opened):
    url = session_cluster().url
    d = RedisDriver(url, f"mine-{uuid.uuid4().hex[:8]}")
    neighbour = RedisDriver(url, d.channel + "x")
    opened += [d, neighbour]
    d.push(b"a", ttr=30)
    neighbour.push(b"b", ttr=30)
    same_slot = f"{{{d.channel}}}:not-pubq"
    d.client.set(same_slot, b"keep")
    try:
        assert d.clear() == 1
        assert d.client.get(same_slot) == b"keep" and neighbour.counts().waiting == 1
    finally:
        d.client.delete(same_slot)


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_durable_writes_wait_for_replicas_and_say_when_too_few_confirm(opened, topology, caplog):
    url = session_sentinel().url if topology == "sentinel" else session_cluster().url
    ok = RedisDriver(url, f"dur-{uuid.uuid4().hex[:8]}", durability=Durability(replicas=1, timeout_ms=2000))
    opened.append(ok)
    r = ok.reserve(0) if ok.push(b"a", ttr=30) else None
    assert r is not None and ok.ack(r)
    # every master here has one replica: asking for two can never be met
    strict = RedisDriver(url, ok.channel, durability=Durability(replicas=2, timeout_ms=50))
    opened.append(strict)
    with pytest.raises(NotDurableError, match=r"push of job \d+ is not durable: 1 of 2 replica") as err:
        strict.push(b"b", ttr=30)
    assert strict.status(err.value.job_id) is JobStatus.WAITING  # the write happened
    r = strict.reserve(0)
    with caplog.at_level(logging.WARNING, logger="pubq.driver"):
        assert strict.ack(r) is True
    assert "ack of job" in caplog.text and "(the write happened)" in caplog.text


def test_a_sentinel_client_reaches_the_master_the_sentinels_name(opened):
    s = session_sentinel()
    d = RedisDriver(s.url, f"where-{uuid.uuid4().hex[:8]}")
    opened.append(d)
    d.push(b"x", ttr=30)
    plain = redis.Redis(port=s.master_port())
    try:
        assert plain.info("replication")["role"] == "master" and plain.exists(d.keys[0])
    finally:
        plain.close()
