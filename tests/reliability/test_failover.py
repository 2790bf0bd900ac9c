"""Workers ride a Redis failover: SENTINEL FAILOVER, SIGKILL of the master, CLUSTER FAILOVER (#15).

Each test starts its own topology (the session ones are shared by the conformance suite) and drains
jobs with two ``listen`` workers through the failover (tests/reliability/failover.py). With
durability on, no acknowledged job may be lost; without it the count is reported, not asserted.
The full 5,000-job runs are ``python -m bench.scale.failover`` (numbers in docs/scaling.md).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import redis

from pubq.drivers.base import JobStatus, PushItem
from pubq.drivers.redis import RedisDriver
from pubq.drivers.redis_client import Durability
from tests.helpers import PrivateRedis, free_port, wait_until
from tests.reliability.failover import drain_through_failover
from tests.topology import RedisClusterSet, SentinelSet

#: Jobs per drain here (the bench runs 5,000): enough for the failover to land mid-drain.
JOBS = 1200


@pytest.fixture
def sentinel_set():
    topology = SentinelSet(replicas=2).start()
    yield topology
    topology.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("event", ["sentinel-failover", "kill-master"])
def test_workers_follow_a_sentinel_failover_and_lose_no_durable_job(tmp_path, sentinel_set, event):
    result = drain_through_failover(tmp_path, sentinel_set, event, jobs=JOBS, durability=True)
    print(result.as_dict())
    assert result.workers_alive, "no worker may exit on a failover"
    assert result.lost == 0, result
    assert result.acknowledged + result.not_durable == JOBS


@pytest.mark.slow
def test_without_durability_a_killed_master_is_followed_and_the_losses_are_counted(tmp_path, sentinel_set):
    result = drain_through_failover(tmp_path, sentinel_set, "kill-master", jobs=JOBS, durability=False)
    print(result.as_dict())
    assert result.workers_alive and result.not_durable == 0 and result.acknowledged == JOBS
    assert result.ran + result.lost == JOBS  # every job either ran or is counted lost: none unaccounted


@pytest.mark.slow
def test_a_cluster_failover_mid_drain_loses_nothing_acknowledged(tmp_path):
    cluster = RedisClusterSet(masters=3, replicas=1).start()
    try:
        result = drain_through_failover(tmp_path, cluster, "cluster-failover", jobs=JOBS, durability=True)
    finally:
        cluster.cleanup()
    print(result.as_dict())
    assert result.workers_alive and result.lost == 0, result


def test_an_ack_and_reserve_whose_wait_a_demotion_cuts_short_keeps_the_job_it_reserved():
    """The cause of the rare loss above (#15): ``CLUSTER FAILOVER`` demotes the old master while a
    worker's durable ack-and-reserve sits in WAIT; the server answers WAIT with ``UNBLOCKED``. The
    script had run (the next job reserved under this worker); an error there made the worker retry
    and reserve another job, and the first stayed reserved by nobody until its TTR ran out, then
    failed as TtrExceededError without ever running. The reply must come back, with 0 confirmations."""
    with PrivateRedis() as server:
        channel = f"cut-{uuid.uuid4().hex[:8]}"
        plain = RedisDriver(server.url, channel)
        # no replica: WAIT blocks for its whole timeout unless something cuts it short
        durable = RedisDriver(server.url, channel, durability=Durability(replicas=1, timeout_ms=60_000))
        admin = redis.Redis(port=server.port)
        try:
            plain.push_many([PushItem(b"a", ttr=30), PushItem(b"b", ttr=30), PushItem(b"c", ttr=30)])
            # one quick durable ack-and-reserve first loads the script (a NOSCRIPT would be retried)
            quick = RedisDriver(server.url, channel, durability=Durability(replicas=1, timeout_ms=10))
            _, first = quick.ack_and_reserve(plain.reserve(0, holder="w1"), holder="w1")
            quick.close()
            assert first is not None
            out: dict[str, Any] = {}

            def ack_and_reserve() -> None:
                try:
                    out["reply"] = durable.ack_and_reserve(first, holder="w1")
                except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                    out["error"] = exc

            worker = threading.Thread(target=ack_and_reserve)
            worker.start()
            wait_until(lambda: admin.info("clients")["blocked_clients"] >= 1, timeout=20,
                       message="the ack-and-reserve to block in WAIT")
            admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # demoted: WAIT gets UNBLOCKED
            worker.join(timeout=30)
            admin.execute_command("REPLICAOF", "NO", "ONE")
            assert "error" not in out, f"the reply of a script that ran was dropped: {out.get('error')!r}"
            acked, second = out["reply"]
            assert acked and second is not None and second.job_id != first.job_id
            info = plain.get(second.job_id)
            assert info is not None and info.status is JobStatus.RESERVED and info.holder == "w1"
            assert plain.status(first.job_id) is JobStatus.DONE
        finally:
            admin.close()
            durable.close()
            plain.close()
