"""pubq: Queue + Worker driven as ``pubq <queue> run`` / ``listen`` do, on Redis, SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.peers import Adapter, Cfg, body
from pubq import Job
from pubq.config import QueueConfig, RetryPolicy
from pubq.job import JobRegistry
from pubq.queue import Queue
from pubq.worker import Worker

CHANNEL = "bench"
BULK_CHUNK = 1000


@dataclass
class BenchIncr(Job):
    name = "bench.Incr"
    ts: float | None = None

    def execute(self, ctx: Any) -> None:
        body.run(self.ts)


class _Pubq(Adapter):
    bulk = True
    fork = True  # isolate mode

    def __init__(self, cfg: Cfg) -> None:
        super().__init__(cfg)
        self.queue = self.make_queue(cfg)

    @classmethod
    def driver(cls, cfg: Cfg) -> Any:
        raise NotImplementedError

    @classmethod
    def make_queue(cls, cfg: Cfg) -> Queue:
        qc = QueueConfig(name="bench", driver="bench", channel=CHANNEL, url="", ttr=60, attempts=1,
                         retry=RetryPolicy(), grace=5)
        return Queue(qc, cls.driver(cfg), JobRegistry([BenchIncr]))

    def push_one(self, ts: float | None = None) -> None:
        self.queue.push(BenchIncr(ts))

    def push_bulk(self, count: int) -> None:
        for start in range(0, count, BULK_CHUNK):
            self.queue.push_many([BenchIncr() for _ in range(min(BULK_CHUNK, count - start))])

    def close(self) -> None:
        self.queue.close()

    @classmethod
    def work(cls, mode: str, cfg: Cfg) -> None:
        worker = Worker(cls.make_queue(cfg), isolate=mode == "fork", install_signals=False)
        if mode == "listen":
            worker.listen(5)
        else:
            worker.run()


class PubqRedis(_Pubq):
    label = "pubq redis"

    @classmethod
    def driver(cls, cfg: Cfg) -> Any:
        from pubq.drivers.redis import RedisDriver

        return RedisDriver(cfg.redis_url, CHANNEL)


class _PubqDb(_Pubq):
    redis = False

    @classmethod
    def driver(cls, cfg: Cfg) -> Any:
        from pubq.drivers.db import DbDriver

        return DbDriver(cfg.db_url, CHANNEL)

    def reset(self) -> None:
        self.queue.driver.clear()


class PubqSqlite(_PubqDb):
    label = "pubq sqlite"


class PubqPostgres(_PubqDb):
    label = "pubq postgres"
