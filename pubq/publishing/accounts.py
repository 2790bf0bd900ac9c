"""Channel types and their accounts as the adapters see them (the loader is :mod:`.settings`).

Kept apart from the loader so that adapters can use these types while the loader resolves
adapter classes: neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..limits import LimitKey, per_second


class Secret:
    """A credential read from the environment. Shows as ``***`` everywhere except :meth:`reveal`."""

    __slots__ = ("_value", "ref")

    def __init__(self, value: str, ref: str) -> None:
        self._value = value
        self.ref = ref

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.ref})"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self.ref)


@dataclass(frozen=True)
class RateLimit:
    """Token bucket: ``rate`` tokens per second, at most ``burst`` stored. Kept by the queue core's
    per-key limits (:meth:`limit`): an upload-asset or pub-article job of the account takes one
    token when it starts, or goes back delayed until its token is due."""

    rate: float
    burst: int
    #: No longer used (accepted so older configs load): a job whose token is not due waits
    #: delayed in its queue instead of sleeping in a worker, for as long as it takes.
    max_wait: float = 30.0

    def limit(self, key: str) -> LimitKey:
        """This bucket as the core limit of one key (``burst`` starts at once, then ``rate``/s)."""
        count, per = per_second(self.rate)
        return LimitKey(key, rate=count, per=per, burst=max(1, min(int(self.burst), 10_000)))


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    credentials: Mapping[str, Secret] = field(default_factory=dict)
    rate_limit: RateLimit | None = None


@dataclass(frozen=True)
class ChannelType:
    code: str
    adapter: str
    options: Mapping[str, Any]
    accounts: Mapping[str, Account]
    rate_limit: RateLimit | None = None
