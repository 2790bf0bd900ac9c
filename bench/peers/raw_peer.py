"""The redis-py floor: LPUSH; LMOVE/BLMOVE into a processing list + LREM ack; pipelined bulk push.

Its fork mode is the fork-per-job floor: the worker forks a child per job, the child runs the body
(a new connection, as any forked job has) and exits (``os._exit``); the worker waits for it and acks.
"""

from __future__ import annotations

import json
import os

import redis

from bench.peers import Adapter, Cfg, body

QUEUE = "raw:queue"
PROCESSING = "raw:processing"
BULK_CHUNK = 1000


class RawAdapter(Adapter):
    label = "raw redis-py (LPUSH; BLMOVE+LREM)"
    bulk = True
    fork = True

    def __init__(self, cfg: Cfg) -> None:
        super().__init__(cfg)
        self.r = redis.Redis.from_url(cfg.redis_url)

    def push_one(self, ts: float | None = None) -> None:
        self.r.lpush(QUEUE, json.dumps({"ts": ts}))

    def push_bulk(self, count: int) -> None:
        payload = json.dumps({"ts": None})
        for start in range(0, count, BULK_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for _ in range(min(BULK_CHUNK, count - start)):
                pipe.lpush(QUEUE, payload)
            pipe.execute()

    def close(self) -> None:
        self.r.close()

    @classmethod
    def work(cls, mode: str, cfg: Cfg) -> None:
        r = redis.Redis.from_url(cfg.redis_url)
        while True:
            if mode == "listen":
                raw = r.blmove(QUEUE, PROCESSING, 1, "RIGHT", "LEFT")
                if raw is None:
                    continue
            else:
                raw = r.lmove(QUEUE, PROCESSING, "RIGHT", "LEFT")
                if raw is None:
                    return
            ts = json.loads(raw)["ts"]
            if mode == "fork":
                pid = os.fork()
                if pid == 0:
                    try:
                        body.run(ts)
                    finally:
                        os._exit(0)
                os.waitpid(pid, 0)
            else:
                body.run(ts)
            r.lrem(PROCESSING, 1, raw)
