"""Validation of a publish request (the ``pubq publish FILE`` document or the Python API dict).

All problems are collected and reported by their path (``assets[1].url: …``) in one
:class:`InvalidRequestError`, so a submitter fixes the file in one go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .codes import InvalidRequestError
from .settings import ASSET_TYPES, PublishingSettings

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


def local_source(url: str, root: Path) -> Path | None:
    """The file a local asset URL names, or None when it would leave ``root`` (``..``, symlinks)."""
    raw = Path(url)
    candidate = (raw if raw.is_absolute() else root / raw).resolve()
    try:
        candidate.relative_to(root.resolve())
    except ValueError:
        return None
    return candidate


def validate_request(data: Any, settings: PublishingSettings) -> PublishRequest:
    """Return a :class:`PublishRequest` or raise :class:`InvalidRequestError` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise InvalidRequestError("invalid publish request: the document must be a mapping",
                                  ["(root): must be a mapping of fields"])
    problems += [f"{k}: unknown field" for k in sorted(set(map(str, data)) - _FIELDS)]

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
        parts = urlsplit(callback_url)
        if parts.scheme not in settings.callback.schemes or not parts.hostname:
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
        if isinstance(account, int) and not isinstance(account, bool):
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
        problems += [f"{path}.{k}: unknown field" for k in sorted(set(map(str, item)) - _ASSET_FIELDS)]
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
        if is_url(url):
            parts = urlsplit(url)
            if parts.scheme.lower() not in policy.schemes:
                problems.append(f"{path}.url: scheme {parts.scheme!r} is not allowed "
                                f"(allowed: {', '.join(sorted(policy.schemes))})")
                ok = False
            elif not parts.hostname:
                problems.append(f"{path}.url: URL has no host")
                ok = False
        else:
            local = local_source(url, policy.root)
            if local is None:
                problems.append(f"{path}.url: path leaves the source root")
                ok = False
            elif not local.is_file():
                problems.append(f"{path}.url: no such file under the source root")
                ok = False
        if ok:
            specs.append(AssetSpec(type=kind, url=url, enabled=enabled))
    return tuple(specs)
