"""Copy an asset from its source (a file under the source root, or an http(s) URL) into the
publish directory: streamed, size-limited, hashed, written to a temp file and renamed into place,
so a copy that fails midway leaves no partial file.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from .codes import AssetFetchError, AssetMissingError, AssetTooLargeError, SourceNotAllowedError
from .netpolicy import NotAllowed, check_url, pinned
from .request import UnusablePath, is_url, local_source, os_reason
from .settings import SourcePolicy

CHUNK = 256 * 1024
MAX_REDIRECTS = 5
_EXT = re.compile(r"^[a-z0-9]{1,8}$")
DEFAULT_EXT = {"image": "jpg", "video": "mp4"}


@dataclass(frozen=True)
class CopiedFile:
    relative_path: str
    size: int
    sha256: str


def publish_name(ext: str, when: datetime | None = None) -> str:
    """``/YYYY/MM/DD/<unix-ts>.<4 digits>.<random>.<ext>`` (local date, like the legacy paths)."""
    when = when or datetime.now()
    digits = f"{secrets.randbelow(10_000):04d}"
    rand = str(secrets.randbelow(9_000_000_000) + 1_000_000_000)
    return f"/{when:%Y/%m/%d}/{int(when.timestamp())}.{digits}.{rand}.{ext}"


def extension_of(url: str, asset_type: str) -> str:
    name = urlsplit(url).path if is_url(url) else url
    suffix = Path(name).suffix.lower().lstrip(".")
    return suffix if _EXT.match(suffix) else DEFAULT_EXT.get(asset_type, "bin")


def copy_asset(url: str, asset_type: str, policy: SourcePolicy, publish_root: Path, *,
               task_id: int, index: int, on_bytes: Callable[[int], None] | None = None) -> CopiedFile:
    """Copy one source into ``publish_root``; business errors name the asset by ``index``.
    ``on_bytes`` is told the bytes copied so far after every chunk (the job's progress)."""
    params = {"task_id": task_id, "index": index}
    chunks = _http_chunks(url, policy, params) if is_url(url) else _local_chunks(url, policy, params)
    return write_atomically(chunks, publish_root, extension_of(url, asset_type), policy.max_bytes, params,
                            on_bytes=on_bytes)


def write_atomically(chunks: Iterator[bytes], publish_root: Path, ext: str, max_bytes: int,
                     params: dict[str, int], *, on_bytes: Callable[[int], None] | None = None) -> CopiedFile:
    """Stream ``chunks`` to a temp file beside the target, then rename; nothing is left on failure."""
    root = publish_root.resolve()
    for _ in range(5):
        relative = publish_name(ext)
        target = (root / relative.lstrip("/")).resolve()
        if not target.is_relative_to(root):  # pragma: no cover - generated names cannot escape
            raise SourceNotAllowedError.make(reason="target leaves the publish directory", **params)
        if not target.exists():
            break
    else:  # pragma: no cover - five random 14-digit collisions in one second
        raise AssetFetchError.make(reason="no free file name in the publish directory", **params)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    size = 0
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise AssetTooLargeError.make(limit=max_bytes, **params)
                digest.update(chunk)
                out.write(chunk)
                if on_bytes is not None:
                    on_bytes(size)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if temp.exists():
            temp.unlink()
    return CopiedFile(relative_path=relative, size=size, sha256=digest.hexdigest())


def _local_chunks(url: str, policy: SourcePolicy, params: dict[str, int]) -> Iterator[bytes]:
    try:
        path = local_source(url, policy.root)
        if path is None:
            raise SourceNotAllowedError.make(reason="path leaves the source root", **params)
        if not path.is_file():
            raise AssetMissingError.make(reason="no such file under the source root", **params)
        size = path.stat().st_size
    except (UnusablePath, OSError) as exc:  # a loop of symlinks made after submit, no permission…
        raise AssetMissingError.make(reason=str(exc) if isinstance(exc, UnusablePath) else os_reason(exc),
                                     **params) from None
    if size > policy.max_bytes:
        raise AssetTooLargeError.make(limit=policy.max_bytes, **params)
    return _read_file(path, params)


def _read_file(path: Path, params: dict[str, int]) -> Iterator[bytes]:
    try:
        with open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                yield chunk
    except OSError as exc:  # a read error midway: the partial copy is removed by write_atomically
        raise AssetFetchError.make(reason=os_reason(exc), **params) from None


def _http_chunks(url: str, policy: SourcePolicy, params: dict[str, int]) -> Iterator[bytes]:
    import httpx  # only copy-asset workers need it

    deadline = time.monotonic() + policy.timeout * 20
    client = httpx.Client(timeout=httpx.Timeout(policy.timeout), follow_redirects=False)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target, headers, extensions = pinned(
                    check_url(url, schemes=policy.schemes, allow_hosts=policy.allow_hosts))
            except NotAllowed as exc:
                raise SourceNotAllowedError.make(reason=str(exc), **params) from None
            request = client.build_request("GET", target, headers=headers, extensions=extensions)
            try:
                response = client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise AssetFetchError.make(reason=_transport_reason(exc), **params) from None
            if response.is_redirect and "location" in response.headers:
                response.close()
                url = urljoin(url, response.headers["location"])
                continue
            break
        else:
            raise AssetMissingError.make(reason="too many redirects", **params)
    except BaseException:
        client.close()
        raise
    return _stream(client, response, policy, params, deadline)


def _stream(client, response, policy: SourcePolicy, params: dict[str, int], deadline: float) -> Iterator[bytes]:
    import httpx

    try:
        status = response.status_code
        if status >= 500 or status == 429:
            raise AssetFetchError.make(reason=f"HTTP {status}", **params)
        if status != 200:
            raise AssetMissingError.make(reason=f"HTTP {status}", **params)
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > policy.max_bytes:
            raise AssetTooLargeError.make(limit=policy.max_bytes, **params)
        try:
            for chunk in response.iter_bytes(CHUNK):
                if time.monotonic() > deadline:
                    raise AssetFetchError.make(reason="download took too long", **params)
                yield chunk
        except httpx.HTTPError as exc:
            raise AssetFetchError.make(reason=_transport_reason(exc), **params) from None
    finally:
        response.close()
        client.close()


def _transport_reason(exc: Exception) -> str:
    """A short reason without the URL (it may carry tokens in its query string)."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__.replace("Error", " error").strip().lower()
