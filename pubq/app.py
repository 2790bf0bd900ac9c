"""App: the loaded config plus the queues and services built from it, per process.

Nothing connects until a queue or service is first used, so ``pubq --help`` needs no backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from .config import Config, QueueConfig, make_callable, resolve_reference
from .drivers import driver_class
from .drivers.base import Driver
from .drivers.records import Policy
from .drivers.resilient import OutageBudget, ResilientDriver
from .errors import ConfigError
from .events import EventBus
from .job import JobRegistry
from .queue import Queue
from .runner import JobRunner

T = TypeVar("T")


class App:
    def __init__(self, config: Config, *, registry: JobRegistry | None = None) -> None:
        """``config`` as loaded; ``registry`` overrides the job registry built from ``config.jobs``."""
        self.config = config
        self._registry = registry
        self._queues: dict[str, Queue] = {}
        self._extensions: dict[str, Any] = {}
        #: One instance per handler/behaviour class per process, as config references promise.
        self._instances: dict[type, Any] = {}

    @property
    def registry(self) -> JobRegistry:
        if self._registry is None:
            self._registry = JobRegistry.from_modules(self.config.jobs)
        return self._registry

    def queue_names(self) -> list[str]:
        return list(self.config.queues)

    def queue(self, name: str) -> Queue:
        q = self._queues.get(name)
        if q is not None:
            return q
        qc = self.config.queues.get(name)
        if qc is None:
            raise ConfigError(f"{self.config.source}: no queue named {name!r} (configured: {', '.join(self.config.queues)})")
        driver = self._open_driver(qc)
        bus = EventBus()
        inline = _run_inline if qc.driver == "sync" else None
        q = Queue(qc, driver, self.registry, app=self, bus=bus, run_inline=inline)
        for ref in qc.behaviors:
            make_behavior(ref).attach(q)
        for event, refs in qc.on.items():
            for ref in refs:
                bus.on(event, make_callable(ref, self._instances), label=ref)
        self._queues[name] = q
        return q

    def _open_driver(self, qc: QueueConfig) -> Driver:
        policy = Policy(grace=qc.grace, settle_within=qc.settle_within, failed_limit=qc.failed_limit,
                        follow_up_limit=qc.failed_limit)
        kind = "memory" if qc.driver == "sync" else qc.driver
        cls = driver_class(kind)
        if kind == "memory":
            return cls(qc.channel, policy=policy)
        # One-shot commands retry an unreachable backend for give_up_after seconds, then exit 1;
        # a worker takes its own view with its own budget.
        budget = OutageBudget(give_up_after=self.config.give_up_after)
        if kind == "redis":
            driver, max_backoff = open_redis_queue(qc, policy)
            return ResilientDriver(driver, budget=budget, label=f"queue {qc.name}", max_backoff=max_backoff)
        return ResilientDriver(cls(qc.url, qc.channel, policy=policy), budget=budget, label=f"queue {qc.name}")

    def extension(self, key: str, factory: Callable[[App], T]) -> T:
        """A per-app service built on first use (publishing state, HTTP clients…)."""
        if key not in self._extensions:
            self._extensions[key] = factory(self)
        return self._extensions[key]

    def close(self) -> None:
        for q in self._queues.values():
            try:
                q.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        for ext in self._extensions.values():
            close = getattr(ext, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass
        self._queues.clear()
        self._extensions.clear()


def open_redis_queue(qc: QueueConfig, policy: Policy) -> tuple[Driver, float]:
    """A Redis queue's driver (sharded when ``shards`` > 1, WAITing when ``durability``) and the
    longest retry pause its topology wants (short where a failover can promote a replica)."""
    from .drivers.redis import RedisDriver
    from .drivers.redis_client import FAILOVER_MAX_BACKOFF, Durability, target_of
    from .drivers.sharded import ShardedDriver

    durability = None if qc.durability is None else Durability(qc.durability.replicas, qc.durability.timeout_ms)
    max_backoff = 30.0 if target_of(qc.url).kind == "single" else FAILOVER_MAX_BACKOFF
    if qc.shards > 1 or qc.shard_key:
        key_of = _shard_key_reader(qc.shard_key) if qc.shard_key else None
        return ShardedDriver(qc.url, qc.channel, shards=qc.shards, policy=policy, durability=durability,
                             key_of=key_of), max_backoff
    return RedisDriver(qc.url, qc.channel, policy=policy, durability=durability), max_backoff


def _shard_key_reader(name: str) -> Callable[[bytes], str | None]:
    """The job argument ``name`` of a payload, as text (None when absent: the job goes round robin)."""
    def key_of(payload: bytes) -> str | None:
        try:
            args = json.loads(payload).get("args")
        except (ValueError, AttributeError, RecursionError):
            return None
        if not isinstance(args, dict) or args.get(name) is None:
            return None
        value = args[name]
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

    return key_of


def _run_inline(queue: Queue) -> None:
    """``driver: sync``: run what was just pushed, in this process."""
    JobRunner(queue).drain()


def make_behavior(ref: str) -> Any:
    """Behaviours hold per-queue state, so each queue gets its own instance."""
    cls = resolve_reference(ref)
    if not isinstance(cls, type) or not hasattr(cls, "attach"):
        raise ConfigError(f"behavior {ref!r} must be a class with attach(queue)")
    return cls()
