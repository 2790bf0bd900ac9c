"""The job body every system runs: one INCR on the shared counter, plus the harness's probes.

Drains stamp job 1 and job n (time, the worker's CPU time, Redis's command counter) so the rate,
CPU per job and commands per job exclude start-up and shut-down. Latency runs push the enqueue
time in the job; the body reports start - pushed. Both clocks are ``time.time()`` on one machine.
"""

from __future__ import annotations

import json
import os
import time

import redis

from bench.peers import COUNTER, DONE, LATENCIES, STAMP, Cfg

_state: dict[str, object] = {}


def _client() -> tuple[redis.Redis, Cfg]:
    """One connection per process (a forked child opens its own, as a real job would)."""
    if _state.get("pid") != os.getpid():
        cfg = Cfg.from_env()
        _state.update(pid=os.getpid(), cfg=cfg, r=redis.Redis.from_url(cfg.body_url))
    return _state["r"], _state["cfg"]  # type: ignore[return-value]


def cpu_seconds(pid: int) -> float:
    """user + sys of ``pid`` and its reaped children, from /proc (clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run(ts: float | None = None) -> None:
    start = time.time()
    r, cfg = _client()
    n = r.incr(COUNTER)
    if ts is not None:
        r.rpush(LATENCIES, start - ts)
    elif cfg.stamp and (n == 1 or n == cfg.n):
        worker = os.getppid() if cfg.fork else os.getpid()
        stamp = {"t": start if n == 1 else time.time(), "cpu": cpu_seconds(worker),
                 "cmds": r.info("stats")["total_commands_processed"]}
        r.set(f"{STAMP}{n}", json.dumps(stamp))
        if n == cfg.n:
            r.rpush(DONE, 1)
