"""The redis-py floor: LPUSH; LMOVE/BLMOVE into a processing list + LREM ack; pipelined bulk push."""

from __future__ import annotations

import json

import redis

from bench.peers import Adapter, Cfg, body

QUEUE = "raw:queue"
PROCESSING = "raw:processing"
BULK_CHUNK = 1000


class RawAdapter(Adapter):
    label = "raw redis-py (LPUSH; BLMOVE+LREM)"
    bulk = True

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
            body.run(json.loads(raw)["ts"])
            r.lrem(PROCESSING, 1, raw)
