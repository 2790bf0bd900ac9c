"""The systems of ``bench/io_bound.py``: one I/O-bound job (a 20 ms wait, then an INCR and stamps)
pushed and worked by pubq (``--concurrency`` threads), Dramatiq (worker threads), Huey (thread
workers), arq (``max_jobs``), saq (``concurrency``) and RQ (``SimpleWorker``, one job at a time).

Each peer is imported only in the process that drives it (they live in ``bench/.venv-peers``,
never in pubq's dependencies). The job's wait is ``time.sleep`` or a GET on the local HTTP server
for sync workers, and ``asyncio.sleep`` or an asyncio GET for arq and saq (a blocking wait on their
event loop would serialise them). The body stamps the worker's time and CPU at the drain's first
and last job, so the rate and the CPU per job exclude start-up; the paced jobs carry their push
time and record push → start (pickup).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import redis

from pubq import Job

WAIT = 0.020
COUNTER = "bench:io:count"
STARTS = "bench:io:starts"
STAMPS = "bench:io:stamps"
SYSTEMS = ("pubq", "dramatiq", "huey", "arq", "saq", "rq")
LABELS = {"pubq": "pubq (threads)", "dramatiq": "Dramatiq 2.2.1 (threads)", "huey": "Huey 3.5.4 (thread workers)",
          "arq": "arq 0.28.0 (max_jobs)", "saq": "saq 0.26.4 (concurrency)", "rq": "RQ 3.0.0 (SimpleWorker, 1)"}
_state: dict[str, Any] = {}


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _sync_redis() -> redis.Redis:
    if _state.get("pid") != os.getpid():
        _state.update(pid=os.getpid(), r=redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    return _state["r"]


def _stamp(k: int, n: int) -> str | None:
    return json.dumps({"t": time.time(), "cpu": _cpu()}) if n and k in (1, n) else None


def io_sync(mode: str = "sleep", ts: float = 0.0, n: int = 0) -> None:
    """The job body of the thread-based systems (and RQ)."""
    started = time.time()
    if mode == "http":
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", int(os.environ["BENCH_HTTP_PORT"]), timeout=30)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
    else:
        time.sleep(WAIT)
    r = _sync_redis()
    k = r.incr(COUNTER)
    pipe = r.pipeline(transaction=False)
    if ts:
        pipe.rpush(STARTS, f"{started - ts:.6f}")
    if (stamp := _stamp(k, n)) is not None:
        pipe.hset(STAMPS, str(k), stamp)
    pipe.execute()


async def io_async(mode: str = "sleep", ts: float = 0.0, n: int = 0) -> None:
    """The job body of the asyncio systems (arq, saq)."""
    import redis.asyncio as aredis

    started = time.time()
    if mode == "http":
        reader, writer = await asyncio.open_connection("127.0.0.1", int(os.environ["BENCH_HTTP_PORT"]))
        writer.write(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()
    else:
        await asyncio.sleep(WAIT)
    key = ("ar", os.getpid(), id(asyncio.get_running_loop()))
    if _state.get("akey") != key:
        _state.update(akey=key, ar=aredis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    r = _state["ar"]
    k = await r.incr(COUNTER)
    if ts:
        await r.rpush(STARTS, f"{started - ts:.6f}")
    if (stamp := _stamp(k, n)) is not None:
        await r.hset(STAMPS, str(k), stamp)


@dataclass
class IoJob(Job):
    name = "bench.Io"
    mode: str = "sleep"
    ts: float = 0.0
    n: int = 0

    def execute(self, ctx: Any) -> None:
        io_sync(self.mode, self.ts, self.n)


# -- producers (the harness) ---------------------------------------------------------------------


def pubq_queue(url: str, channel: str) -> Any:
    from pubq.config import QueueConfig, RetryPolicy
    from pubq.drivers.redis import RedisDriver
    from pubq.job import JobRegistry
    from pubq.queue import Queue

    qc = QueueConfig(name="io", driver="redis", channel=channel, url=url, ttr=60, attempts=1,
                     retry=RetryPolicy(), grace=5)
    return Queue(qc, RedisDriver(url, channel), JobRegistry([IoJob]))


def _arq_settings(url: str) -> Any:
    from arq.connections import RedisSettings

    u = urlparse(url)
    return RedisSettings(host=u.hostname or "127.0.0.1", port=u.port or 6379, database=int(u.path[1:] or 0))


class Producer:
    """Pushes ``(mode, ts, n)`` jobs to one system's queue ``channel``."""

    def __init__(self, system: str, url: str, channel: str) -> None:
        self.system, self.url, self.channel = system, url, channel
        self.loop: asyncio.AbstractEventLoop | None = None
        if system == "pubq":
            self.queue = pubq_queue(url, channel)
        elif system == "dramatiq":
            self.broker, self.actor = _dramatiq(url, channel)
        elif system == "huey":
            self.huey, self.task = _huey(url, channel)
        elif system == "rq":
            from rq import Queue as RqQueue

            self.rq = RqQueue(channel, connection=redis.Redis.from_url(url))
        elif system == "arq":
            from arq import create_pool

            self.loop = asyncio.new_event_loop()
            self.pool = self.loop.run_until_complete(create_pool(_arq_settings(url)))
        elif system == "saq":
            from saq import Queue as SaqQueue

            self.loop = asyncio.new_event_loop()
            self.saq = SaqQueue.from_url(url, name=channel)
            self.loop.run_until_complete(self.saq.connect())
        else:
            raise ValueError(system)

    def push(self, mode: str, ts: float, n: int) -> None:
        s = self.system
        if s == "pubq":
            self.queue.push(IoJob(mode=mode, ts=ts, n=n))
        elif s == "dramatiq":
            self.actor.send(mode, ts, n)
        elif s == "huey":
            self.task(mode, ts, n)
        elif s == "rq":
            self.rq.enqueue("bench.io_peers.io_sync", mode, ts, n, result_ttl=0)
        elif s == "arq":
            assert self.loop is not None
            self.loop.run_until_complete(self.pool.enqueue_job("io", mode, ts, n, _queue_name=self.channel))
        else:
            assert self.loop is not None
            self.loop.run_until_complete(self.saq.enqueue("saq_io", mode=mode, ts=ts, n=n, timeout=60))

    def push_many(self, mode: str, n: int) -> None:
        if self.system == "pubq":
            for s in range(0, n, 1000):
                self.queue.push_many([IoJob(mode=mode, n=n) for _ in range(min(1000, n - s))])
            return
        for _ in range(n):
            self.push(mode, 0.0, n)

    def failed(self) -> str | None:
        """pubq only: the first failed job's error (a failed job never counts)."""
        if self.system != "pubq" or not self.queue.driver.counts().failed:
            return None
        f = self.queue.driver.failed_list(0, 1)[0]
        return f"job {f.job_id} failed ({f.error_class}: {f.message})"

    def close(self) -> None:
        if self.system == "pubq":
            self.queue.close()
        elif self.loop is not None:
            self.loop.close()


# -- workers (a process each) --------------------------------------------------------------------


def _dramatiq(url: str, channel: str) -> tuple[Any, Any]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)
    actor = dramatiq.actor(io_sync, actor_name="io", queue_name=channel, max_retries=0)
    return broker, actor


def _huey(url: str, channel: str) -> tuple[Any, Any]:
    from huey import RedisHuey

    huey = RedisHuey(channel, url=url)
    return huey, huey.task(name="io")(io_sync)


async def saq_io(ctx: Any, *, mode: str, ts: float, n: int) -> None:
    await io_async(mode, ts, n)


async def arq_io(ctx: Any, mode: str, ts: float, n: int) -> None:
    await io_async(mode, ts, n)


def work(system: str, url: str, channel: str, concurrency: int) -> None:
    """Run one system's worker until the harness terminates the process."""
    if system == "dramatiq":
        import dramatiq

        broker, _ = _dramatiq(url, channel)
        dramatiq.Worker(broker, worker_threads=concurrency).start()
        while True:
            time.sleep(1)
    elif system == "huey":
        huey, _ = _huey(url, channel)
        huey.create_consumer(workers=concurrency, worker_type="thread").start()
        while True:
            time.sleep(1)
    elif system == "rq":
        from rq import Queue as RqQueue
        from rq import SimpleWorker

        conn = redis.Redis.from_url(url)
        SimpleWorker([RqQueue(channel, connection=conn)], connection=conn).work(with_scheduler=False)
    elif system == "arq":
        from arq import Worker
        from arq.worker import func

        Worker(functions=[func(arq_io, name="io")], redis_settings=_arq_settings(url), queue_name=channel,
               max_jobs=concurrency, poll_delay=0.005, handle_signals=False).run()
    elif system == "saq":
        from saq import Queue as SaqQueue
        from saq import Worker as SaqWorker

        async def main() -> None:
            worker = SaqWorker(SaqQueue.from_url(url, name=channel), functions=[saq_io], concurrency=concurrency)
            await worker.start()

        asyncio.run(main())
    else:
        raise ValueError(system)
