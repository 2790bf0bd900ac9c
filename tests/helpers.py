"""Helpers shared by the tests and the bench: queues on real drivers, the CLI as a user runs it, a
private redis-server, throwaway PostgreSQL databases, and waiting on conditions instead of sleeping.

The one module both import: the bench runs from a checkout, where ``tests`` is importable, and the
soak it used to hold now lives with the reliability tests. Conftests only define fixtures; whatever
a test imports lives here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pubq.config import QueueConfig, RetryPolicy
from pubq.job import JobRegistry
from pubq.queue import Queue
from tests.drivers.backends import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
PUBQ = [sys.executable, "-m", "pubq"]
GOLDEN = ROOT / "tests" / "golden"


# -- in-process queues -------------------------------------------------------------------------------


def registry() -> JobRegistry:
    return JobRegistry.from_modules(["tests.sample_jobs"])


def make_queue(driver: Any, *, name: str = "q", attempts: int = 1, ttr: int = 30, delay: float = 0.0,
               grace: float = 0.0, driver_kind: str = "memory") -> Queue:
    qc = QueueConfig(
        name=name, driver=driver_kind, channel=getattr(driver, "channel", name), url="test://",
        ttr=ttr, attempts=attempts, retry=RetryPolicy(backoff="fixed", delay=delay, max_delay=delay, jitter=False),
        grace=grace,
    )
    return Queue(qc, driver, registry())


# -- waiting -------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until truthy; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


# -- processes -----------------------------------------------------------------------------------------


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment with the repository importable, no ``PUBQ_CONFIG`` and no colours."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PUBQ_CONFIG", None)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def signal_handled(pid: int, sig: int) -> bool:
    """Whether ``sig``, already sent to ``pid``, has been delivered and the process sleeps again.

    Python runs its handler before an interrupted wait resumes, so once the signal is no longer
    pending and the main thread is back asleep, the handler has run: a second ``sig`` sent now is
    seen as a second signal (two sent together can merge into one).
    """
    try:
        status = _proc_status(pid)
    except FileNotFoundError:
        return False
    pending = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
    return not pending & (1 << (sig - 1)) and status["State"].strip().startswith("S")


def _tcp_ports(pid: int) -> set[int]:
    """Local ports of the TCP sockets ``pid`` holds (from /proc: its fds, then its net namespace)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[9] in inodes:
                ports.add(int(cols[1].rpartition(":")[2], 16))
    return ports


def blocked_on_redis(pid: int, url: str) -> bool:
    """Whether the Redis server at ``url`` lists a connection of process ``pid`` as blocked (BLPOP)."""
    import redis

    ports = _tcp_ports(pid)
    with redis.Redis.from_url(url) as client:
        clients = client.client_list()
    return any("b" in c["flags"] and int(c["addr"].rpartition(":")[2]) in ports for c in clients)


def sleeping_in_time_sleep(pid: int) -> bool:
    """Whether the main thread of ``pid`` is inside ``time.sleep`` (the kernel's nanosleep)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip() == "hrtimer_nanosleep"
    except FileNotFoundError:
        return False


# -- the CLI as a user runs it ---------------------------------------------------------------------------


def write_config(tmp_path: Path, driver: str, *, top: dict[str, Any] | None = None,
                 **queue_overrides: Any) -> tuple[Path, str]:
    """A config with one queue ``work`` on ``driver`` ("redis", or the db driver on SQLite) and a
    unique channel; ``top`` adds top-level keys. Returns its path and the channel."""
    channel = f"pubq-test:cli:{uuid.uuid4().hex[:10]}"
    queue = {
        "driver": "redis" if driver == "redis" else "db",
        "channel": channel,
        "ttr": 30,
        "attempts": 1,
        "retry": {"backoff": "fixed", "delay": 0, "jitter": False},
        "on": {
            "afterExec": "tests.sample_jobs:Recorder.after_exec",
            "afterError": "tests.sample_jobs:Recorder.after_error",
        },
        "behaviors": ["log"],
        "grace": 0.2,
    }
    queue.update(queue_overrides)
    data = {
        "database": f"sqlite:///{tmp_path / 'state.db'}",
        "jobs": ["tests.sample_jobs"],
        "queues": {"work": queue},
        "log": {"file": str(tmp_path / "system.log"), "level": "INFO"},
    }
    data.update(top or {})
    if driver == "redis":
        data["redis"] = REDIS_URL
    else:
        data["queue_database"] = f"sqlite:///{tmp_path / 'queue.db'}"
    path = tmp_path / "pubq.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, channel


# -- golden output ---------------------------------------------------------------------------------

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[ ,]", re.M)


def normalize(text: str) -> str:
    """Dates, pids, durations, memory, paths and line numbers vary; the shape of every line must not.

    A Done line's ``(0.249 s, 12.5 MiB)`` becomes ``(T s, M MiB)`` and an Error line's ``(0.012 s)``
    becomes ``(T s)``, so a golden file tells the two apart.
    """
    text = _DATE.sub("DATE ", text)
    text = re.sub(r"^DATE \d{3} ", "DATE ", text, flags=re.M)  # the log's ",123" milliseconds
    text = re.sub(r"(pid|PID): \d+", r"\1: PID", text)
    text = re.sub(r"Worker \d+ is", "Worker PID is", text)
    text = re.sub(r"worker \d+ stops", "worker PID stops", text)
    text = re.sub(r"\(\d+\.\d{3} s, [\d.]+ MiB\)", "(T s, M MiB)", text)
    text = re.sub(r"\(\d+\.\d{3} s\)", "(T s)", text)
    text = re.sub(r"Worker is stopped \(\d+:\d{2}:\d{2}\)", "Worker is stopped (UPTIME)", text)
    text = re.sub(r"^#(\d+) \S+\(\d+\): ", r"#\1 FILE(LINE): ", text, flags=re.M)
    text = re.sub(r" in /\S+:\d+\.", " in FILE:LINE.", text)
    text = re.sub(r'File "[^"]+", line \d+', 'File "FILE", line LINE', text)
    return text


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


@dataclass
class Cli:
    """``python -m pubq --config PATH …`` in a subprocess; ``events`` is where the Recorder handlers write."""

    path: Path
    env: dict[str, str]
    channel: str
    events: Path
    driver: str = "redis"

    @classmethod
    def create(cls, tmp_path: Path, driver: str, *, env: dict[str, str] | None = None,
               top: dict[str, Any] | None = None, **queue_overrides: Any) -> Cli:
        """A config of its own under ``tmp_path`` (see :func:`write_config`); ``env`` adds variables.

        Its Redis keys are deleted after the test (``tests/conftest.py`` calls :meth:`cleanup`)."""
        path, channel = write_config(tmp_path, driver, top=top, **queue_overrides)
        events = tmp_path / "events"
        cli = cls(path=path, env=subprocess_env(PUBQ_TEST_EVENTS=str(events), **(env or {})), channel=channel,
                  events=events, driver=driver)
        CREATED_CONFIGS.append((path, cli.env))
        return cli

    def cleanup(self) -> None:
        """Delete every Redis key of this config's queues (see :func:`drop_redis_queues`)."""
        drop_redis_queues(self.path, self.env)

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*PUBQ, "--config", str(self.path), *args],
            input=input, capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*PUBQ, "--config", str(self.path), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=ROOT,
        )

    def terminal(self, *args: str, columns: int = 80, timeout: float = 60) -> tuple[int, str]:
        """The command with its stdout on a terminal ``columns`` wide (see :func:`run_in_terminal`)."""
        return run_in_terminal([*PUBQ, "--config", str(self.path), *args], self.env, columns=columns,
                               timeout=timeout)

    def info(self) -> dict:
        """``work info --json``."""
        return json.loads(self("work", "info", "--json").stdout)

    def waiting_for_a_job(self, pid: int) -> bool:
        """Whether the listening worker ``pid`` is idle in its wait for a job (not starting, not
        reserving): blocked in BLPOP on Redis; on the db driver (SQLite), asleep between two polls."""
        if self.driver == "redis":
            return blocked_on_redis(pid, self.env.get("PUBQ_REDIS_URL", REDIS_URL))
        return sleeping_in_time_sleep(pid)


def run_in_terminal(cmd: Sequence[str], env: dict[str, str], *, columns: int = 80, cwd: Path = ROOT,
                    timeout: float = 60) -> tuple[int, str]:
    """Run ``cmd`` with stdout (and stdin) on a pseudo-terminal of ``columns`` × 24, as a user's
    terminal; ``COLUMNS`` says the same. Returns the exit code and what it printed (``\n`` line
    ends); stderr is appended after a ``--- stderr`` line when there is any."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(list(cmd), stdin=slave, stdout=slave, stderr=errors, cwd=cwd,
                            env={**env, "COLUMNS": str(columns)})
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal's other end has closed it
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None and not select.select([master], [], [], 0)[0]:
                break
        else:
            proc.kill()
            raise AssertionError(f"{' '.join(cmd)} did not end within {timeout} s")
        code = proc.wait(timeout=10)
    finally:
        os.close(master)
        errors.seek(0)
        stderr = errors.read().decode("utf-8", errors="replace")
        errors.close()
    out = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
    return code, out + (f"--- stderr\n{stderr}" if stderr else "")


def check_golden(name: str, text: str) -> None:
    """``text`` must equal ``tests/golden/NAME``; ``PUBQ_UPDATE_GOLDEN=1`` rewrites the file instead
    (then read the diff before committing it)."""
    path = GOLDEN / name
    if os.environ.get("PUBQ_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs:\n{text}"


#: Config files written by this test (path, environment); ``tests/conftest.py`` drops their Redis
#: keys after each test, whatever the test did.
CREATED_CONFIGS: list[tuple[Path, dict[str, str]]] = []


def drop_redis_queues(config: Path, env: dict[str, str] | None = None) -> None:
    """Delete exactly the keys of the Redis queues that ``config`` names: each driver's fixed key list
    (counters included), never a pattern, never FLUSHDB. A server that is gone (a test's private
    one, or a dead port) is skipped."""
    import redis
    from redis.exceptions import RedisClusterException

    from pubq.app import open_redis_queue
    from pubq.config import load_config
    from pubq.drivers.base import Policy
    from pubq.drivers.redis import RedisDriver
    from pubq.errors import DriverError

    try:
        cfg = load_config(config, env=env or {}, check_handlers=False)
    except Exception:  # noqa: BLE001 - a test that broke its own config on purpose
        return
    for q in cfg.queues.values():
        if q.driver != "redis":
            continue
        if q.url.startswith(("redis://", "rediss://", "unix://")) and q.shards == 1:
            driver = RedisDriver(redis.Redis.from_url(q.url, socket_connect_timeout=2, socket_timeout=5), q.channel)
            try:
                driver.client.delete(*driver.keys)
            except redis.RedisError:
                pass
            finally:
                driver.client.close()
            continue
        opened, _ = open_redis_queue(q, Policy())  # Sentinel, Cluster, shards: the driver's own keys
        try:
            if hasattr(opened, "drop_keys"):
                opened.drop_keys()
            else:
                opened.client.delete(*opened.keys)  # type: ignore[attr-defined]
        except (redis.RedisError, RedisClusterException, DriverError):  # a server already gone
            pass
        finally:
            opened.close()


def wait_started(proc: subprocess.Popen) -> None:
    """Read a ``--verbose`` worker's output until it says it has started (its signal handlers are in)."""
    wait_until(lambda: "Worker is started" in (proc.stdout.readline() or ""), message="worker start")


# -- servers of the test's own ---------------------------------------------------------------------------


@dataclass
class PrivateRedis:
    """A redis-server of our own on a free port, memory-only unless ``appendonly``.

    ``prefix`` goes before the command (the bench pins it with ``taskset``). ``dir`` holds its files
    and ``redis.log``; without one a temporary directory is made and removed by ``cleanup()``.
    ``stop()`` shuts it down cleanly (an append-only file is complete), ``kill()`` is a crash
    (SIGKILL), ``start()`` after either comes back on the same port and directory. Use it as a
    context manager (or a fixture that calls ``cleanup()``) so it never outlives its user.
    """

    appendonly: bool = False
    prefix: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    dir: Path | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)
    _own_dir: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="pubq-redis-"))
            self._own_dir = True

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        cmd = [*self.prefix, exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
               "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
               "--daemonize", "no", "--logfile", "redis.log"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(self._answers, timeout=10, message=f"redis-server on port {self.port} to answer "
                                                          f"(log: {self.dir}/redis.log)")
        except BaseException:
            self.kill()
            raise
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.dir}/redis.log")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SHUTDOWN (clean: the append-only file is complete); SIGKILL if it does not go."""
        if not self.running():
            return
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"SHUTDOWN\r\n")
                s.recv(64)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            self.proc.wait(timeout=10)  # type: ignore[union-attr]

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)  # type: ignore[arg-type]

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


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


def cli_in_process(*args: str, input: str | None = None) -> tuple[int, str, str]:
    """``pubq ARGS`` run by :func:`pubq.commands.main` in this process, as the console script runs it
    (same argument translation, same one-line error rendering): (exit code, stdout, stderr). Cheaper
    than a subprocess (no interpreter start, no imports), for tests that try many arguments."""
    from click.testing import CliRunner

    from pubq.commands import main
    from pubq.logs import configure_logging

    with CliRunner().isolation(input=input) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    configure_logging(None)  # the handler main() set writes to the captured stream, gone now
    return code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")


def fresh_mysql_database(admin_url: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """CREATE DATABASE ``<prefix>_<hex>`` on the MySQL/MariaDB server of ``admin_url``; returns its URL
    and a callable that drops it (only it: never another database)."""
    from urllib.parse import urlsplit

    import pymysql

    parts = urlsplit(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    def run(sql: str) -> None:
        conn = pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                               user=parts.username or "root", password=parts.password or "", connect_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    run(f"CREATE DATABASE `{name}`")
    return f"{admin_url.rpartition('/')[0]}/{name}", lambda: run(f"DROP DATABASE IF EXISTS `{name}`")


@dataclass
class InProcessCli:
    """A config with one queue ``work`` on one backend, run in this process."""

    path: Path
    backend: str

    def __call__(self, *args: str) -> tuple[int, str, str]:
        return cli_in_process("--config", str(self.path), *args)

    def counts(self) -> dict[str, int]:
        from pubq.app import App
        from pubq.commands.options import cli_preset
        from pubq.config import load_config

        app = App(load_config(str(self.path), preset=cli_preset()))
        try:
            return app.queue("work").driver.counts().as_dict()
        finally:
            app.close()

    def push_raw(self, payload: bytes) -> int:
        """Store ``payload`` past push's checks, as another producer would."""
        from pubq.app import App
        from pubq.commands.options import cli_preset
        from pubq.config import load_config

        app = App(load_config(str(self.path), preset=cli_preset()))
        try:
            return app.queue("work").driver.push(payload, ttr=30)
        finally:
            app.close()


def in_process_cli(tmp_path: Path, backend: str, server_urls: dict[str, str]) -> InProcessCli:
    """A config with one queue ``work`` on ``backend`` (redis, sqlite, or postgres/mysql at
    ``server_urls[backend]``) and its CLI run in this process."""
    path, _ = write_config(tmp_path, "redis" if backend == "redis" else "sqlite")
    if backend in server_urls:
        data = yaml.safe_load(path.read_text())
        data["queue_database"] = server_urls[backend]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return InProcessCli(path, backend)


@dataclass
class PrivatePgBouncer:
    """A PgBouncer of our own on a free loopback port, in front of the PostgreSQL of ``upstream``.

    It serves two databases, both the upstream's database: ``pubq_session`` in ``pool_mode=session``
    and ``pubq_transaction`` in ``pool_mode=transaction`` (a small pool, so sessions really are
    shared); :meth:`url` gives the client URL of either. Auth is ``trust`` (the upstream's, on
    loopback). PgBouncer refuses to run as root: as root it is started with ``-u`` the ``postgres``
    user (else ``nobody``), and its folder is handed to that user.
    """

    upstream: str
    port: int = field(default_factory=free_port)
    transaction_pool_size: int = 4
    prefix: Sequence[str] = ()  # before the command (the bench pins it with ``taskset``)
    proc: subprocess.Popen | None = field(default=None, init=False)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pubq-pgbouncer-")))

    def url(self, mode: str) -> str:
        """The URL a pubq user would write: this bouncer, the mode's database, ``?pooler=<mode>``."""
        user = self._upstream_parts()[0]
        return f"postgresql://{user}@127.0.0.1:{self.port}/pubq_{mode}?pooler={mode}"

    def _upstream_parts(self) -> tuple[str, str, int, str]:
        """(user, host, port, database) of the upstream URL."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.upstream)
        return parts.username or "postgres", parts.hostname or "127.0.0.1", parts.port or 5432, parts.path.lstrip("/")

    def start(self) -> PrivatePgBouncer:
        exe = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
        if not exe:
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
        user, host, port, database = self._upstream_parts()
        target = f"host={host} port={port} dbname={database}"
        (self.dir / "users.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"pubq_session = {target} pool_mode=session pool_size=30\n"
            f"pubq_transaction = {target} pool_mode=transaction pool_size={self.transaction_pool_size}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir}/users.txt\n"
            "log_connections = 0\nlog_disconnections = 0\n"
            "max_client_conn = 500\nserver_idle_timeout = 2\nquery_wait_timeout = 30\n"
        )
        cmd = [*self.prefix, exe]
        if os.geteuid() == 0:
            import pwd

            try:
                runas = pwd.getpwnam("postgres")
            except KeyError:
                runas = pwd.getpwnam("nobody")
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, runas.pw_uid, runas.pw_gid)
            cmd += ["-u", runas.pw_name]
        cmd.append(str(self.dir / "pgbouncer.ini"))
        with open(self.dir / "pgbouncer.log", "ab") as log:  # it logs to stderr when not a daemon
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_until(self._answers, timeout=10, message=f"pgbouncer on port {self.port} to answer "
                                                          f"(log: {self.dir}/pgbouncer.log)")
        except BaseException:
            self.cleanup()
            raise
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            err = (self.dir / "pgbouncer.log").read_text(errors="replace").strip()
            raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {err[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        """SIGTERM (PgBouncer's fast exit: clients are disconnected), then remove its folder."""
        if self.running():
            self.proc.terminate()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=10)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.proc.kill()  # type: ignore[union-attr]
                self.proc.wait(timeout=10)  # type: ignore[union-attr]
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivatePgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
