"""The one place pubq builds a redis-py client: plain server, Sentinel-managed master, or Cluster.

Everything that talks to Redis (the driver, the worker, the commands) gets its client from
:func:`make_client`, so a config changes topology by changing its ``redis:`` line only.

* ``single``: ``redis.Redis.from_url`` (lazy: no connection until the first command).
* ``sentinel``: the master of the service, as the sentinels name it *at each new connection*; a
  connection to a demoted master is closed on its first READONLY reply (redis-py turns it into a
  ConnectionError), so the driver's outage handling reconnects to the promoted replica.
* ``cluster``: ``redis.cluster.RedisCluster``, which follows MOVED/ASK itself. Every key of one
  queue shares the ``{channel}`` hash tag, so each script touches one slot and runs on one node.

Socket timeouts are set for failover-capable topologies: a master that vanished without a reset
(a dead host) is noticed within :data:`FAILOVER_SOCKET_TIMEOUT` seconds instead of never.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, MovedError, NoScriptError

from ..redis_url import RedisTarget, parse_redis_url

#: Seconds a reply may take on Sentinel/Cluster connections (a long BLMOVE is cut below it).
FAILOVER_SOCKET_TIMEOUT = 10.0
#: Seconds to open a connection (a dead master's address should fail fast, not hang).
CONNECT_TIMEOUT = 2.0
#: Longest pause between two retries of an outage on a failover-capable topology: a promotion
#: is then noticed within this many seconds (plain Redis keeps the default, 30 s).
FAILOVER_MAX_BACKOFF = 2.0

Client = redis.Redis | RedisCluster


@dataclass(frozen=True)
class Durability:
    """``durability: {replicas, timeout_ms}`` of a queue: WAIT after each write that matters."""

    replicas: int = 1
    timeout_ms: int = 200


def target_of(url: str) -> RedisTarget:
    return parse_redis_url(url)


def make_client(url: str) -> Client:
    """A redis-py client (bytes replies) for ``url``; a Cluster connects here to learn its slots."""
    target = parse_redis_url(url)
    common: dict[str, Any] = {"socket_keepalive": True}
    if target.kind == "single":
        return redis.Redis.from_url(url, **common)
    common.update(socket_timeout=FAILOVER_SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT)
    auth = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.nodes]
        return RedisCluster(startup_nodes=nodes, ssl=target.tls, **auth, **common)
    from redis.sentinel import Sentinel

    sentinel = Sentinel(
        list(target.nodes),
        sentinel_kwargs={"socket_timeout": CONNECT_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT},
        **common,
    )
    return sentinel.master_for(target.service, db=target.db, ssl=target.tls, **auth)


class ClientRef:
    """A client built on first use and shared by every driver holding this reference (the
    sub-queues of a sharded queue share one pool, one Cluster slot map)."""

    def __init__(self, url: str | None = None, *, client: Client | None = None) -> None:
        if url is None and client is None:
            raise ValueError("ClientRef needs a URL or a client")
        self.url = url
        if url is not None:
            parse_redis_url(url)  # a malformed URL fails here, not at the first command
        self._client = client
        #: Built here from the URL (closed by :meth:`close`), or handed in (the caller's).
        self.owned = client is None

    def get(self) -> Client:
        if self._client is None:
            assert self.url is not None
            self._client = make_client(self.url)
        return self._client

    def close(self) -> None:
        """Close a client built here; it is built again on next use."""
        if self.owned and self._client is not None:
            client, self._client = self._client, None
            client.close()


def socket_timeout(client: Client) -> float | None:
    """The client's reply timeout (None: none), so a blocking wait can stay below it."""
    if isinstance(client, RedisCluster):
        return client.nodes_manager.connection_kwargs.get("socket_timeout")
    return client.get_connection_kwargs().get("socket_timeout")


def decodes_responses(client: Client) -> bool:
    if isinstance(client, RedisCluster):
        return bool(client.get_encoder().decode_responses)
    return bool(client.get_connection_kwargs().get("decode_responses"))


def node_client(client: Client, key: str) -> redis.Redis:
    """The plain client of the server holding ``key`` (the client itself unless a Cluster)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)
        return client.get_redis_connection(node)
    return client


def run_durable(client: Client, script: Any, keys: tuple[str, ...], args: tuple[Any, ...],
                durability: Durability) -> tuple[Any, int]:
    """Run ``script`` then ``WAIT`` on the same connection (one round trip): (reply, replicas that
    confirmed). WAIT covers every write made before it on that connection, which the pipeline
    guarantees; on a Cluster the pipeline goes to the node holding the queue's slot.

    A script that answered has run, whatever WAIT says after it: a WAIT cut short (``UNBLOCKED``
    when a ``CLUSTER FAILOVER`` demotes the node while it waits) gives the script's reply with 0
    confirmations, never an error: an error would have the caller retry a reserve that already
    reserved a job, and that job would sit reserved by nobody until its TTR ran out (#15)."""
    for _ in range(3):
        target = node_client(client, keys[0])
        pipe = target.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", durability.replicas, durability.timeout_ms)
        reply, confirmed = pipe.execute(raise_on_error=False)
        if isinstance(reply, NoScriptError):
            target.script_load(script.script)
            continue
        if isinstance(reply, (MovedError, AskError)):
            # the slot moved (a Cluster failover): learn the new layout, try its owner
            client.nodes_manager.initialize()  # type: ignore[union-attr]
            continue
        if isinstance(reply, Exception):
            raise reply
        return reply, 0 if isinstance(confirmed, Exception) else int(confirmed)
    raise redis.ConnectionError("the queue's slot kept moving while writing")


__all__ = [
    "ClientRef", "CONNECT_TIMEOUT", "FAILOVER_MAX_BACKOFF", "FAILOVER_SOCKET_TIMEOUT", "Client", "Durability",
    "decodes_responses", "make_client", "node_client", "run_durable", "socket_timeout", "target_of",
]
