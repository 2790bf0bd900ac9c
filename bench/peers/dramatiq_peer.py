"""Dramatiq 2.2: RedisBroker, an actor, ``send``; a Worker with one thread; no bulk push, no fork mode."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers import Adapter, Cfg, body


def make(url: str) -> tuple[RedisBroker, Any]:
    """Broker and actor, built the same way in the producer and in the worker process."""
    broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name="bench", max_retries=0)
    def incr(ts: float | None = None) -> None:
        body.run(ts)

    return broker, incr


class DramatiqAdapter(Adapter):
    label = "Dramatiq 2.2.1 (1 thread)"

    def __init__(self, cfg: Cfg) -> None:
        super().__init__(cfg)
        self.broker, self.actor = make(cfg.redis_url)

    def push_one(self, ts: float | None = None) -> None:
        self.actor.send(ts)

    def close(self) -> None:
        self.broker.close()

    @classmethod
    def work(cls, mode: str, cfg: Cfg) -> None:
        broker, _ = make(cfg.redis_url)
        worker = dramatiq.Worker(broker, worker_threads=1)
        worker.start()
        while True:  # the harness kills the process once the counter is reached
            time.sleep(1)
