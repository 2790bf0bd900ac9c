"""The environment of ``bench/scale/run.py``: backends it creates and removes, configs, CLI runs, /proc sampling.

Kept apart from the measures so that each measure reads as: set up, run the real CLI, verify, report.
Everything created here is removed by ``Backend.cleanup`` (a fresh PostgreSQL/MariaDB database per
backend, a SQLite file in the run's temporary directory); the private Redis dies with the run.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import CLIENT_CPU, taskset_prefix
from tests.helpers import ROOT, PrivateRedis, fresh_pg_database, subprocess_env

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB_ADMIN = dict(host="127.0.0.1", port=3306, user="root", password="", database="test")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- backends --------------------------------------------------------------------------------------


@dataclass
class Backend:
    """One queue backend: the URL a config names, how to find its server processes, how to remove it."""

    name: str
    url: str
    server_comms: tuple[str, ...] = ()
    server_pid: int | None = None
    drop: Callable[[], None] | None = None

    def server_pids(self) -> list[int]:
        if self.server_pid is not None:
            return [self.server_pid]
        return pids_by_comm(self.server_comms) if self.server_comms else []

    def cleanup(self) -> None:
        if self.drop is not None:
            self.drop()
            self.drop = None


def open_backend(name: str, tmp: Path, redis: PrivateRedis) -> Backend:
    """Create a fresh, private place for the queue tables (or use the private Redis)."""
    if name == "redis":
        assert redis.proc is not None
        return Backend("redis", redis.url, server_pid=redis.proc.pid)
    if name == "sqlite":
        path = tmp / f"queue-{uuid.uuid4().hex[:8]}.db"

        def drop_file() -> None:
            for suffix in ("", "-wal", "-shm", "-journal", "-pubq.lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return Backend("sqlite", f"sqlite:///{path}", drop=drop_file)
    db = f"pubq_bench_{uuid.uuid4().hex[:10]}"
    if name == "postgres":
        url, drop = fresh_pg_database(PG_ADMIN_URL, "pubq_bench")
        return Backend("postgres", url, server_comms=("postgres",), drop=drop)
    if name == "mariadb":
        import pymysql

        def my(sql: str) -> None:
            conn = pymysql.connect(**MARIADB_ADMIN, connect_timeout=10, autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
            finally:
                conn.close()

        my(f"CREATE DATABASE {db}")
        return Backend("mariadb", f"mysql://root@127.0.0.1:3306/{db}", server_comms=("mariadbd", "mysqld"),
                       drop=lambda: my(f"DROP DATABASE IF EXISTS {db}"))
    raise ValueError(f"unknown backend {name!r}")


def write_config(tmp: Path, backend: Backend, channel: str, *, gate: bool = False) -> Path:
    """A pubq.yaml with one queue ``work``, as a user would write it (no behaviours, quiet log)."""
    queue: dict[str, Any] = {
        "driver": "redis" if backend.name == "redis" else "db",
        "channel": channel, "ttr": 3600, "attempts": 1,
        "retry": {"backoff": "fixed", "delay": 0, "jitter": False}, "grace": 5,
    }
    if gate:
        queue["on"] = {"workerStart": "bench.scale.jobs:start_gate"}
    data: dict[str, Any] = {
        "database": f"sqlite:///{tmp / 'state.db'}",
        "jobs": ["bench.scale.jobs"],
        "queues": {"work": queue},
        "log": {"file": str(tmp / "worker.log"), "level": "WARNING"},
    }
    if backend.name == "redis":
        data["redis"] = backend.url
    else:
        data["queue_database"] = backend.url
    path = tmp / f"pubq-{channel.replace(':', '-')}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def pubq_cmd(config: Path, *args: str, cpu: int | None = CLIENT_CPU) -> list[str]:
    """``python -m pubq --config … ARGS``, pinned to ``cpu`` (taskset execs, so the pid is Python's)."""
    pin = taskset_prefix(cpu) if cpu is not None else []
    return [*pin, sys.executable, "-m", "pubq", "--config", str(config), *args]


def open_queue(config: Path) -> Any:
    """The ``work`` queue in this process, built by pubq's own config loader (for filling/verifying)."""
    from pubq.app import App
    from pubq.config import load_config

    return App(load_config(config, env=subprocess_env())).queue("work")


def wait_all(procs: Sequence[subprocess.Popen], timeout: float) -> list[int]:
    """Wait for every process; past ``timeout`` kill the ones still running (ours, by pid) and raise."""
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    q.kill()
                    q.wait()
            raise RuntimeError(f"worker processes did not finish within {timeout:.0f} s") from None
    return codes


# -- /proc -----------------------------------------------------------------------------------------


def pids_by_comm(names: Sequence[str]) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as fh:
                    if fh.read().strip() in names:
                        out.append(int(entry.name))
            except OSError:
                pass
    return out


def proc_jiffies(pid: int) -> int | None:
    """utime + stime of one process in clock ticks (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per CPU (cpu0, cpu1, …): (busy, total) jiffies since boot, busy excluding idle and iowait."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                nums = [int(v) for v in vals[:8]]
                total = sum(nums)
                out[name] = (total - nums[3] - nums[4], total)
    return out


def rss_mib_of(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def child_pid(pid: int, timeout: float = 10.0) -> int | None:
    """The (single) child of ``pid``, e.g. the Python that ``/usr/bin/time`` started."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                kids = fh.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            return None
        time.sleep(0.005)
    return None


@dataclass
class Sample:
    t: float
    cpus: dict[str, tuple[int, int]]
    workers: int
    server: int


@dataclass
class CpuSampler:
    """Samples machine CPU, the workers' and the server's CPU time every ``interval`` seconds.

    A worker that exits keeps its last reading, so sums stay monotonic across the drain window.
    """

    server_pids: Callable[[], list[int]]
    interval: float = 0.1
    worker_pids: list[int] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    _last: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _take(self) -> None:
        for pid in self.worker_pids:
            j = proc_jiffies(pid)
            if j is not None:
                self._last[pid] = j
        server = sum(j for j in (proc_jiffies(p) for p in self.server_pids()) if j is not None)
        self.samples.append(Sample(time.time(), cpu_times(), sum(self._last.values()), server))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def start(self) -> CpuSampler:
        self._take()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """CPU use between two wall-clock times: per-CPU busy %, workers and server in CPUs."""
        inside = [s for s in self.samples if t0 <= s.t <= t1]
        if len(inside) < 2:
            return {}
        a, b = inside[0], inside[-1]
        dt = b.t - a.t
        out = {f"{cpu}_busy_pct": round(100 * (b.cpus[cpu][0] - a.cpus[cpu][0])
                                        / max(1, b.cpus[cpu][1] - a.cpus[cpu][1]), 1) for cpu in sorted(a.cpus)}
        out["workers_cpus"] = round((b.workers - a.workers) / CLK_TCK / dt, 2)
        out["server_cpus"] = round((b.server - a.server) / CLK_TCK / dt, 2)
        out["window_s"] = round(dt, 2)
        return out


# -- machine ---------------------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        return out.splitlines()[0] if out else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPUs, memory, versions, load at the start, pubq's commit."""
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kib = int(fh.readline().split()[1])
    return {
        "cpu_model": model, "cpus": os.cpu_count(), "mem_gib": round(mem_kib / 1024**2, 1),
        "kernel": platform.release(), "python": sys.version.split()[0],
        "redis_server": _first_line(["redis-server", "--version"]),
        "postgres": _first_line(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Atc",
                                 "SHOW server_version"]),
        "mariadb": _first_line(["mysql", "-h127.0.0.1", "-uroot", "-N", "-e", "SELECT VERSION()"]),
        "pubq_commit": _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "pubq_tree_dirty_files": _first_line(["sh", "-c", f"git -C {ROOT} status --porcelain pubq | wc -l"]),
        "loadavg_start": os.getloadavg(), "has_gnu_time": shutil.which("time") is not None,
    }
