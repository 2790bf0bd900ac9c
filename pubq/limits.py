"""Per-key concurrency and rate limits of a queue or a job class (issue 16, spec §7.10).

``limits: {key: "{account_id}", concurrency: 1, rate: "10/m", burst: 5}`` — the key is a template
over the job's fields; every job rendering the same key shares its limits, across workers and hosts
(the driver keeps the slots and the rate state, :meth:`pubq.drivers.base.Driver.limit_acquire`). A
job class whose key is not a plain field computes it in ``Job.limit_key`` (a :class:`LimitKey`).

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
_KEYS = {"key", "concurrency", "rate", "burst"}
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
    #: With a rate: a token bucket instead of the sliding window — ``burst`` starts at once, then
    #: one per ``per / rate`` seconds (0: the window).
    burst: int = 0

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(_FIELD.findall(self.key))

    def render(self, args: Mapping[str, Any]) -> str:
        """The key of a job with these fields; KeyError names a field the job does not have."""
        return clean_key(_FIELD.sub(lambda m: _text(args[m.group(1)]), self.key))

    def resolve(self, args: Mapping[str, Any]) -> LimitKey:
        """This rule for one job: its rendered key and the numbers (KeyError as :meth:`render`)."""
        return LimitKey(self.render(args), self.concurrency, self.rate, self.per, self.burst)

    def describe(self) -> str:
        parts = [f"key {self.key}"]
        if self.concurrency:
            parts.append(f"concurrency {self.concurrency}")
        if self.rate:
            parts.append(f"rate {self.rate}/{self.per:g}s")
        if self.burst:
            parts.append(f"burst {self.burst}")
        return ", ".join(parts)


@dataclass(frozen=True)
class LimitKey:
    """One job's limit as the worker asks the driver for it: the key itself (not a template) and
    its numbers. ``Job.limit_key`` returns one when the key is not a plain field of the job."""

    key: str
    concurrency: int = 0
    rate: int = 0
    per: float = 1.0
    burst: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", clean_key(str(self.key)))
        problem = _numbers_problem(self.concurrency, self.rate, self.per, self.burst)
        if problem:
            raise ValueError(f"limit of key {self.key!r}: {problem}")

    def describe(self) -> str:
        return Limits(self.key, self.concurrency, self.rate, self.per, self.burst).describe()

    @property
    def interval(self) -> float:
        """Seconds between two starts once a token bucket is empty (``per / rate``)."""
        return self.per / self.rate if self.rate else 0.0


def clean_key(text: str) -> str:
    """A key as stored: no NUL, at most MAX_KEY characters (a longer one keeps a hash of itself)."""
    text = text.replace("\0", "")
    if len(text) > MAX_KEY:
        import hashlib

        text = text[:MAX_KEY - 17] + "#" + hashlib.sha1(text.encode()).hexdigest()[:16]
    return text


def per_second(rate: float) -> tuple[int, float]:
    """A rate in starts per second (``2.5``, ``0.001``) as (count, per): whole rates keep a 1 s
    window, others become one start per ``1 / rate`` seconds (the same token bucket interval)."""
    if rate <= 0:
        raise ValueError("a rate must be greater than 0")
    if rate >= 1 and float(rate).is_integer():
        return min(int(rate), MAX_SLOTS), 1.0
    return 1, min(max(1.0 / rate, 0.001), 7 * 86400)


def _numbers_problem(concurrency: Any, rate: Any, per: Any, burst: Any) -> str:
    for name, value in (("concurrency", concurrency), ("rate", rate), ("burst", burst)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SLOTS:
            return f"{name} must be an integer 0 to {MAX_SLOTS} (got {value!r})"
    if not concurrency and not rate:
        return "give concurrency, rate or both"
    if burst and not rate:
        return "burst needs a rate"
    if not isinstance(per, (int, float)) or not 0.001 <= per <= 7 * 86400:
        return "the window must be 1 ms to 7 days"
    return ""


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
            raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: burst, concurrency, key, rate)")
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
        burst = raw.get("burst", 0)
        if burst is None:
            burst = 0
        if isinstance(burst, bool) or not isinstance(burst, int) or not 0 <= burst <= MAX_SLOTS:
            raise ConfigError(f"{where}.burst: must be an integer 1 to {MAX_SLOTS} (got {burst!r})")
        spec = Limits(key=key, concurrency=concurrency, rate=rate, per=per, burst=burst)
    if not spec.concurrency and not spec.rate:
        raise ConfigError(f"{where}: give concurrency, rate or both")
    if spec.burst and not spec.rate:
        raise ConfigError(f"{where}.burst: needs a rate (burst starts at once, then the rate)")
    if "{" in _FIELD.sub("", spec.key) or "}" in _FIELD.sub("", spec.key):
        raise ConfigError(f"{where}.key: unbalanced braces in {spec.key!r}")
    for name in spec.fields:
        if not name.isidentifier():
            raise ConfigError(f"{where}.key: {{{name}}} is not a field name")
        if fields is not None and name not in fields:
            raise ConfigError(f"{where}.key: the job has no field {name!r} (fields: {', '.join(fields) or 'none'})")
    return spec
