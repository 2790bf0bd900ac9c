"""Huey 3.5: RedisHuey (blocking BRPOP reads) and a one-thread consumer; no bulk push, no fork mode."""

from __future__ import annotations

import time
from typing import Any

from huey import RedisHuey

from bench.peers import Adapter, Cfg, body


def make(url: str) -> tuple[RedisHuey, Any]:
    """The huey and its task, built the same way in the producer and in the consumer process."""
    huey = RedisHuey("bench", url=url)

    @huey.task()
    def incr(ts: float | None = None) -> None:
        body.run(ts)

    return huey, incr


class HueyAdapter(Adapter):
    label = "Huey 3.5.4"

    def __init__(self, cfg: Cfg) -> None:
        super().__init__(cfg)
        self.huey, self.task = make(cfg.redis_url)

    def push_one(self, ts: float | None = None) -> None:
        self.task(ts)

    @classmethod
    def work(cls, mode: str, cfg: Cfg) -> None:
        huey, _ = make(cfg.redis_url)
        consumer = huey.create_consumer(workers=1, worker_type="thread")
        consumer.start()
        while True:  # the harness kills the process once the counter is reached
            time.sleep(1)
