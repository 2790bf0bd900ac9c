"""Adapters that drive pubq and its peers (RQ, Dramatiq, Huey, arq, raw redis-py) the same way.

Every adapter pushes jobs whose body is :func:`bench.peers.body.run` (one ``INCR`` on a shared counter
in the private Redis), and runs a worker in its own process (``bench.peers.worker_main``), so the
harness can check the counter and compare systems inside one run.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import asdict, dataclass

#: Row id -> (module, class). The order is the table's order.
ROWS: dict[str, tuple[str, str]] = {
    "pubq-redis": ("bench.peers.pubq_peer", "PubqRedis"),
    "pubq-sqlite": ("bench.peers.pubq_peer", "PubqSqlite"),
    "pubq-pg": ("bench.peers.pubq_peer", "PubqPostgres"),
    "rq": ("bench.peers.rq_peer", "RqAdapter"),
    "dramatiq": ("bench.peers.dramatiq_peer", "DramatiqAdapter"),
    "huey": ("bench.peers.huey_peer", "HueyAdapter"),
    "arq": ("bench.peers.arq_peer", "ArqAdapter"),
    "raw": ("bench.peers.raw_peer", "RawAdapter"),
}
#: Names accepted by ``--systems`` that stand for several rows.
GROUPS = {"pubq": ["pubq-redis", "pubq-sqlite", "pubq-pg"]}

#: Keys of the private Redis the body and the harness share.
COUNTER = "bench:counter"
LATENCIES = "bench:lat"
DONE = "bench:done"
STAMP = "bench:stamp:"
ENV = "BENCH_CFG"


@dataclass
class Cfg:
    """What a worker process needs; passed through the environment as JSON."""

    row: str
    redis_url: str  # the queue's Redis (may be the counting proxy)
    body_url: str  # the private Redis itself, for the job body
    db_url: str = ""  # pubq db rows (may be the counting proxy)
    n: int = 0  # jobs of this drain: the body stamps job 1 and job n
    stamp: bool = False
    fork: bool = False  # the body runs in a child of the worker: read the parent's CPU time

    def to_env(self) -> dict[str, str]:
        return {ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> Cfg:
        return cls(**json.loads(os.environ[ENV]))


def adapter_class(row: str) -> type:
    """The adapter class of ``row`` (imported only when used: each peer imports its own package)."""
    module, name = ROWS[row]
    return getattr(importlib.import_module(module), name)


class Adapter:
    """Producer side (in the harness) and worker side (``work``, in its own process) of one system."""

    label = ""
    bulk = False  # has a bulk push
    fork = False  # has a fork-per-job worker
    redis = True  # stores its queue in Redis (commands per job are meaningful)
    note = ""

    def __init__(self, cfg: Cfg) -> None:
        self.cfg = cfg

    def push_one(self, ts: float | None = None) -> None:
        raise NotImplementedError

    def push_bulk(self, count: int) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Empty storage that is not in the private Redis (the harness FLUSHALLs that one)."""

    def close(self) -> None:
        pass

    @classmethod
    def work(cls, mode: str, cfg: Cfg) -> None:
        """Run a worker in this process: ``drain`` (no fork), ``fork`` (fork per job) or ``listen``."""
        raise NotImplementedError
