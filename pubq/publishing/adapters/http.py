"""A generic HTTP platform adapter with configurable endpoints.

Requests carry ``Authorization: Bearer <credentials.token>`` (when the account has a token) and an
``Idempotency-Key`` header. Timeouts, connection errors, 5xx and 429 are *unavailable* (retried by
the queue); other 4xx are *refused* (permanent). Messages never include headers, tokens or URLs
with query strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ...errors import ConfigError
from ..accounts import Account
from ..codes import AdapterError, AdapterUnavailableError
from ..keys import asset_upload_key
from ..vocabulary import ReviewVerdict
from .base import Article, ChannelAdapter, CreatedItem, UploadFile

DEFAULT_PATHS = {
    "upload": "/accounts/{account}/media",
    "create": "/accounts/{account}/items",
    "status": "/accounts/{account}/items/{item_id}",
}


class HttpAdapter(ChannelAdapter):
    @classmethod
    def parse_options(cls, raw: dict[str, Any], path: str, base_dir: Path) -> dict[str, Any]:
        unknown = sorted(set(raw) - {"base_url", "paths", "timeout", "token_credential"})
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]}: unknown key")
        base = raw.get("base_url")
        if not isinstance(base, str) or urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).hostname:
            raise ConfigError(f"{path}.base_url: must be an http(s) URL")
        paths = dict(DEFAULT_PATHS)
        given = raw.get("paths", {})
        if not isinstance(given, dict) or set(given) - set(DEFAULT_PATHS):
            raise ConfigError(f"{path}.paths: only {', '.join(DEFAULT_PATHS)} may be set")
        for key, value in given.items():
            if not isinstance(value, str) or not value.startswith("/"):
                raise ConfigError(f"{path}.paths.{key}: must be a path starting with '/'")
            paths[key] = value
        timeout = raw.get("timeout", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"{path}.timeout: must be a number greater than 0")
        token = raw.get("token_credential", "token")
        if not isinstance(token, str):
            raise ConfigError(f"{path}.token_credential: must be a credential name")
        return {"base_url": base.rstrip("/"), "paths": paths, "timeout": float(timeout), "token_credential": token}

    def __init__(self, channel_type: Any) -> None:
        super().__init__(channel_type)
        self._client: Any = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=httpx.Timeout(self.options["timeout"]), follow_redirects=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _url(self, which: str, **params: str) -> str:
        quoted = {k: quote(str(v), safe="") for k, v in params.items()}
        return self.options["base_url"] + self.options["paths"][which].format(**quoted)

    def _headers(self, account: Account, key: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = account.credentials.get(self.options["token_credential"])
        if token is not None:
            headers["Authorization"] = f"Bearer {token.reveal()}"
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def _call(self, account: Account, method: str, url: str, *, key: str | None = None, **kwargs: Any) -> dict:
        import httpx

        def fail(cls: Any, reason: str) -> Exception:
            return cls.make(channel_type=self.channel_type.code, account=account.id, reason=reason)

        try:
            response = self._http().request(method, url, headers=self._headers(account, key), **kwargs)
        except httpx.TimeoutException:
            raise fail(AdapterUnavailableError, "the platform timed out") from None
        except httpx.HTTPError as exc:
            raise fail(AdapterUnavailableError, f"cannot reach the platform ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise fail(AdapterUnavailableError, f"the platform answered HTTP {status}")
        if status >= 400:
            raise fail(AdapterError, f"HTTP {status}{_detail(response)}")
        try:
            data = response.json()
        except ValueError:
            raise fail(AdapterError, f"the platform answered HTTP {status} without JSON") from None
        if not isinstance(data, dict):
            raise fail(AdapterError, "the platform answered with unexpected JSON")
        return data

    def upload_assets(self, account: Account, files: list[UploadFile], *, idempotency_key: str) -> dict[str, str]:
        media: dict[str, str] = {}
        for f in files:
            with open(f.path, "rb") as fh:
                data = self._call(account, "POST", self._url("upload", account=account.id),
                                  key=asset_upload_key(idempotency_key, f.asset_id),
                                  files={"file": (f.path.name, fh)},
                                  data={"type": f.type, "sha256": f.sha256, "size": str(f.size)})
            media_id = data.get("media_id")
            if not isinstance(media_id, (str, int)):
                raise AdapterError.make(channel_type=self.channel_type.code, account=account.id,
                                        reason="upload answer has no media_id")
            media[str(f.asset_id)] = str(media_id)
        return media

    def create_item(self, account: Account, article: Article, media: dict[str, str], *,
                    idempotency_key: str) -> CreatedItem:
        body = {"title": article.title, "body": article.body, "media": media, "source": article.source,
                "uuid": article.uuid}
        data = self._call(account, "POST", self._url("create", account=account.id), key=idempotency_key, json=body)
        item_id = data.get("item_id")
        if not isinstance(item_id, (str, int)):
            raise AdapterError.make(channel_type=self.channel_type.code, account=account.id,
                                    reason="create answer has no item_id")
        return CreatedItem(str(item_id), _parse_time(data.get("created_at")))

    def review_status(self, account: Account, item_id: str) -> str:
        data = self._call(account, "GET", self._url("status", account=account.id, item_id=item_id))
        status = data.get("status")
        return status if status in tuple(ReviewVerdict) else ReviewVerdict.UNDER_REVIEW


def _detail(response: Any) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    message = data.get("error") or data.get("message") if isinstance(data, dict) else None
    return f": {str(message)[:200]}" if message else ""


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
