"""Copying sources into the publish directory: atomic, size-limited, no traversal, no private hosts."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from pubq.publishing.codes import (
    AssetFetchError,
    AssetMissingError,
    AssetTooLargeError,
    SourceNotAllowedError,
)
from pubq.publishing.copying import copy_asset, publish_name, write_atomically
from pubq.publishing.netpolicy import NotAllowed, check_url

from .httpserver import Reply, ScriptedServer, cut
from .support import make_settings


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def policy(tmp_path):
    return make_settings(tmp_path).sources


def test_publish_name_has_the_legacy_shape() -> None:
    assert re.match(r"^/\d{4}/\d{2}/\d{2}/\d{10}\.\d{4}\.\d{10}\.png$", publish_name("png"))


def test_local_copy_records_path_size_and_sha256(tmp_path, policy) -> None:
    data = b"x" * 300_000
    (tmp_path / "sources" / "dir").mkdir(parents=True)
    (tmp_path / "sources" / "dir" / "pic.PNG").write_bytes(data)
    out = tmp_path / "publish"

    copied = copy_asset("dir/pic.PNG", "image", policy, out, task_id=1, index=0)

    assert copied.size == len(data) and copied.sha256 == hashlib.sha256(data).hexdigest()
    assert copied.relative_path.endswith(".png")
    assert (out / copied.relative_path.lstrip("/")).read_bytes() == data
    assert [p.name.endswith(".part") for p in files_under(out)] == [False]


@pytest.mark.parametrize("url", ["../outside.mp4", "/etc/passwd", "dir/../../outside.mp4", "link.mp4"])
def test_paths_leaving_the_source_root_are_refused(tmp_path, policy, url) -> None:
    (tmp_path / "outside.mp4").write_bytes(b"secret")
    (tmp_path / "sources" / "dir").mkdir(parents=True)
    (tmp_path / "sources" / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    with pytest.raises(SourceNotAllowedError, match="leaves the source root"):
        copy_asset(url, "video", policy, tmp_path / "publish", task_id=1, index=0)
    assert not files_under(tmp_path / "publish")


def test_missing_local_file_is_a_permanent_error(tmp_path, policy) -> None:
    with pytest.raises(AssetMissingError):
        copy_asset("nope.mp4", "video", policy, tmp_path / "publish", task_id=1, index=2)


def test_too_large_local_file_leaves_nothing(tmp_path) -> None:
    policy = make_settings(tmp_path, sources={"max_bytes": 1000}).sources
    (tmp_path / "sources" / "big.mp4").write_bytes(b"x" * 1001)
    with pytest.raises(AssetTooLargeError, match="larger than the limit of 1000 bytes"):
        copy_asset("big.mp4", "video", policy, tmp_path / "publish", task_id=1, index=0)
    assert not files_under(tmp_path / "publish")


def test_a_copy_failing_midway_leaves_no_partial_file(tmp_path) -> None:
    def chunks():
        yield b"a" * 1000
        raise OSError("disk went away")

    with pytest.raises(OSError):
        write_atomically(chunks(), tmp_path / "publish", "mp4", 10_000, {"task_id": 1, "index": 0})
    assert not files_under(tmp_path / "publish")


def test_stream_over_the_limit_is_cut_and_removed(tmp_path) -> None:
    chunks = iter([b"a" * 600, b"b" * 600])
    with pytest.raises(AssetTooLargeError):
        write_atomically(chunks, tmp_path / "publish", "mp4", 1000, {"task_id": 1, "index": 0})
    assert not files_under(tmp_path / "publish")


def test_http_copy_streams_from_an_allowed_host(tmp_path, policy) -> None:
    data = b"v" * 700_000
    with ScriptedServer(lambda r: Reply(200, data)) as srv:
        copied = copy_asset(f"{srv.url}/media/clip.MP4?sig=abc", "video", policy, tmp_path / "publish",
                            task_id=1, index=0)
    assert copied.size == len(data) and copied.relative_path.endswith(".mp4")


def test_http_redirect_is_followed_and_rechecked(tmp_path, policy) -> None:
    def behaviour(req):
        if req.path.startswith("/old"):
            return Reply(302, headers={"Location": "/new.png"})
        return Reply(200, b"png")

    with ScriptedServer(behaviour) as srv:
        copied = copy_asset(f"{srv.url}/old", "image", policy, tmp_path / "publish", task_id=1, index=0)
    assert copied.size == 3


def test_http_body_cut_midway_leaves_no_partial_file(tmp_path, policy) -> None:
    def body():
        yield b"x" * 100_000
        cut()

    with ScriptedServer(lambda r: Reply(200, body(), headers={"Content-Length": "500000"})) as srv:
        with pytest.raises(AssetFetchError):
            copy_asset(f"{srv.url}/clip.mp4", "video", policy, tmp_path / "publish", task_id=1, index=0)
    assert not files_under(tmp_path / "publish")


def test_http_too_large_by_content_length(tmp_path) -> None:
    policy = make_settings(tmp_path, sources={"max_bytes": 10, "allow_hosts": ["127.0.0.1"]}).sources
    with ScriptedServer(lambda r: Reply(200, b"x" * 11)) as srv:
        with pytest.raises(AssetTooLargeError):
            copy_asset(f"{srv.url}/clip.mp4", "video", policy, tmp_path / "publish", task_id=1, index=0)
    assert not files_under(tmp_path / "publish")


@pytest.mark.parametrize("status,error", [(404, AssetMissingError), (503, AssetFetchError)])
def test_http_errors(tmp_path, policy, status, error) -> None:
    with ScriptedServer(lambda r: Reply(status, b"no")) as srv:
        with pytest.raises(error, match=f"HTTP {status}"):
            copy_asset(f"{srv.url}/clip.mp4", "video", policy, tmp_path / "publish", task_id=1, index=0)


def test_private_and_loopback_hosts_are_refused_unless_allowed(tmp_path) -> None:
    policy = make_settings(tmp_path, sources={"allow_hosts": []}).sources
    with ScriptedServer(lambda r: Reply(200, b"data")) as srv:
        with pytest.raises(SourceNotAllowedError, match="private or loopback"):
            copy_asset(f"{srv.url}/clip.mp4", "video", policy, tmp_path / "publish", task_id=1, index=0)
        assert srv.requests == []  # refused before connecting


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/x", "http://192.168.1.1/x", "http://169.254.169.254/latest/meta-data",
    "http://[::1]/x", "http://0.0.0.0/x", "http://localhost/x", "http://[::ffff:127.0.0.1]/x",
])
def test_netpolicy_refuses_non_public_addresses(url) -> None:
    with pytest.raises(NotAllowed):
        check_url(url, schemes={"http", "https"}, allow_hosts=())


def test_netpolicy_allows_listed_networks_and_refuses_schemes() -> None:
    check_url("http://10.1.2.3/x", schemes={"http"}, allow_hosts=("10.0.0.0/8",))
    check_url("http://8.8.8.8/x", schemes={"http"}, allow_hosts=())
    with pytest.raises(NotAllowed, match="scheme 'ftp'"):
        check_url("ftp://8.8.8.8/x", schemes={"http"}, allow_hosts=())


class Rebinding:
    """getaddrinfo for ``rebind.test``: loopback on the first lookup, an unchecked address after."""

    def __init__(self, real) -> None:
        self.real, self.lookups = real, 0

    def __call__(self, host, port, *args, **kwargs):
        if host != "rebind.test":
            return self.real(host, port, *args, **kwargs)
        self.lookups += 1
        address = "127.0.0.1" if self.lookups == 1 else "192.0.2.1"  # TEST-NET-1: never checked
        return self.real(address, port, *args, **kwargs)


def test_a_source_is_fetched_from_the_address_that_was_checked_not_a_second_lookup(tmp_path, policy,
                                                                                   monkeypatch) -> None:
    import dataclasses
    import socket

    resolver = Rebinding(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    policy = dataclasses.replace(policy, allow_hosts=("127.0.0.0/8",), timeout=2)
    with ScriptedServer(lambda r: Reply(200, b"pinned")) as srv:
        port = srv.httpd.server_address[1]
        copied = copy_asset(f"http://rebind.test:{port}/a.png", "image", policy, tmp_path / "publish",
                            task_id=1, index=0)
    assert copied.size == len(b"pinned")
    assert resolver.lookups == 1
    assert srv.requests[0].headers["host"] == f"rebind.test:{port}"


def test_copy_reports_the_bytes_copied_after_every_chunk(tmp_path, policy) -> None:
    from pubq.publishing.copying import CHUNK

    data = b"y" * (CHUNK * 2 + 10)
    (tmp_path / "sources").mkdir(exist_ok=True)
    (tmp_path / "sources" / "big.mp4").write_bytes(data)
    seen: list[int] = []
    copied = copy_asset("big.mp4", "video", policy, tmp_path / "publish", task_id=1, index=0, on_bytes=seen.append)
    assert seen == [CHUNK, CHUNK * 2, len(data)] and copied.size == len(data)
