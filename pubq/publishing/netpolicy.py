"""Which network destinations pubq may fetch from or post to.

Source URLs and callback URLs come from requests, i.e. from other systems: a URL naming a private,
loopback, link-local or otherwise non-public address is refused unless the host (or its network) is
listed in ``allow_hosts``. Every address a name resolves to is checked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit


class NotAllowed(ValueError):
    """The destination is refused; the message is safe to show to the submitter."""


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip("[]").split("%")[0])
    except ValueError:
        return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _allowed(host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             allow: Iterable[str]) -> bool:
    for entry in allow:
        if entry == host:
            return True
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def check_url(url: str, *, schemes: Iterable[str], allow_hosts: Iterable[str]) -> None:
    """Raise :class:`NotAllowed` unless ``url`` uses an allowed scheme and a permitted host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in set(schemes):
        raise NotAllowed(f"scheme {scheme or '(none)'!r} is not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise NotAllowed("URL has no host")
    allow = tuple(allow_hosts)
    if _allowed(host, None, allow):
        return
    literal = _ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise NotAllowed("URL has an invalid port") from None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise NotAllowed(f"host {host} cannot be resolved") from None
        addresses = [a for a in (_ip(info[4][0]) for info in infos) if a is not None]
    for address in addresses:
        if not is_public(address) and not _allowed(host, address, allow):
            raise NotAllowed(f"host {host} is a private or loopback address")
