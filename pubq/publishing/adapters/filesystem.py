"""A channel that publishes into a local directory (what ``pubq demo`` and the tests use).

Layout under ``options.dir``: ``<account>/media/<sha256>.<ext>`` for uploads (content-addressed, so a
re-run uploads nothing new) and ``<account>/items/<item id>.json`` for items (named from the
idempotency key, so a re-run finds the item it already created). ``fail_accounts`` makes uploads for
those accounts fail, to show a partial failure; ``review`` is what the platform's review says.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ..accounts import Account
from ..codes import AdapterError
from ..vocabulary import ReviewVerdict
from .base import Article, ChannelAdapter, CreatedItem, UploadFile

REVIEW_RESULTS = tuple(verdict.value for verdict in ReviewVerdict)


class FilesystemAdapter(ChannelAdapter):
    @classmethod
    def parse_options(cls, raw: dict[str, Any], path: str, base_dir: Path) -> dict[str, Any]:
        unknown = sorted(set(raw) - {"dir", "fail_accounts", "review"})
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]}: unknown key")
        directory = raw.get("dir")
        if not isinstance(directory, str) or not directory:
            raise ConfigError(f"{path}.dir: must be a directory path")
        target = Path(os.path.expanduser(directory))
        fail = raw.get("fail_accounts", [])
        if not isinstance(fail, list) or not all(isinstance(a, (str, int)) for a in fail):
            raise ConfigError(f"{path}.fail_accounts: must be a list of account ids")
        review = raw.get("review", ReviewVerdict.UNDER_REVIEW.value)
        if review not in REVIEW_RESULTS:
            raise ConfigError(f"{path}.review: must be one of {', '.join(REVIEW_RESULTS)}")
        return {
            "dir": (target if target.is_absolute() else base_dir / target).resolve(),
            "fail_accounts": frozenset(str(a) for a in fail),
            "review": review,
        }

    @property
    def root(self) -> Path:
        return Path(self.options["dir"])

    def _account_dir(self, account: Account) -> Path:
        return self.root / account.id

    def upload_assets(self, account: Account, files: list[UploadFile], *, idempotency_key: str) -> dict[str, str]:
        if account.id in self.options["fail_accounts"]:
            raise AdapterError.make(channel_type=self.channel_type.code, account=account.id,
                                    reason="the account is configured to fail (fail_accounts)")
        media_dir = self._account_dir(account) / "media"
        media_dir.mkdir(parents=True, exist_ok=True)
        media: dict[str, str] = {}
        for f in files:
            name = f"{f.sha256}{f.path.suffix.lower()}"
            target = media_dir / name
            if not target.exists():
                temp = media_dir / f".{name}.{secrets.token_hex(4)}.part"
                try:
                    shutil.copyfile(f.path, temp)
                    os.replace(temp, target)
                finally:
                    temp.unlink(missing_ok=True)
            media[str(f.asset_id)] = f"media/{name}"
        return media

    def create_item(self, account: Account, article: Article, media: dict[str, str], *,
                    idempotency_key: str) -> CreatedItem:
        item_id = f"{account.id}-{hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]}"
        items = self._account_dir(account) / "items"
        items.mkdir(parents=True, exist_ok=True)
        path = items / f"{item_id}.json"
        if path.exists():  # created by an earlier run of this step
            data = json.loads(path.read_text())
            return CreatedItem(item_id, datetime.fromisoformat(data["created_at"]))
        created = datetime.now(UTC)
        doc = {"item_id": item_id, "created_at": created.isoformat(), "task_id": article.task_id,
               "uuid": article.uuid, "title": article.title, "body": article.body, "media": media,
               "review": self.options["review"]}
        temp = items / f".{item_id}.{secrets.token_hex(4)}.part"
        temp.write_text(json.dumps(doc, ensure_ascii=False, indent=2))
        os.replace(temp, path)
        return CreatedItem(item_id, created)

    def review_status(self, account: Account, item_id: str) -> str:
        path = self._account_dir(account) / "items" / f"{item_id}.json"
        if not path.exists():
            raise AdapterError.make(channel_type=self.channel_type.code, account=account.id,
                                    reason=f"item {item_id} does not exist")
        return json.loads(path.read_text()).get("review", ReviewVerdict.UNDER_REVIEW.value)
