"""Shared pieces of the benchmark and soak scripts: a private, pinned redis-server and medians.

The method (``../shared/docs/benchmarks.md``): the server runs alone on CPU 0, clients on CPU 1, so
every round trip pays the same cross-CPU price and runs repeat within noise. Compare systems inside
one run, as ratios; never against a figure from another day.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SERVER_CPU = 0
CLIENT_CPU = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pin_self(cpu: int = CLIENT_CPU) -> None:
    """Pin this process (and the children it forks later) to one CPU, when the machine has it."""
    if cpu in os.sched_getaffinity(0) and cpu_count() > 1:
        os.sched_setaffinity(0, {cpu})


def taskset_prefix(cpu: int) -> list[str]:
    if shutil.which("taskset") and cpu in os.sched_getaffinity(0) and cpu_count() > 1:
        return ["taskset", "-c", str(cpu)]
    return []


@dataclass
class PrivateRedis:
    """A redis-server of our own on a free port; pinned to ``cpu``; memory-only unless ``appendonly``.

    ``restart()`` stops it (SHUTDOWN, so an append-only file is complete) and starts it again on the
    same port and directory; clients reconnect on their own.
    """

    cpu: int | None = SERVER_CPU
    appendonly: bool = False
    port: int = field(default_factory=free_port)
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="pubq-bench-redis-"))
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        cmd = [*(taskset_prefix(self.cpu) if self.cpu is not None else []), exe,
               "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
               "--save", "", "--appendonly", "yes" if self.appendonly else "no",
               "--appendfsync", "everysec", "--daemonize", "no", "--logfile", "redis.log"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.dir}/redis.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"SHUTDOWN\r\n")
                s.recv(64)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Run ``measure`` ``runs`` times; return the median and every value (for the JSON report)."""
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def fresh_pg_database(admin_url: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """CREATE DATABASE ``<prefix>_<hex>`` on the server of ``admin_url`` (never touch others' data).

    Returns the new database's URL and a callable that drops it (``WITH (FORCE)``: workers may
    still hold sessions).
    """
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    def run(sql: str) -> None:
        conn = psycopg2.connect(admin_url, connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    run(f'CREATE DATABASE "{name}"')
    return f"{admin_url.rpartition('/')[0]}/{name}", lambda: run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
