"""Redis locations: one server, a Sentinel-watched master, or a Cluster, as one URL string.

The config's ``redis:`` takes a URL (``redis://``, ``rediss://``, ``unix://``,
``redis+sentinel://[:pw@]h1:p1,h2:p2/SERVICE/DB``, ``redis+cluster://[:pw@]h1:p1,h2:p2/``) or a
mapping (``{sentinels: [...], service, db, password}`` / ``{cluster: [...], password}``). The
mapping is turned into the equivalent URL, so the rest of pubq carries one string, and the client
factory (:mod:`pubq.drivers.redis_client`) parses it again with :func:`parse_redis_url`.

Passwords never appear in a message: :func:`redact` replaces them with ``***`` (spec §7.6).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
SENTINEL_PORT = 26379
REDIS_PORT = 6379
_MAPPING_KEYS = {"sentinels", "service", "db", "password", "cluster", "tls"}
_PASSWORD = re.compile(r"(?P<head>[a-z+]+://[^:@/]*:)(?P<pw>[^@]*)(?P<tail>@)", re.IGNORECASE)


@dataclass(frozen=True)
class RedisTarget:
    """Where the queue's Redis is; ``kind`` is ``single``, ``sentinel`` or ``cluster``."""

    kind: str
    #: The URL as configured (``single``: handed to redis-py's ``from_url`` as is).
    url: str
    #: Sentinels (``sentinel``) or startup nodes (``cluster``): (host, port).
    nodes: tuple[tuple[str, int], ...] = ()
    #: The Sentinel service name (the monitored master's name).
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @property
    def redacted(self) -> str:
        return redact(self.url)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", text)


def scheme_of(text: str) -> str:
    return text.split("://", 1)[0].lower() if "://" in text else ""


def _node(part: str, default_port: int, url: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` → (host, port)."""
    part = part.strip()
    if part.startswith("["):
        host, _, after = part[1:].partition("]")
        port = after[1:] if after.startswith(":") else ("" if not after else "?" + after)
    elif part.count(":") == 1:
        host, _, port = part.partition(":")
    else:
        host, port = part, ""
    if not host:
        raise ValueError(f"{redact(url)}: empty host in {part!r}")
    if port == "":
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{redact(url)}: port must be a number from 1 to 65535 (got {port!r})")
    return host, int(port)


def parse_redis_url(url: str) -> RedisTarget:
    """A ``redis:`` URL → :class:`RedisTarget`; ValueError (password redacted) when malformed."""
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise ValueError(f"{redact(url)}: must start with {', '.join(s + '://' for s in SCHEMES)}")
    if scheme in ("redis", "rediss", "unix"):
        return RedisTarget("single", url)
    kind = scheme.split("+", 1)[1]
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    if query:
        raise ValueError(f"{redact(url)}: {scheme}:// URLs take no ?options")
    username = password = None
    if "@" in rest:
        auth, _, rest = rest.rpartition("@")
        user, sep, pw = auth.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if sep else None
        if not sep:  # "pw@host": the common short form means a password, not a user
            username, password = None, unquote(user) or None
    hosts, _, path = rest.partition("/")
    if not hosts:
        raise ValueError(f"{redact(url)}: no {'sentinels' if kind == 'sentinel' else 'nodes'} given")
    default_port = SENTINEL_PORT if kind == "sentinel" else REDIS_PORT
    nodes = tuple(_node(part, default_port, url) for part in hosts.split(","))
    parts = [p for p in path.split("/") if p]
    tls = scheme.startswith("rediss")
    if kind == "cluster":
        if parts:
            raise ValueError(f"{redact(url)}: a Redis Cluster has no databases: end the URL with '/' only")
        return RedisTarget("cluster", url, nodes, username=username, password=password, tls=tls)
    if not parts:
        raise ValueError(f"{redact(url)}: the Sentinel service name is missing (…/SERVICE/DB)")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"{redact(url)}: the path must be /SERVICE or /SERVICE/DB with DB a number")
    db = int(parts[1]) if len(parts) == 2 else 0
    return RedisTarget("sentinel", url, nodes, service=unquote(parts[0]), db=db, username=username,
                       password=password, tls=tls)


def _host_list(value: Any, key: str, default_port: int) -> str:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key}: must be a list of host:port strings")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{key}[{i}]: must be a host:port string (got {item!r})")
        host, port = _node(item.strip(), default_port, item)
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return ",".join(out)


def url_from_mapping(value: Mapping[str, Any]) -> str:
    """``{sentinels: [...], service, db, password}`` or ``{cluster: [...], password}`` → URL.

    ValueError names the key (relative to ``redis``) that is wrong.
    """
    unknown = sorted(set(value) - _MAPPING_KEYS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (allowed: {', '.join(sorted(_MAPPING_KEYS))})")
    if ("sentinels" in value) == ("cluster" in value):
        raise ValueError("give either sentinels: [...] (with service:) or cluster: [...]")
    password = value.get("password")
    if password is not None and not isinstance(password, str | int):
        raise ValueError("password: must be a string")
    tls = value.get("tls", False)
    if not isinstance(tls, bool):
        raise ValueError("tls: must be true or false")
    auth = f":{quote(str(password), safe='')}@" if password not in (None, "") else ""
    base = "rediss" if tls else "redis"
    if "cluster" in value:
        if "service" in value or "db" in value:
            raise ValueError("a Redis Cluster takes no service or db")
        return f"{base}+cluster://{auth}{_host_list(value['cluster'], 'cluster', REDIS_PORT)}/"
    service = value.get("service")
    if not isinstance(service, str) or not service.strip() or "/" in service:
        raise ValueError(f"service: must be the name of the master the sentinels watch (got {service!r})")
    db = value.get("db", 0)
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise ValueError(f"db: must be an integer ≥ 0 (got {db!r})")
    hosts = _host_list(value["sentinels"], "sentinels", SENTINEL_PORT)
    return f"{base}+sentinel://{auth}{hosts}/{quote(service, safe='')}/{db}"


__all__ = ["SCHEMES", "RedisTarget", "parse_redis_url", "redact", "scheme_of", "url_from_mapping"]
