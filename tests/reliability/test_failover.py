"""Workers ride a Redis failover: SENTINEL FAILOVER, SIGKILL of the master, CLUSTER FAILOVER (#15).

Each test starts its own topology (the session ones are shared by the conformance suite) and drains
jobs with two ``listen`` workers through the failover (tests/reliability/failover.py). With
durability on, no acknowledged job may be lost; without it the count is reported, not asserted.
The full 5,000-job runs are ``python -m bench.scale.failover`` (numbers in docs/scaling.md).
"""

from __future__ import annotations

import pytest

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
