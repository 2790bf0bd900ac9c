"""A behaviour maps event names to its own methods and attaches them to a queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..queue import Queue


class Behavior:
    def events(self) -> dict[str, Callable[[Any], Any]]:
        return {}

    def attach(self, queue: Queue) -> None:
        for name, handler in self.events().items():
            queue.bus.on(name, handler, label=f"{type(self).__module__}:{type(self).__qualname__}")

    def detach(self, queue: Queue) -> None:
        for name, handler in self.events().items():
            queue.bus.off(name, handler)
