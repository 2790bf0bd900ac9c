"""Measurements, the same for every adapter: push rates, a timed drain, pickup latency, round trips.

Workers run as separate processes pinned to the client CPU (``taskset``), under GNU ``time -f %M``
for peak RSS. A drain is timed by the body's own stamps on job 1 and job n (start-up excluded) and
is verified by the shared counter: exactly n, none lost, none run twice.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from bench.common import CLIENT_CPU, percentile, taskset_prefix
from bench.peers import COUNTER, DONE, LATENCIES, STAMP, Adapter, Cfg
from bench.peers.proxy import CountingProxy
from tests.helpers import ROOT

GNU_TIME = "/usr/bin/time"
#: Worker logs of this run (made on first use, removed by cleanup_logs).
LOG_DIR = Path(tempfile.gettempdir()) / f"pubq-compare-logs-{os.getpid()}"


class RunFailed(Exception):
    """A measurement that did not complete or whose counter check failed."""


@dataclass
class WorkerProc:
    """A worker process (under ``taskset`` and GNU ``time`` when available) and its log."""

    cfg: Cfg
    mode: str
    rss: bool = True
    proc: subprocess.Popen | None = None
    pid: int = 0
    log: Path = field(default_factory=Path)
    time_file: Path = field(default_factory=Path)

    def start(self) -> WorkerProc:
        LOG_DIR.mkdir(mode=0o700, exist_ok=True)
        tag = f"{self.cfg.row}-{self.mode}-{time.monotonic_ns()}"
        self.log = LOG_DIR / f"{tag}.log"
        self.time_file = LOG_DIR / f"{tag}.time"
        use_time = self.rss and os.access(GNU_TIME, os.X_OK)
        cmd = [*taskset_prefix(CLIENT_CPU), *([GNU_TIME, "-o", str(self.time_file), "-f", "%M"] if use_time else []),
               sys.executable, "-m", "bench.peers.worker_main", self.mode]
        env = {**os.environ, **self.cfg.to_env(), "PYTHONPATH": str(ROOT)}
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self._worker_pid() if use_time else self.proc.pid
        return self

    def _worker_pid(self) -> int:
        """The python process under ``time`` (its only child)."""
        assert self.proc is not None
        end = time.monotonic() + 10
        while time.monotonic() < end and self.proc.poll() is None:
            try:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            time.sleep(0.005)
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 0.0) -> None:
        """Wait ``grace`` for a natural exit (burst workers), then SIGKILL the worker's process group."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=grace) if grace > 0 else None
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is None:
            # the worker first, so GNU time outlives it and reports its peak RSS; then any stragglers
            for pid, kill in ((self.pid, os.kill), (self.proc.pid, os.killpg)):
                try:
                    kill(pid, signal.SIGKILL)
                    self.proc.wait(timeout=5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
                break
        self.proc.wait(timeout=15)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # forked job children, if any are left
        except (ProcessLookupError, PermissionError):
            pass

    def peak_rss_mib(self) -> float | None:
        try:
            lines = [x for x in self.time_file.read_text().splitlines() if x.strip()]
            return round(int(lines[-1]) / 1024, 1)
        except (OSError, ValueError, IndexError):
            return None

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""


def reset(r: redis.Redis, adapter: Adapter) -> None:
    """Empty the private Redis (ours alone) and the adapter's own storage."""
    r.flushall()
    adapter.reset()


def timed_push(adapter: Adapter, n: int, bulk: bool) -> float:
    start = time.perf_counter()
    if bulk:
        adapter.push_bulk(n)
    else:
        for _ in range(n):
            adapter.push_one()
    return n / (time.perf_counter() - start)


def drain(r: redis.Redis, cfg: Cfg, mode: str, n: int, timeout: float,
          proxy: CountingProxy | None = None) -> dict[str, Any]:
    """Start a worker on ``n`` pre-filled jobs; wait for job n's stamp; verify the counter."""
    cfg = replace(cfg, n=n, stamp=True, fork=mode == "fork")
    w = WorkerProc(cfg, mode).start()
    deadline = time.monotonic() + timeout
    try:
        while not r.blpop([DONE], timeout=1):
            if not w.alive():
                raise RunFailed(f"{mode}: worker exited ({w.proc.returncode}) at counter "  # type: ignore[union-attr]
                                f"{r.get(COUNTER)} of {n}: {w.tail()}")
            if time.monotonic() > deadline:
                raise RunFailed(f"{mode}: timeout after {timeout:.0f}s at counter {r.get(COUNTER)} of {n}")
    finally:
        w.stop(grace=1.0)
    count = int(r.get(COUNTER) or 0)
    if count != n:
        raise RunFailed(f"{mode}: counter {count} != {n} (jobs lost or run twice)")
    first, last = (json.loads(r.get(f"{STAMP}{k}")) for k in (1, n))
    seconds = last["t"] - first["t"]
    out: dict[str, Any] = {
        "jobs_per_s": n / seconds,
        "cpu_us_per_job": (last["cpu"] - first["cpu"]) / (n - 1) * 1e6,
        # the stamp's SET and INFO, and about one harness BLPOP per second, are not the system's
        "cmds_per_job": (last["cmds"] - first["cmds"] - 2 - int(seconds)) / (n - 1),
        "peak_rss_mib": w.peak_rss_mib(),
    }
    if proxy is not None:  # +1: the body's own INCR goes straight to Redis, not through the proxy
        out["round_trips_per_job"] = proxy.count_between(first["t"], last["t"]) / (n - 1) + 1
    return out


def _wait_counter(r: redis.Redis, target: int, timeout: float, w: WorkerProc) -> None:
    end = time.monotonic() + timeout
    while int(r.get(COUNTER) or 0) < target:
        if not w.alive():
            raise RunFailed(f"listen: worker exited: {w.tail()}")
        if time.monotonic() > end:
            raise RunFailed(f"listen: timeout at counter {r.get(COUNTER)} of {target}")
        time.sleep(0.02)


def _wait_latencies(r: redis.Redis, count: int, w: WorkerProc, timeout: float = 5.0) -> None:
    """The body counts a job (INCR) before it records its latency (RPUSH): the counter can be
    complete while the last job's latency is still on its way. Read only once every one is in."""
    end = time.monotonic() + timeout
    while r.llen(LATENCIES) < count:
        if not w.alive() or time.monotonic() > end:
            raise RunFailed(f"listen: {r.llen(LATENCIES)} of {count} latencies recorded")
        time.sleep(0.001)


def latency(r: redis.Redis, adapter: Adapter, cfg: Cfg, rates: list[tuple[float, float]]) -> dict[str, Any]:
    """An idle listening worker; push at fixed rates; push time (in the job) -> job start, in ms."""
    w = WorkerProc(replace(cfg, stamp=False), "listen", rss=False).start()
    out: dict[str, Any] = {}
    try:
        adapter.push_one(time.time())  # warm-up: the worker is up and idle before timing
        _wait_counter(r, 1, 60, w)
        time.sleep(0.3)
        r.delete(LATENCIES)
        expected = 1
        for rate, seconds in rates:
            count = max(1, int(rate * seconds))
            expected += count
            t0 = time.perf_counter()
            for i in range(count):
                pause = t0 + i / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                adapter.push_one(time.time())
            _wait_counter(r, expected, 30 + seconds * 5, w)
            _wait_latencies(r, count, w)
            lat = [float(x) * 1000 for x in r.lrange(LATENCIES, 0, -1)]
            r.delete(LATENCIES)
            key = f"{rate:g}"
            out[f"p50_ms@{key}"] = statistics.median(lat)
            out[f"p99_ms@{key}"] = percentile(lat, 99)
            out[f"max_ms@{key}"] = max(lat)
            time.sleep(0.3)
        time.sleep(0.3)
        count = int(r.get(COUNTER) or 0)
        if count != expected:
            raise RunFailed(f"listen: counter {count} != {expected} (jobs lost or run twice)")
    finally:
        w.stop()
    return out


def make_proxy(cfg: Cfg, redis_port: int, pg_port: int = 5432) -> tuple[CountingProxy, Cfg]:
    """A proxy in front of whatever the worker talks to for its queue (Redis, or the SQL server)."""
    if cfg.db_url.startswith("postgresql"):
        proxy = CountingProxy("127.0.0.1", pg_port)
        return proxy, replace(cfg, db_url=cfg.db_url.replace(f":{pg_port}/", f":{proxy.port}/"))
    proxy = CountingProxy("127.0.0.1", redis_port)
    return proxy, replace(cfg, redis_url=f"redis://127.0.0.1:{proxy.port}/0")


def cleanup_logs() -> None:
    shutil.rmtree(LOG_DIR, ignore_errors=True)
