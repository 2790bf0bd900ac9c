"""A config moves to Sentinel or Cluster by its redis: line alone; a not-durable push is one line (#15)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import Cli
from tests.sample_jobs import read_lines
from tests.topology import session_cluster, session_sentinel

#: One test process starts the session's Sentinel set and Cluster (see tests/drivers/backends.py).
pytestmark = pytest.mark.xdist_group("topology")


def _url(topology: str) -> str:
    return session_sentinel().url if topology == "sentinel" else session_cluster().url


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
@pytest.mark.parametrize("shards", [1, 3])
def test_the_same_config_runs_on_sentinel_and_cluster_by_changing_only_the_redis_url(tmp_path, topology, shards):
    extra = {"shards": shards} if shards > 1 else {}
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": _url(topology)}, **extra)
    ran = str(tmp_path / "ran")
    for tag in ("a", "b", "c"):
        out = cli("work", "push", "tests.Record", "--args", json.dumps({"path": ran, "tag": tag}))
        assert out.returncode == 0, out.stderr
    assert json.loads(cli("work", "info", "--json").stdout)["waiting"] == 3
    assert cli("work", "run", "--isolate=0").returncode == 0
    assert sorted(line.split()[0] for line in read_lines(ran)) == ["a", "b", "c"]
    info = json.loads(cli("work", "info", "--json").stdout)
    assert (info["waiting"], info["done"]) == (0, 3)


def test_a_push_too_few_replicas_confirm_exits_1_with_one_line_and_the_job_is_stored(tmp_path):
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": _url("sentinel")},
                     durability={"replicas": 2, "timeout_ms": 50})  # the set has one replica
    out = cli("work", "push", "tests.Noop")
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("Error: push of job 1 is not durable: 1 of 2 replica(s) confirmed it within 50 ms")
    assert json.loads(cli("work", "info", "--json").stdout)["waiting"] == 1
