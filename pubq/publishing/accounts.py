"""Channel types and their accounts as the adapters see them (the loader is :mod:`.settings`).

Kept apart from the loader so that adapters can use these types while the loader resolves
adapter classes: neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    """Token bucket: ``rate`` tokens per second, at most ``burst`` stored."""

    rate: float
    burst: int
    #: Longest a job waits for a token before it gives up and retries later (seconds).
    max_wait: float = 30.0


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
