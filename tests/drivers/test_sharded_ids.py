"""On a sharded queue, what people read names the queue's job id, never a shard's local one (#15).

The local Redis has no replica, so a ``durability: {replicas: 1}`` queue on it is never durable:
every push raises NotDurableError and every ack, fail and settle logs a warning. Each must name
the id ``status``/``get`` answer for (``local × 1000 + shard``).
"""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest

from pubq.drivers.base import FailureInfo, JobStatus, PushItem, UniqueSpec
from pubq.drivers.redis_client import Durability
from pubq.drivers.sharded import SHARD_SPAN, ShardedDriver
from pubq.errors import NotDurableError
from tests.drivers.backends import REDIS_URL
from tests.helpers import Cli, registry

NEVER = Durability(replicas=1, timeout_ms=10)


@pytest.fixture
def sharded():
    d = ShardedDriver(REDIS_URL, f"ids-{uuid.uuid4().hex[:8]}", shards=3, durability=NEVER)
    try:
        yield d
    finally:
        try:
            d.drop_keys()
        finally:
            d.close()


def warned_ids(caplog) -> list[tuple[str, int]]:
    return [(m[1], int(m[2])) for m in re.finditer(r"(\w+) of job (\d+) is not durable", caplog.text)]


def push(d: ShardedDriver, payload: bytes = b"j") -> int:
    with pytest.raises(NotDurableError) as err:
        d.push(payload, ttr=30)
    job_id = err.value.job_id
    assert job_id is not None and str(err.value).startswith(f"push of job {job_id} is not durable")
    return job_id


def test_a_not_durable_push_names_the_queues_id_on_every_shard(sharded):
    ids = [push(sharded) for _ in range(6)]
    assert {i % SHARD_SPAN for i in ids} == {0, 1, 2}  # round robin: every shard, ids above 1000
    assert all(sharded.status(i) is JobStatus.WAITING for i in ids)
    with pytest.raises(NotDurableError) as err:
        sharded.push_unique(b"u", ttr=30, unique=UniqueSpec(f"k-{uuid.uuid4().hex}"))
    assert err.value.job_id >= SHARD_SPAN and sharded.get(err.value.job_id) is not None
    assert str(err.value).startswith(f"push of job {err.value.job_id} is not durable")
    with pytest.raises(NotDurableError) as err:
        sharded.push_many([PushItem(b"m", ttr=30)])
    assert err.value.job_id >= SHARD_SPAN and sharded.get(err.value.job_id).payload == b"m"


def test_ack_fail_and_settle_warnings_name_the_queues_id(sharded, caplog):
    for _ in range(6):
        push(sharded)
    with caplog.at_level(logging.WARNING, logger="pubq.driver"):
        r = sharded.reserve(0)
        assert sharded.ack(r)
        seen = [("ack", r.job_id)]
        r = sharded.reserve(0)
        ok, nxt = sharded.ack_and_reserve(r)
        assert ok and nxt is not None
        seen.append(("ack", r.job_id))
        flags, more = sharded.ack_and_reserve_many([nxt], 1)
        assert flags == [True] and len(more) == 1
        seen.append(("ack", nxt.job_id))
        assert sharded.fail(more[0], FailureInfo("Boom", "no")) and sharded.settle(more[0])
        seen += [("fail", more[0].job_id), ("settle", more[0].job_id)]
    warned = warned_ids(caplog)
    assert warned == seen, caplog.text
    assert all(job_id >= SHARD_SPAN for _, job_id in warned)
    done = [job_id for what, job_id in warned if what == "ack"]
    assert all(sharded.status(job_id) is JobStatus.DONE for job_id in done)
    assert sharded.failed_get(more[0].job_id) is not None


def test_a_worker_on_a_sharded_queue_warns_with_the_ids_the_cli_shows(tmp_path):
    cli = Cli.create(tmp_path, "redis", shards=3, durability={"replicas": 1, "timeout_ms": 10})
    out = cli("work", "push", "tests.Noop")
    assert out.returncode == 1, out.stderr
    pushed = [int(re.match(r"Error: push of job (\d+) is not durable", out.stderr)[1])]
    noop = registry().encode(registry().build("tests.Noop", {}))
    producer = ShardedDriver(REDIS_URL, cli.channel, shards=3)  # round robin from one process: every shard
    try:
        pushed += [producer.push(noop, ttr=30) for _ in range(3)]
    finally:
        producer.close()
    assert {i % SHARD_SPAN for i in pushed} == {0, 1, 2}
    out = cli("work", "run", "--isolate=0")
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "system.log").read_text()  # the worker's log file (see write_config)
    acked = sorted(int(m) for m in re.findall(r"ack of job (\d+) is not durable", log))
    started = sorted(int(m) for m in re.findall(r"\[(\d+)\] tests.Noop .* is started", log))
    assert acked == started == sorted(pushed), log
    assert json.loads(cli("work", "info", "--json").stdout)["done"] == 4
