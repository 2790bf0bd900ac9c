"""How the test suite opens each driver kind on a real backend.

Every factory returns ``(driver, cleanup)``; the channel is unique per call so tests never share
keys or rows, and cleanup removes only what the test created (never FLUSHDB, never another table).
A backend that cannot be reached makes the test *fail* with a clear reason (no silent skip in CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

REDIS_URL = os.environ.get("PUBQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("PUBQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("PUBQ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")

#: Driver kinds the conformance suite runs on. Each name maps to a factory below. ``pgbouncer-session``
#: and ``pgbouncer-transaction`` are PostgreSQL behind a PgBouncer the tests start (one per process).
DRIVER_KINDS = ("memory", "redis", "redis-sentinel", "redis-cluster", "redis-sharded", "sqlite", "postgres", "mysql",
                "pgbouncer-session", "pgbouncer-transaction")
#: The kinds on a Sentinel set or a Cluster the tests start: one test process starts them for all.
#: (A PgBouncer is one small process: every test process starts its own.)
TOPOLOGY_KINDS = ("redis-sentinel", "redis-cluster", "redis-sharded")
#: One backend of each storage engine: for end-to-end tests whose subject is not the topology.
CORE_KINDS = ("memory", "redis", "sqlite", "postgres", "mysql")


def kind_params(kinds: tuple[str, ...] = DRIVER_KINDS) -> list[Any]:
    """``kinds`` as pytest parameters; the topology kinds share one xdist group, so one test process
    starts the Sentinel set and the Cluster instead of every process starting its own."""
    import pytest

    return [pytest.param(k, marks=pytest.mark.xdist_group("topology")) if k in TOPOLOGY_KINDS else k
            for k in kinds]


def unique_channel(prefix: str = "t") -> str:
    return f"pubq-test:{prefix}:{uuid.uuid4().hex[:12]}"


Factory = Callable[..., tuple[Any, Callable[[], None]]]
FACTORIES: dict[str, Factory] = {}


def factory(kind: str) -> Callable[[Factory], Factory]:
    def deco(fn: Factory) -> Factory:
        FACTORIES[kind] = fn
        return fn

    return deco


#: Options every factory turns into the driver's Policy.
POLICY_OPTIONS = ("grace", "hold", "settle_within", "failed_limit", "follow_up_limit", "history_limit")


def open_driver(kind: str, tmp_path, **opts: Any):
    """``opts``: ``channel``, ``clock`` (memory only) and the Policy's fields (``grace``, ``hold``,
    ``settle_within``, ``failed_limit``, ``follow_up_limit``, ``history_limit``)."""
    from pubq.drivers.base import Policy

    try:
        fn = FACTORIES[kind]
    except KeyError:
        raise AssertionError(f"no test factory for driver kind {kind!r} yet") from None
    policy = Policy(**{k: opts.pop(k) for k in POLICY_OPTIONS if k in opts})
    return fn(tmp_path, policy=policy, **opts)


#: Memory "backend" per test: opening the same channel twice under one tmp_path gives the same instance.
_MEMORY_BACKENDS: dict[tuple[str, str], Any] = {}


@factory("memory")
def open_memory(tmp_path, *, channel: str | None = None, clock: Callable[[], float] | None = None, **limits: Any):
    """MemoryDriver; ``clock`` (a fake backend clock) is honoured here only, real drivers use the server's.

    Every factory takes ``channel`` (a second handle on the same backend) and ``policy``.
    """
    from pubq.drivers.memory import MemoryDriver

    key = (str(tmp_path), channel or unique_channel("mem"))
    if key not in _MEMORY_BACKENDS:
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        _MEMORY_BACKENDS[key] = MemoryDriver(key[1], **limits, **extra)
    driver = _MEMORY_BACKENDS[key]

    def cleanup() -> None:
        driver.close()
        _MEMORY_BACKENDS.pop(key, None)

    return driver, cleanup


@factory("redis")
def open_redis(tmp_path, *, channel: str | None = None, url: str = REDIS_URL, **limits: Any):
    """RedisDriver on ``REDIS_URL``; cleanup clears the queue and deletes its fixed key list only."""
    import redis

    from pubq.drivers.redis import RedisDriver

    driver = RedisDriver(url, channel or unique_channel("redis"), **limits)
    try:
        driver.ping()
    except Exception as exc:
        driver.close()
        raise AssertionError(f"Redis is not reachable at {url} (set PUBQ_TEST_REDIS_URL): {exc}") from exc

    def cleanup() -> None:
        try:
            driver.clear()
            driver.client.delete(*driver.keys)  # the counters too; never another queue's keys
        except redis.RedisError:
            pass
        driver.close()

    return driver, cleanup


@factory("redis-sentinel")
def open_redis_sentinel(tmp_path, **opts: Any):
    """RedisDriver on the master of this process's Sentinel set (tests/topology.py)."""
    from tests.topology import session_sentinel

    return open_redis(tmp_path, url=session_sentinel().url, **opts)


@factory("redis-cluster")
def open_redis_cluster(tmp_path, **opts: Any):
    """RedisDriver on this process's 3-master Redis Cluster (tests/topology.py)."""
    from tests.topology import session_cluster

    return open_redis(tmp_path, url=session_cluster().url, **opts)


@factory("redis-sharded")
def open_redis_sharded(tmp_path, *, channel: str | None = None, **limits: Any):
    """A queue of 3 shards on this process's Redis Cluster (pubq/drivers/sharded.py), every job with
    the shard key "b" (shard 2): the contract's queue-wide order (ids, priority, registry limits)
    holds within one shard, so here it runs through the router's id translation and its passes over
    the empty shards; spreading over shards is tested in tests/drivers/test_sharded.py."""
    import redis

    from pubq.drivers.sharded import ShardedDriver
    from tests.topology import session_cluster

    driver = ShardedDriver(session_cluster().url, channel or unique_channel("sharded"), shards=3,
                           key_of=lambda payload: "b", **limits)

    def cleanup() -> None:
        try:
            driver.clear()
            driver.drop_keys()
        except redis.RedisError:
            pass
        driver.close()

    return driver, cleanup


#: Server tables of this test session (PostgreSQL/MySQL): a prefix of their own, dropped at exit.
DB_TABLE_PREFIX = f"pubq_t{os.getpid()}_"
_DB_SESSION_URLS: set[str] = set()


def drop_session_tables(url: str, prefix: str = DB_TABLE_PREFIX) -> None:
    """Drop the tables this session created (exactly ``<prefix>jobs`` … ``<prefix>schema``), nothing else."""
    from pubq.drivers.db import DbDriver

    driver = DbDriver(url, "cleanup", table_prefix=prefix)
    quote = "`" if driver.kind == "mysql" else '"'
    try:
        for name in ("jobs", "counters", "follow_ups", "queues", "workers", "unique", "marks", "limits", "schema"):
            driver.db.execute_sql(f"DROP TABLE IF EXISTS {quote}{prefix}{name}{quote}")
    finally:
        driver.close()


def _drop_all_session_tables() -> None:
    for url in sorted(_DB_SESSION_URLS):
        try:
            drop_session_tables(url)
        except Exception as exc:  # noqa: BLE001 - a server gone at exit: leave the tables, say so
            print(f"pubq tests: could not drop {DB_TABLE_PREFIX}* tables on {url}: {exc}")


def _open_db(url: str, what: str, env: str, channel: str | None, *, tables_on: str | None = None,
             tag: str | None = None, **limits: Any):
    """``tables_on``: the URL the session's tables are dropped through at exit (default ``url``)."""
    import atexit

    from pubq.drivers.db import DbDriver

    if not _DB_SESSION_URLS:
        atexit.register(_drop_all_session_tables)
    _DB_SESSION_URLS.add(tables_on or url)
    driver = DbDriver(url, channel or unique_channel(tag or what), table_prefix=DB_TABLE_PREFIX, **limits)
    try:
        driver.ping()
    except Exception as exc:
        driver.close()
        raise AssertionError(f"{what} is not reachable at {url} (set {env}): {exc}") from exc

    def cleanup() -> None:
        try:
            driver.clear()
        finally:
            driver.close()

    return driver, cleanup


@factory("sqlite")
def open_sqlite(tmp_path, *, channel: str | None = None, **limits: Any):
    """DbDriver on a SQLite file in the test's tmp_path (a second handle opens the same file)."""
    from pubq.drivers.db import DbDriver

    driver = DbDriver(f"sqlite:///{tmp_path}/queue.db", channel or unique_channel("sqlite"), **limits)

    def cleanup() -> None:
        driver.close()

    return driver, cleanup


@factory("postgres")
def open_postgres(tmp_path, *, channel: str | None = None, **limits: Any):
    return _open_db(POSTGRES_URL, "PostgreSQL", "PUBQ_TEST_POSTGRES_URL", channel, **limits)


@factory("mysql")
def open_mysql(tmp_path, *, channel: str | None = None, **limits: Any):
    return _open_db(MYSQL_URL, "MySQL/MariaDB", "PUBQ_TEST_MYSQL_URL", channel, **limits)


#: This process's PgBouncer (each pytest-xdist worker starts its own), started on first use.
_PGBOUNCER: list[Any] = []


def pgbouncer_url(mode: str) -> str:
    """The URL of PostgreSQL (``POSTGRES_URL``'s database) through this process's PgBouncer in
    ``mode`` (``session`` or ``transaction``), with ``?pooler=<mode>``. Stopped at exit."""
    if not _PGBOUNCER:
        import atexit

        from tests.helpers import PrivatePgBouncer

        try:
            bouncer = PrivatePgBouncer(POSTGRES_URL).start()
        except Exception as exc:
            raise AssertionError(f"cannot start pgbouncer in front of {POSTGRES_URL}: {exc}") from exc
        atexit.register(bouncer.cleanup)
        _PGBOUNCER.append(bouncer)
    return _PGBOUNCER[0].url(mode)


@factory("pgbouncer-session")
def open_pgbouncer_session(tmp_path, *, channel: str | None = None, **limits: Any):
    return _open_db(pgbouncer_url("session"), "PostgreSQL behind PgBouncer (session)", "PUBQ_TEST_POSTGRES_URL",
                    channel, tables_on=POSTGRES_URL, tag="pgbouncer", **limits)


@factory("pgbouncer-transaction")
def open_pgbouncer_transaction(tmp_path, *, channel: str | None = None, **limits: Any):
    return _open_db(pgbouncer_url("transaction"), "PostgreSQL behind PgBouncer (transaction)",
                    "PUBQ_TEST_POSTGRES_URL", channel, tables_on=POSTGRES_URL, tag="pgbouncer", **limits)
