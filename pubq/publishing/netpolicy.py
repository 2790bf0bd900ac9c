"""Which network destinations pubq may fetch from or post to.

Source URLs and callback URLs come from requests, i.e. from other systems: a URL naming a private,
loopback, link-local or otherwise non-public address is refused unless the host (or its network) is
listed in ``allow_hosts``. Every address a name resolves to is checked, and the request is then
sent to the checked address (:func:`pinned`), so a name that resolves differently a moment later
(DNS rebinding) cannot steer the connection to an address that was never checked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

#: Nothing a URL may hold unencoded: C0 controls (NUL, line breaks…), DEL and spaces.
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


class NotAllowed(ValueError):
    """The destination is refused; the message is safe to show to the submitter."""


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip("[]").split("%")[0])
    except ValueError:
        return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A global unicast address, and so is every IPv4 address it carries: IPv4-mapped, 6to4
    (``2002:7f00:1::1`` reaches 127.0.0.1 through a relay) and both ends of a Teredo address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            embedded = [ip.sixtofour, *(ip.teredo or ())]
            if any(inner is not None and not is_public(inner) for inner in embedded):
                return False
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


@dataclass(frozen=True)
class Checked:
    """A URL that passed :func:`check_url`, and the address it was checked at (None: allowed by name)."""

    url: str
    address: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)


def pinned(checked: Checked) -> tuple[str, dict[str, str], dict[str, str]]:
    """(URL naming the checked address, Host header, httpx request extensions) for one request.

    The Host header and TLS server name stay the original host, so virtual hosting and certificate
    checks work as if the name had been connected to.
    """
    if checked.address is None:
        return checked.url, {}, {}
    parts = urlsplit(checked.url)
    ip = ipaddress.ip_address(checked.address)
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    if "@" in parts.netloc:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme.lower() == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": host_header}, extensions


def check_url(url: str, *, schemes: Iterable[str], allow_hosts: Iterable[str]) -> Checked:
    """Raise :class:`NotAllowed` unless ``url`` uses an allowed scheme and a permitted host.

    Returns the address to connect to: the first one the name resolved to (all were checked).
    """
    if _UNSAFE.search(url):
        raise NotAllowed("URL holds control characters or spaces")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise NotAllowed(f"URL cannot be read ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in set(schemes):
        raise NotAllowed(f"scheme {scheme or '(none)'!r} is not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise NotAllowed("URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise NotAllowed("URL has an invalid port") from None
    allow = tuple(allow_hosts)
    if _allowed(host, None, allow):
        return Checked(url)
    literal = _ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):  # UnicodeError: a name IDNA cannot encode
            raise NotAllowed(f"host {host[:80]} cannot be resolved") from None
        addresses = [a for a in (_ip(info[4][0]) for info in infos) if a is not None]
    if not addresses:
        raise NotAllowed(f"host {host} cannot be resolved")
    for address in addresses:
        if not is_public(address) and not _allowed(host, address, allow):
            raise NotAllowed(f"host {host} is a private or loopback address")
    return Checked(url, None if literal is not None else str(addresses[0]))
