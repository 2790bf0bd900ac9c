"""arq 0.28: ``enqueue_job`` on an ArqRedis pool; a burst (drain) or polling (listen) Worker."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

from arq import Worker, create_pool
from arq.connections import RedisSettings
from arq.worker import func

from bench.peers import Adapter, Cfg, body


def settings(url: str) -> RedisSettings:
    u = urlparse(url)
    return RedisSettings(host=u.hostname or "127.0.0.1", port=u.port or 6379, database=int(u.path[1:] or 0))


async def incr(ctx: dict[str, Any], ts: float | None = None) -> None:
    body.run(ts)  # a blocking INCR inside the event loop, as a sync body would be


class ArqAdapter(Adapter):
    label = "arq 0.28.0 (default max_jobs=10)"

    def __init__(self, cfg: Cfg) -> None:
        super().__init__(cfg)
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(settings(cfg.redis_url)))

    def push_one(self, ts: float | None = None) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job("incr", ts))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()

    @classmethod
    def work(cls, mode: str, cfg: Cfg) -> None:
        worker = Worker(functions=[func(incr, name="incr")], redis_settings=settings(cfg.redis_url),
                        burst=mode != "listen", handle_signals=False)
        worker.run()
