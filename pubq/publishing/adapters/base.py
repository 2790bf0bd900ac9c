"""The channel adapter interface and the per-channel-type service around it.

An adapter talks to one platform for one account at a time: upload assets, create the item,
read its review status. It raises :class:`AdapterError` (the platform refused: permanent) or
:class:`AdapterUnavailableError` (timeout, 5xx, 429: retried by the queue). Every call carries an
idempotency key so a step re-run after a crash never creates a second item.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ..accounts import Account, ChannelType
from ..codes import UnknownAccountError


@dataclass(frozen=True)
class UploadFile:
    asset_id: int
    type: str
    path: Path
    relative_path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Article:
    task_id: int
    uuid: str
    source: str
    title: str
    body: str


@dataclass(frozen=True)
class CreatedItem:
    item_id: str
    #: When the platform says it created the item; None → the caller uses the time the call returned.
    created_at: datetime | None = None


class ChannelAdapter(ABC):
    """Base of every adapter; ``options`` is what :meth:`parse_options` returned."""

    def __init__(self, channel_type: ChannelType) -> None:
        self.channel_type = channel_type
        self.options = channel_type.options

    @classmethod
    def parse_options(cls, raw: dict[str, Any], path: str, base_dir: Path) -> dict[str, Any]:
        """Validate the YAML ``options`` mapping; raise ConfigError naming ``path.<key>``."""
        if raw:
            raise ConfigError(f"{path}.{sorted(raw)[0]}: unknown key")
        return {}

    @abstractmethod
    def upload_assets(self, account: Account, files: list[UploadFile], *, idempotency_key: str) -> dict[str, str]:
        """Upload ``files`` for ``account``; return asset id (as str) → platform media id."""

    @abstractmethod
    def create_item(self, account: Account, article: Article, media: dict[str, str], *,
                    idempotency_key: str) -> CreatedItem:
        """Create the item on the platform (at most once per ``idempotency_key``)."""

    @abstractmethod
    def review_status(self, account: Account, item_id: str) -> str:
        """A :class:`~pubq.publishing.vocabulary.ReviewVerdict` value: ``review``, ``published`` or
        ``rejected``."""

    def close(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release connections; called when the service closes."""


def resolve_adapter(ref: str, key: str) -> type[ChannelAdapter]:
    """Import ``module:Class`` and check it is a ChannelAdapter."""
    module_name, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key}: cannot import adapter {ref!r}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, ChannelAdapter)):
        raise ConfigError(f"{key}: {ref!r} is not a ChannelAdapter subclass")
    return obj


class ChannelTypeService:
    """One channel type: its adapter and accounts, as the pipeline steps use them. Accounts' rate
    limits are kept by the queue core before a job starts (``UploadAssetJob.limit_key``)."""

    def __init__(self, channel_type: ChannelType, adapter: ChannelAdapter) -> None:
        self.channel_type = channel_type
        self.adapter = adapter

    def account(self, account_id: str) -> Account:
        try:
            return self.channel_type.accounts[account_id]
        except KeyError:
            raise UnknownAccountError.make(account=account_id, channel_type=self.channel_type.code) from None

    def upload(self, account: Account, files: list[UploadFile], key: str) -> dict[str, str]:
        return self.adapter.upload_assets(account, files, idempotency_key=key)

    def create(self, account: Account, article: Article, media: dict[str, str], key: str) -> CreatedItem:
        return self.adapter.create_item(account, article, media, idempotency_key=key)

    def review(self, account: Account, item_id: str) -> str:
        return self.adapter.review_status(account, item_id)
