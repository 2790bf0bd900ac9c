"""Redis topologies of the tests' own on loopback ports: a Sentinel set and a Cluster.

``SentinelSet``: one master, ``replicas`` replicas, three sentinels (``redis-server --sentinel``)
watching service ``SERVICE`` with a 1 s down-after, so a killed master is replaced in ~2-4 s.
``RedisClusterSet``: ``masters`` masters (+ ``replicas`` each) joined by ``redis-cli --cluster
create``. Both live in a temporary folder of their own and are torn down by ``cleanup()``; both
wait on conditions (replicas linked, sentinels agreeing, ``cluster_state:ok``), never on sleeps.

:func:`session_sentinel` and :func:`session_cluster` give one set per process (so one per xdist
worker), started on first use and stopped at exit, for the driver conformance suite; tests that
fail a master over start their own.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.helpers import PrivateRedis, free_port, wait_until

SERVICE = "pubqmaster"


def _redis_server() -> str:
    exe = shutil.which("redis-server")
    if not exe:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return exe


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)


@dataclass
class _Server:
    """One redis-server (or sentinel) process with its own folder."""

    port: int
    dir: Path
    args: list[str]
    proc: subprocess.Popen | None = None

    def start(self) -> _Server:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([_redis_server(), *self.args], cwd=self.dir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited with {self.proc.returncode}; "
                                   f"see {self.dir}/redis.log")
            return _answers(self.port)

        wait_until(up, timeout=10, message=f"redis on port {self.port} (log: {self.dir}/redis.log)")
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            self.proc.kill()  # type: ignore[union-attr]
            self.proc.wait(timeout=10)  # type: ignore[union-attr]


def _data_args(port: int, *extra: str) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--logfile", "redis.log", "--dir", ".", *extra]


@dataclass
class SentinelSet:
    """1 master, ``replicas`` replicas and 3 sentinels on free loopback ports."""

    replicas: int = 1
    down_after_ms: int = 1000
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pubq-sentinel-")))
    servers: list[_Server] = field(default_factory=list)
    sentinels: list[_Server] = field(default_factory=list)

    def start(self) -> SentinelSet:
        try:
            master_port = free_port()
            self.servers.append(_Server(master_port, self.root / "m", _data_args(master_port)).start())
            for i in range(self.replicas):
                port = free_port()
                args = _data_args(port, "--replicaof", "127.0.0.1", str(master_port))
                self.servers.append(_Server(port, self.root / f"r{i}", args).start())
            wait_until(lambda: self._linked(master_port), timeout=15, message="replicas linked to the master")
            for i in range(3):
                port = free_port()
                folder = self.root / f"s{i}"
                folder.mkdir(parents=True)
                (folder / "sentinel.conf").write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile redis.log\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {SERVICE} 10000\n"
                    f"sentinel parallel-syncs {SERVICE} 2\n")
                self.sentinels.append(_Server(port, folder, ["sentinel.conf", "--sentinel"]).start())
            wait_until(self._sentinels_agree, timeout=20, message="sentinels to see each other and the replicas")
        except BaseException:
            self.cleanup()
            raise
        return self

    def _linked(self, master_port: int) -> bool:
        info = _client(master_port).info("replication")
        online = [k for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                  and v.get("state") == "online"]
        return len(online) >= self.replicas

    def _sentinels_agree(self) -> bool:
        for s in self.sentinels:
            c = _client(s.port)
            if len(c.sentinel_slaves(SERVICE)) < self.replicas or len(c.sentinel_sentinels(SERVICE)) < 2:
                return False
        return True

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def master_port(self) -> int:
        """The port the sentinels name as master now."""
        for s in self.sentinels:
            try:
                _host, port = _client(s.port).sentinel_get_master_addr_by_name(SERVICE)
                return int(port)
            except redis.RedisError:
                continue
        raise AssertionError("no sentinel answers")

    def server(self, port: int) -> _Server:
        return next(s for s in self.servers if s.port == port)

    def failover(self) -> int:
        """``SENTINEL FAILOVER``; returns the old master's port."""
        old = self.master_port()
        _client(self.sentinels[0].port).execute_command("SENTINEL", "FAILOVER", SERVICE)
        return old

    def kill_master(self) -> int:
        """SIGKILL of the master; returns its port."""
        old = self.master_port()
        self.server(old).kill()
        return old

    def wait_promoted(self, old: int, timeout: float = 30) -> int:
        """Wait until every sentinel names a new master that accepts writes; its port."""
        def promoted() -> int | None:
            ports = set()
            for s in self.sentinels:
                try:
                    ports.add(int(_client(s.port).sentinel_get_master_addr_by_name(SERVICE)[1]))
                except redis.RedisError:
                    return None
            if len(ports) != 1 or old in ports:
                return None
            port = ports.pop()
            try:
                role = _client(port).info("replication").get("role")
            except redis.RedisError:
                return None
            return port if role == "master" else None

        return wait_until(promoted, timeout=timeout, interval=0.05, message="a replica promoted by the sentinels")

    def cleanup(self) -> None:
        for s in [*self.sentinels, *self.servers]:
            s.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisClusterSet:
    """``masters`` masters with ``replicas`` replicas each, joined into one Redis Cluster."""

    masters: int = 3
    replicas: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pubq-cluster-")))
    servers: list[_Server] = field(default_factory=list)

    def start(self) -> RedisClusterSet:
        try:
            for i in range(self.masters * (1 + self.replicas)):
                port, bus = free_port(), free_port()
                args = _data_args(port, "--cluster-enabled", "yes", "--cluster-port", str(bus),
                                  "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
                self.servers.append(_Server(port, self.root / f"n{i}", args).start())
            cli = shutil.which("redis-cli")
            if not cli:
                raise RuntimeError("redis-cli is not installed (apt-get install redis-tools)")
            nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
            subprocess.run([cli, "--cluster", "create", *nodes, "--cluster-replicas", str(self.replicas),
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            wait_until(self._ready, timeout=30, interval=0.1, message="cluster_state:ok on every node")
        except BaseException:
            self.cleanup()
            raise
        return self

    def _ready(self) -> bool:
        for s in self.servers:
            info = _client(s.port).cluster("info")
            if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < len(self.servers):
                return False
        # every replica has linked to its master
        for s in self.servers:
            repl = _client(s.port).info("replication")
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                return False
        return True

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:3]) + "/"

    def master_of_slot(self, slot: int) -> int:
        """The port of the master serving ``slot``."""
        for start, end, master, *_ in _client(self.servers[0].port).execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
        raise AssertionError(f"slot {slot} is not served")

    def replica_of(self, master_port: int) -> int:
        for s in self.servers:
            repl = _client(s.port).info("replication")
            if repl.get("role") == "slave" and int(repl.get("master_port", 0)) == master_port:
                return s.port
        raise AssertionError(f"master {master_port} has no replica")

    def cleanup(self) -> None:
        for s in self.servers:
            s.kill()
        shutil.rmtree(self.root, ignore_errors=True)


_SESSION: dict[str, SentinelSet | RedisClusterSet] = {}


def _session(kind: str) -> SentinelSet | RedisClusterSet:
    """One topology of ``kind`` per process (per xdist worker), torn down at exit."""
    if kind not in _SESSION:
        topology = SentinelSet(replicas=1) if kind == "sentinel" else RedisClusterSet(masters=3, replicas=1)
        _SESSION[kind] = topology.start()
        atexit.register(topology.cleanup)
    return _SESSION[kind]


def stop_session_topologies() -> None:
    """Tear down this process's topologies (the session fixture's end; atexit is the fallback)."""
    while _SESSION:
        _, topology = _SESSION.popitem()
        topology.cleanup()


def session_sentinel() -> SentinelSet:
    return _session("sentinel")  # type: ignore[return-value]


def session_cluster() -> RedisClusterSet:
    return _session("cluster")  # type: ignore[return-value]


__all__ = ["SERVICE", "PrivateRedis", "RedisClusterSet", "SentinelSet", "session_cluster", "session_sentinel",
           "stop_session_topologies"]
