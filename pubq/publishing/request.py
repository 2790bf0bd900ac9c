"""Validation of a publish request (the ``pubq publish FILE`` document or the Python API dict).

All problems are collected and reported by their path (``assets[1].url: …``) in one
:class:`InvalidRequestError`, so a submitter fixes the file in one go.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .codes import InvalidRequestError
from .settings import ASSET_TYPES, PublishingSettings

#: C0 control characters and DEL: never in a title or a URL (NUL also breaks PostgreSQL text and
#: every path API); a body may hold tabs and line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Longest file name (one path component) and whole path on the filesystems pubq runs on, in bytes.
NAME_MAX = 255
PATH_MAX = 4096
_UUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FIELDS = {"uuid", "source", "channel_type", "callback_url", "title", "body", "accounts", "assets"}
_ASSET_FIELDS = {"type", "url", "enabled"}


@dataclass(frozen=True)
class AssetSpec:
    type: str
    url: str
    enabled: bool = True


@dataclass(frozen=True)
class PublishRequest:
    uuid: str
    source: str
    channel_type: str
    accounts: tuple[str, ...]
    assets: tuple[AssetSpec, ...]
    callback_url: str | None = None
    title: str = ""
    body: str = ""


def is_url(value: str) -> bool:
    return "://" in value


class UnusablePath(ValueError):
    """A local source path that cannot be used at all; the message is safe to show the submitter."""


def path_problem(url: str) -> str | None:
    """Why ``url`` cannot name a local file whatever the disk holds (checked before touching it)."""
    if "\x00" in url or _CONTROL.search(url):
        return "must not hold control characters (NUL, line breaks…)"
    try:
        size = len(url.encode())
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    if size > PATH_MAX:
        return f"is longer than {PATH_MAX} bytes"
    if any(len(part.encode()) > NAME_MAX for part in url.split("/")):
        return f"holds a file name longer than {NAME_MAX} bytes"
    return None


def local_source(url: str, root: Path) -> Path | None:
    """The file a local asset URL names, or None when it would leave ``root`` (``..``, symlinks).

    Raises :class:`UnusablePath` when the path cannot be resolved at all: a NUL, a name too long, a
    symbolic link loop (issue 11: these escaped as ValueError, OSError and RuntimeError)."""
    problem = path_problem(url)
    if problem is not None:
        raise UnusablePath(problem)
    raw = Path(url)
    try:
        candidate = (raw if raw.is_absolute() else root / raw).resolve()
        base = root.resolve()
    except RuntimeError:  # Python < 3.13: "Symlink loop from …"
        raise UnusablePath("leads into a loop of symbolic links") from None
    except (OSError, ValueError) as exc:
        raise UnusablePath(os_reason(exc)) from None
    try:
        candidate.relative_to(base)
    except ValueError:
        return None
    return candidate


def os_reason(exc: BaseException) -> str:
    """A short reason for a filesystem error, without the path (it is the submitter's own input)."""
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "leads into a loop of symbolic links"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot be read ({exc.strerror.lower()})"
    return "cannot be read"


def text_problem(value: str, *, body: bool = False) -> str | None:
    """Why a text field cannot be stored as it is: control characters, or not valid Unicode."""
    if (_BODY_CONTROL if body else _CONTROL).search(value):
        return "must not hold control characters" + ("" if body else " (NUL, line breaks…)")
    try:
        value.encode()
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


def split_url(url: str) -> tuple[Any, str | None]:
    """(urlsplit parts, None), or (None, why it cannot be read: a bad IPv6 literal, a bad port)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
    except ValueError as exc:
        return None, str(exc)
    return parts, None


def validate_request(data: Any, settings: PublishingSettings) -> PublishRequest:
    """Return a :class:`PublishRequest` or raise :class:`InvalidRequestError` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise InvalidRequestError("invalid publish request: the document must be a mapping",
                                  ["(root): must be a mapping of fields"])
    problems += [f"{k}: unknown field" for k in sorted(set(map(_key, data)) - _FIELDS)]

    def text(key: str, pattern: re.Pattern[str] | None = None, *, required: bool = True,
             limit: int = 512) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                problems.append(f"{key}: is required")
            return None
        if not isinstance(value, str):
            problems.append(f"{key}: must be a string")
            return None
        if pattern is not None and not pattern.match(value):
            problems.append(f"{key}: {value[:80]!r} is not valid (letters, digits, '_', '.', '-', at most 64)")
            return None
        bad = text_problem(value, body=key == "body")
        if bad is not None:
            problems.append(f"{key}: {bad}")
            return None
        if len(value.encode()) > limit:
            problems.append(f"{key}: longer than {limit} bytes")
            return None
        return value

    uuid = text("uuid", _UUID)
    source = text("source", _NAME)
    if source and settings.source_names is not None and source not in settings.source_names:
        problems.append(f"source: {source!r} is not one of {', '.join(sorted(settings.source_names))}")
    channel_type = text("channel_type", _NAME)
    ctype = settings.channel_types.get(channel_type) if channel_type else None
    if channel_type and ctype is None:
        known = ", ".join(sorted(settings.channel_types)) or "none configured"
        problems.append(f"channel_type: {channel_type!r} is not configured (known: {known})")
    callback_url = text("callback_url", required=False, limit=2048)
    if callback_url is not None:
        parts, unreadable = split_url(callback_url)
        if parts is None:
            problems.append(f"callback_url: cannot be read ({unreadable})")
        elif parts.scheme not in settings.callback.schemes or not parts.hostname:
            problems.append(f"callback_url: must be an {'/'.join(sorted(settings.callback.schemes))} URL with a host")
    title = text("title", required=False) or ""
    body = text("body", required=False, limit=settings.max_body_bytes) or ""

    accounts = _accounts(data.get("accounts"), ctype, channel_type, problems)
    assets = _assets(data.get("assets"), settings, problems)
    if problems:
        head = problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)"
        raise InvalidRequestError(f"invalid publish request: {head}", problems)
    return PublishRequest(uuid=uuid, source=source, channel_type=channel_type, accounts=accounts,  # type: ignore[arg-type]
                          assets=assets, callback_url=callback_url, title=title, body=body)


def _accounts(raw: Any, ctype: Any, channel_type: str | None, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append("accounts: must be a non-empty list of account ids")
        return ()
    seen: list[str] = []
    for i, account in enumerate(raw):
        if isinstance(account, int) and not isinstance(account, bool) and account.bit_length() < 200:
            account = str(account)
        if not isinstance(account, str) or not _NAME.match(account):
            problems.append(f"accounts[{i}]: must be an account id")
        elif account in seen:
            problems.append(f"accounts[{i}]: duplicate account {account!r}")
        elif ctype is not None and account not in ctype.accounts:
            problems.append(f"accounts[{i}]: {account!r} is not configured for channel type {channel_type}")
        else:
            seen.append(account)
    return tuple(seen)


def _assets(raw: Any, settings: PublishingSettings, problems: list[str]) -> tuple[AssetSpec, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append("assets: must be a non-empty list")
        return ()
    specs = []
    policy = settings.sources
    for i, item in enumerate(raw):
        path = f"assets[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{path}: must be a mapping with type, url and enabled")
            continue
        problems += [f"{path}.{k}: unknown field" for k in sorted(set(map(_key, item)) - _ASSET_FIELDS)]
        kind, url, enabled = item.get("type"), item.get("url"), item.get("enabled", True)
        ok = True
        if kind not in ASSET_TYPES:
            problems.append(f"{path}.type: must be one of {', '.join(ASSET_TYPES)}")
            ok = False
        if not isinstance(enabled, bool):
            problems.append(f"{path}.enabled: must be true or false")
            ok = False
        if not isinstance(url, str) or not url.strip() or len(url) > 2048:
            problems.append(f"{path}.url: must be a path under the source root or an http(s) URL")
            continue
        bad = text_problem(url)
        if bad is not None:
            problems.append(f"{path}.url: {bad}")
            continue
        if is_url(url):
            parts, unreadable = split_url(url)
            if parts is None:
                problems.append(f"{path}.url: cannot be read ({unreadable})")
                ok = False
            elif parts.scheme.lower() not in policy.schemes:
                problems.append(f"{path}.url: scheme {parts.scheme!r} is not allowed "
                                f"(allowed: {', '.join(sorted(policy.schemes))})")
                ok = False
            elif not parts.hostname:
                problems.append(f"{path}.url: URL has no host")
                ok = False
        else:
            reason = _local_problem(url, policy.root)
            if reason is not None:
                problems.append(f"{path}.url: {reason}")
                ok = False
        if ok:
            specs.append(AssetSpec(type=kind, url=url, enabled=enabled))
    return tuple(specs)


def _key(key: Any) -> str:
    """A mapping key as shown in a problem (a YAML key may be a number, a date, even a list)."""
    if isinstance(key, str):
        return key if len(key) <= 80 else key[:77] + "..."
    return f"<{type(key).__name__} key>"


def _local_problem(url: str, root: Path) -> str | None:
    """Why a local asset path cannot be copied, None when it names a file under the source root."""
    try:
        local = local_source(url, root)
        if local is None:
            return "path leaves the source root"
        if not local.is_file():
            return "no such file under the source root"
    except UnusablePath as exc:
        return str(exc)
    except OSError as exc:  # a name too long for this filesystem, no permission…
        return os_reason(exc)
    return None
