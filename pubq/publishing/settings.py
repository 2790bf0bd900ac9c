"""The ``publishing:`` section of the YAML config → frozen dataclasses.

Every problem is one :class:`ConfigError` line naming the key (``publishing.channel_types.douyin.
accounts[2].credentials.token: …``). Secrets (account credentials, the callback secret) must be
``${ENV_VAR}`` references and are held in :class:`Secret`, whose ``repr``/``str`` never show them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError
from .accounts import Account, ChannelType, RateLimit, Secret

ASSET_TYPES = ("image", "video")
BUILTIN_ADAPTERS = {
    "filesystem": "pubq.publishing.adapters.filesystem:FilesystemAdapter",
    "http": "pubq.publishing.adapters.http:HttpAdapter",
}
DEFAULT_QUEUES = {
    "copy": "copy-asset",
    "upload": "upload-asset",
    "article": "pub-article",
    "callback": "source-callback",
}
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,23}$")


@dataclass(frozen=True)
class SourcePolicy:
    root: Path
    schemes: frozenset[str]
    allow_hosts: tuple[str, ...]
    max_bytes: int
    timeout: float


@dataclass(frozen=True)
class CallbackSettings:
    secret: Secret | None
    timeout: float
    #: Budget for the retries inside one SourceCallbackJob attempt (seconds).
    max_seconds: float
    allow_hosts: tuple[str, ...]
    schemes: frozenset[str]


@dataclass(frozen=True)
class QueueNames:
    copy: str = DEFAULT_QUEUES["copy"]
    upload: str = DEFAULT_QUEUES["upload"]
    article: str = DEFAULT_QUEUES["article"]
    callback: str = DEFAULT_QUEUES["callback"]


@dataclass(frozen=True)
class PublishingSettings:
    table_prefix: str
    sources: SourcePolicy
    publish_dirs: Mapping[str, Path]
    callback: CallbackSettings
    queues: QueueNames
    channel_types: Mapping[str, ChannelType]
    #: Allowed ``source`` names of requests; None accepts any well-formed name.
    source_names: frozenset[str] | None = None
    max_body_bytes: int = 1024 * 1024

    def channel_type(self, code: str) -> ChannelType:
        try:
            return self.channel_types[code]
        except KeyError:
            raise ConfigError(f"publishing.channel_types: {code!r} is not configured") from None


class _Section:
    """A dict being read at ``path``: typed getters, then :meth:`done` rejects unknown keys."""

    def __init__(self, raw: Any, path: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: must be a mapping, got {type(raw).__name__}")
        self.raw = dict(raw)
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def get(self, name: str, default: Any = None) -> Any:
        self.seen.add(name)
        return self.raw.get(name, default)

    def str(self, name: str, default: str | None = None, *, pattern: re.Pattern[str] | None = None) -> str:
        value = self.get(name, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.key(name)}: must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise ConfigError(f"{self.key(name)}: {value!r} is not a valid name")
        return value

    def number(self, name: str, default: float, *, allow_zero: bool = False, integer: bool = False) -> Any:
        """A positive number (or zero when ``allow_zero``); integers only when ``integer``."""
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            raise ConfigError(f"{self.key(name)}: must be {kind}, got {value!r}")
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(f"{self.key(name)}: must be greater than 0, got {value!r}")
        return value

    def str_list(self, name: str, default: list[str]) -> list[str]:
        value = self.get(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{self.key(name)}: must be a list of strings")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


def load_settings(raw: Mapping[str, Any] | None, base_dir: Path) -> PublishingSettings:
    """Validate the ``publishing:`` mapping; relative paths are resolved against ``base_dir``."""
    top = _Section(raw, "publishing")
    prefix = top.str("table_prefix", "pub_", pattern=_PREFIX)
    sources = _source_policy(_Section(top.get("sources"), top.key("sources")), top, base_dir)
    publish_dirs = _publish_dirs(top.get("publish_dir", "publish"), top.key("publish_dir"), base_dir)
    callback = _callback(_Section(top.get("callback"), top.key("callback")))
    queues_sec = _Section(top.get("queues"), top.key("queues"))
    queues = QueueNames(**{k: queues_sec.str(k, v) for k, v in DEFAULT_QUEUES.items()})
    queues_sec.done()
    names = top.get("source_names")
    if names is not None:
        names = frozenset(top.str_list("source_names", []))
    max_body = top.number("max_body_bytes", 1024 * 1024, integer=True)
    types_raw = top.get("channel_types", {})
    types_sec = _Section(types_raw, top.key("channel_types"))
    channel_types = {}
    for code in types_sec.raw:
        if not isinstance(code, str) or not _NAME.match(code):
            raise ConfigError(f"{types_sec.key(str(code))}: invalid channel type code")
        channel_types[code] = _channel_type(code, _Section(types_sec.get(code), types_sec.key(code)), base_dir)
    top.done()
    return PublishingSettings(
        table_prefix=prefix,
        sources=sources,
        publish_dirs=MappingProxyType(publish_dirs),
        callback=callback,
        queues=queues,
        channel_types=MappingProxyType(channel_types),
        source_names=names,
        max_body_bytes=max_body,
    )


def _path(value: Any, key: str, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a directory path")
    path = Path(os.path.expanduser(value))
    return (path if path.is_absolute() else Path(base_dir) / path).resolve()


def _hosts(sec: _Section, name: str) -> tuple[str, ...]:
    hosts = sec.str_list(name, [])
    for host in hosts:
        if "/" in host:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError:
                raise ConfigError(f"{sec.key(name)}: {host!r} is not a host, address or network") from None
    return tuple(h.lower() for h in hosts)


def _schemes(sec: _Section, default: list[str]) -> frozenset[str]:
    schemes = sec.str_list("schemes", default)
    bad = [s for s in schemes if s not in ("http", "https")]
    if bad:
        raise ConfigError(f"{sec.key('schemes')}: only http and https are supported, got {bad[0]!r}")
    return frozenset(schemes)


def _source_policy(sec: _Section, top: _Section, base_dir: Path) -> SourcePolicy:
    root = _path(top.get("source_root", "sources"), top.key("source_root"), base_dir)
    policy = SourcePolicy(
        root=root,
        schemes=_schemes(sec, ["http", "https"]),
        allow_hosts=_hosts(sec, "allow_hosts"),
        max_bytes=sec.number("max_bytes", 512 * 1024 * 1024, integer=True),
        timeout=float(sec.number("timeout", 30.0)),
    )
    sec.done()
    return policy


def _publish_dirs(raw: Any, key: str, base_dir: Path) -> dict[str, Path]:
    if isinstance(raw, str):
        root = _path(raw, key, base_dir)
        return {t: root / t for t in ASSET_TYPES}
    sec = _Section(raw, key)
    dirs = {t: _path(sec.get(t, f"publish/{t}"), sec.key(t), base_dir) for t in ASSET_TYPES}
    sec.done()
    return dirs


def _callback(sec: _Section) -> CallbackSettings:
    secret = sec.get("secret")
    settings = CallbackSettings(
        secret=None if secret is None else _secret(secret, sec.key("secret")),
        timeout=float(sec.number("timeout", 10.0)),
        max_seconds=float(sec.number("max_seconds", 30.0)),
        allow_hosts=_hosts(sec, "allow_hosts"),
        schemes=_schemes(sec, ["http", "https"]),
    )
    sec.done()
    return settings


def _secret(value: Any, key: str) -> Secret:
    """Resolve a ``${VAR}`` / ``${VAR:-default}`` reference; literal secrets are refused."""
    match = _ENV_REF.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{key}: must be an environment reference like ${{MY_TOKEN}}, not a literal value")
    name, default = match.group(1), match.group(2)
    resolved = os.environ.get(name, default)
    if resolved is None or resolved == "":
        raise ConfigError(f"{key}: environment variable {name} is not set")
    return Secret(resolved, f"${{{name}}}")


def _rate_limit(raw: Any, key: str) -> RateLimit | None:
    if raw is None:
        return None
    sec = _Section(raw, key)
    limit = RateLimit(
        rate=float(sec.number("rate", 1.0)),
        burst=sec.number("burst", 1, integer=True),
        max_wait=float(sec.number("max_wait", 30.0, allow_zero=True)),
    )
    sec.done()
    return limit


def _channel_type(code: str, sec: _Section, base_dir: Path) -> ChannelType:
    adapter = sec.str("adapter")
    adapter = BUILTIN_ADAPTERS.get(adapter, adapter)
    if ":" not in adapter:
        raise ConfigError(
            f"{sec.key('adapter')}: {adapter!r} is neither a built-in adapter "
            f"({', '.join(BUILTIN_ADAPTERS)}) nor a module:Class reference"
        )
    options = sec.get("options", {})
    if not isinstance(options, Mapping):
        raise ConfigError(f"{sec.key('options')}: must be a mapping")
    from .adapters.base import resolve_adapter  # local: adapters import settings types

    adapter_cls = resolve_adapter(adapter, sec.key("adapter"))
    options = adapter_cls.parse_options(dict(options), sec.key("options"), base_dir)
    rate = _rate_limit(sec.get("rate_limit"), sec.key("rate_limit"))
    accounts = _accounts(sec.get("accounts"), sec.key("accounts"))
    sec.done()
    return ChannelType(code, adapter, MappingProxyType(dict(options)), MappingProxyType(accounts), rate)


def _accounts(raw: Any, key: str) -> dict[str, Account]:
    if isinstance(raw, Mapping):
        items = [({"id": k, **(v or {})} if isinstance(v, (Mapping, type(None))) else v, f"{key}.{k}")
                 for k, v in raw.items()]
    elif isinstance(raw, list):
        items = [(v, f"{key}[{i}]") for i, v in enumerate(raw)]
    else:
        raise ConfigError(f"{key}: must be a list of accounts (or a mapping id → account)")
    accounts: dict[str, Account] = {}
    for item, path in items:
        sec = _Section(item, path)
        account_id = str(sec.get("id", "")) if isinstance(sec.get("id"), (str, int)) else ""
        if not _NAME.match(account_id):
            raise ConfigError(f"{sec.key('id')}: must be a name of letters, digits, '_', '.', '-'")
        if account_id in accounts:
            raise ConfigError(f"{sec.key('id')}: duplicate account {account_id!r}")
        creds_sec = _Section(sec.get("credentials"), sec.key("credentials"))
        creds = {k: _secret(v, creds_sec.key(k)) for k, v in creds_sec.raw.items()}
        accounts[account_id] = Account(
            id=account_id,
            name=str(sec.get("name", account_id)),
            credentials=MappingProxyType(creds),
            rate_limit=_rate_limit(sec.get("rate_limit"), sec.key("rate_limit")),
        )
        sec.done()
    return accounts
