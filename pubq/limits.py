"""Per-key concurrency and rate limits of a queue or a job class (issue 16, spec §7.10).

``limits: {key: "{account_id}", concurrency: 1, rate: "10/m"}`` — the key is a template over the
job's fields; every job rendering the same key shares its limits, across workers and hosts (the
driver keeps the slots and the rate window, :meth:`pubq.drivers.base.Driver.limit_acquire`).

This module only parses and renders; it holds no state and imports nothing but the errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

#: Rate units and their seconds: ``10/s``, ``10/m``, ``600/h``, ``1000/d``; also ``5/30s``.
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_FIELD = re.compile(r"\{([^{}]*)\}")
_KEYS = {"key", "concurrency", "rate"}
#: Largest concurrency and rate count (the rate window keeps one start time per allowed start).
MAX_SLOTS = 10_000
#: Longest rendered key (longer keys are cut and keep a hash of the rest, so they stay distinct).
MAX_KEY = 200


@dataclass(frozen=True)
class Limits:
    """One limit rule; ``concurrency``/``rate`` 0 mean "no such limit"."""

    #: Template over the job's fields, e.g. ``"{account_id}"`` or ``"{channel}:{account_id}"``.
    key: str
    concurrency: int = 0
    #: At most ``rate`` starts of a key in any window of ``per`` seconds.
    rate: int = 0
    per: float = 1.0

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(_FIELD.findall(self.key))

    def render(self, args: Mapping[str, Any]) -> str:
        """The key of a job with these fields; KeyError names a field the job does not have."""
        text = _FIELD.sub(lambda m: _text(args[m.group(1)]), self.key)
        text = text.replace("\0", "")
        if len(text) > MAX_KEY:
            import hashlib

            text = text[:MAX_KEY - 17] + "#" + hashlib.sha1(text.encode()).hexdigest()[:16]
        return text

    def describe(self) -> str:
        parts = [f"key {self.key}"]
        if self.concurrency:
            parts.append(f"concurrency {self.concurrency}")
        if self.rate:
            parts.append(f"rate {self.rate}/{self.per:g}s")
        return ", ".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_rate(value: Any) -> tuple[int, float]:
    """``"10/m"`` → (10, 60.0); ValueError with a short reason otherwise."""
    if not isinstance(value, str):
        raise ValueError("must be a string like 10/s, 10/m, 600/h or 5/30s")
    m = _RATE.match(value.lower())
    if m is None or m.group(3) not in _UNITS:
        raise ValueError("must be COUNT/UNIT like 10/s, 10/m, 600/h or 5/30s")
    count = int(m.group(1))
    per = float(m.group(2) or 1) * _UNITS[m.group(3)]
    if not 1 <= count <= MAX_SLOTS:
        raise ValueError(f"count must be 1 to {MAX_SLOTS}")
    if not 0.001 <= per <= 7 * 86400:
        raise ValueError("the window must be 1 ms to 7 days")
    return count, per


def parse_limits(raw: Any, where: str, fields: tuple[str, ...] | None = None) -> Limits | None:
    """A ``limits`` mapping → :class:`Limits` (None for no limits); one-line ConfigError naming
    ``where`` (``"pubq.yaml: queues.send.limits"``). ``fields``: the job's fields, when known, that
    the key may name."""
    if raw is None:
        return None
    if isinstance(raw, Limits):
        spec = raw
    else:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a mapping like {{key: \"{{account_id}}\", concurrency: 1, rate: 10/m}}")
        unknown = sorted(str(k) for k in raw if k not in _KEYS)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: concurrency, key, rate)")
        key = raw.get("key")
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{where}.key: must be a non-empty template like \"{{account_id}}\"")
        concurrency = raw.get("concurrency", 0)
        if concurrency is None:
            concurrency = 0
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 0 <= concurrency <= MAX_SLOTS:
            raise ConfigError(f"{where}.concurrency: must be an integer 1 to {MAX_SLOTS} (got {concurrency!r})")
        rate, per = 0, 1.0
        if raw.get("rate") is not None:
            try:
                rate, per = parse_rate(raw["rate"])
            except ValueError as exc:
                raise ConfigError(f"{where}.rate: {exc} (got {raw['rate']!r})") from None
        spec = Limits(key=key, concurrency=concurrency, rate=rate, per=per)
    if not spec.concurrency and not spec.rate:
        raise ConfigError(f"{where}: give concurrency, rate or both")
    if "{" in _FIELD.sub("", spec.key) or "}" in _FIELD.sub("", spec.key):
        raise ConfigError(f"{where}.key: unbalanced braces in {spec.key!r}")
    for name in spec.fields:
        if not name.isidentifier():
            raise ConfigError(f"{where}.key: {{{name}}} is not a field name")
        if fields is not None and name not in fields:
            raise ConfigError(f"{where}.key: the job has no field {name!r} (fields: {', '.join(fields) or 'none'})")
    return spec
