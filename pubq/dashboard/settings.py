"""The ``dashboard:`` config section, password hashes, and the rule about which hosts it may bind.

Checked when ``pubq dashboard`` starts, never at import. The section::

    dashboard:
      auth:
        username: ops
        password_hash: "pbkdf2_sha256$600000$<salt>$<hash>"   # pubq dashboard --hash-password
        token_env: PUBQ_DASHBOARD_TOKEN                        # a bearer token, read from this variable
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, UsageError

#: PBKDF2 rounds of a new hash (OWASP's 2023 figure for SHA-256).
HASH_ITERATIONS = 600_000
HASH_SCHEME = "pbkdf2_sha256"
#: Hosts that only this machine can reach: the dashboard binds them without auth.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_AUTH_KEYS = {"username", "password_hash", "token_env"}


@dataclass(frozen=True)
class DashboardSettings:
    """Who may use the dashboard; empty fields mean that kind of auth is off."""

    username: str = ""
    password_hash: str = ""
    #: The bearer token (its value, read from the named variable at start).
    token: str = ""

    @property
    def auth_configured(self) -> bool:
        return bool((self.username and self.password_hash) or self.token)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    """``pbkdf2_sha256$ITER$SALT$HASH`` (base64), the form ``password_hash`` takes."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{HASH_SCHEME}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; False for any malformed hash (never raises)."""
    try:
        scheme, iterations, salt, digest = encoded.split("$")
        if scheme != HASH_SCHEME:
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def parse_settings(raw: Mapping[str, Any], source: str, env: Mapping[str, str]) -> DashboardSettings:
    """The section checked: one :class:`ConfigError` line naming the key when it is wrong."""
    def fail(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{source}: dashboard.{key}: {msg}")

    unknown = set(raw) - {"auth"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key (known: auth)")
    auth = raw.get("auth") or {}
    if not isinstance(auth, Mapping):
        raise fail("auth", "must be a mapping of username, password_hash, token_env")
    unknown = set(auth) - _AUTH_KEYS
    if unknown:
        raise fail(f"auth.{sorted(unknown)[0]}", f"unknown key (known: {', '.join(sorted(_AUTH_KEYS))})")
    for key in _AUTH_KEYS:
        if key in auth and not isinstance(auth[key], str):
            raise fail(f"auth.{key}", "must be a string")
    username, password_hash = auth.get("username", ""), auth.get("password_hash", "")
    if bool(username) != bool(password_hash):
        raise fail("auth", "give both username and password_hash (or neither)")
    if password_hash and (password_hash.count("$") != 3 or not password_hash.startswith(HASH_SCHEME + "$")):
        raise fail("auth.password_hash", "is not a pbkdf2_sha256 hash; make one with `pubq dashboard --hash-password`")
    token = ""
    if auth.get("token_env"):
        token = env.get(auth["token_env"], "")
        if not token:
            raise fail("auth.token_env", f"${auth['token_env']} is not set (or empty)")
    return DashboardSettings(username=username, password_hash=password_hash, token=token)


def check_bind(host: str, settings: DashboardSettings) -> None:
    """Refuse a host other machines can reach unless auth is configured."""
    if host not in LOCAL_HOSTS and not settings.auth_configured:
        raise UsageError(f"refusing to serve the dashboard on {host} without auth: set dashboard.auth "
                         "(username and password_hash, or token_env) in the config, or bind 127.0.0.1")
