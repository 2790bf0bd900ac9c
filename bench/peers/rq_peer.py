"""RQ 3: ``enqueue`` / ``enqueue_many``; SimpleWorker (no fork) and Worker (fork per job), burst mode."""

from __future__ import annotations

import redis
from rq import Queue, SimpleWorker, Worker

from bench.peers import Adapter, Cfg, body

QUEUE = "bench"
BULK_CHUNK = 1000


def task(ts: float | None = None) -> None:
    body.run(ts)


class RqAdapter(Adapter):
    label = "RQ 3.0.0"
    bulk = True
    fork = True

    def __init__(self, cfg: Cfg) -> None:
        super().__init__(cfg)
        self.r = redis.Redis.from_url(cfg.redis_url)
        self.q = Queue(QUEUE, connection=self.r)

    def push_one(self, ts: float | None = None) -> None:
        self.q.enqueue(task, ts)

    def push_bulk(self, count: int) -> None:
        for start in range(0, count, BULK_CHUNK):
            self.q.enqueue_many([Queue.prepare_data(task, (None,)) for _ in range(min(BULK_CHUNK, count - start))])

    def close(self) -> None:
        self.r.close()

    @classmethod
    def work(cls, mode: str, cfg: Cfg) -> None:
        r = redis.Redis.from_url(cfg.redis_url)
        worker_cls = Worker if mode == "fork" else SimpleWorker
        worker = worker_cls([Queue(QUEUE, connection=r)], connection=r)
        worker.work(burst=mode != "listen", logging_level="WARNING")
