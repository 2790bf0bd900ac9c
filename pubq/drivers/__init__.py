"""Driver kinds, imported lazily so a worker only loads the backend it uses."""

from __future__ import annotations

import importlib
from typing import Any

#: kind → "module:Class". ``sync`` is the in-memory driver; the queue runs its jobs inside push().
DRIVER_CLASSES: dict[str, str] = {
    "redis": "pubq.drivers.redis:RedisDriver",
    "db": "pubq.drivers.db:DbDriver",
    "sync": "pubq.drivers.memory:MemoryDriver",
    "memory": "pubq.drivers.memory:MemoryDriver",
}


def driver_class(kind: str) -> Any:
    try:
        ref = DRIVER_CLASSES[kind]
    except KeyError:
        raise ValueError(f"unknown driver {kind!r} (known: {', '.join(sorted(DRIVER_CLASSES))})") from None
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
