"""Publish requests a careless or hostile submitter sends (issue 11): each is an InvalidRequestError
naming the field by its path — through the Python API (``service.submit``) on every publish-state
database, and through ``pubq publish`` (exit 2, one line) — and creates nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pubq.publishing.codes import AssetMissingError, InvalidRequestError
from pubq.publishing.copying import copy_asset
from pubq.publishing.netpolicy import NotAllowed, check_url, is_public
from pubq.publishing.service import PublishingService

from .support import make_settings, request_doc, write_source


def loop_under(root: Path) -> str:
    """Two symbolic links pointing at each other inside the source root; returns the name of one."""
    root.mkdir(parents=True, exist_ok=True)
    for name, target in (("loop-a", "loop-b"), ("loop-b", "loop-a")):
        if not (root / name).is_symlink():
            os.symlink(target, root / name)
    return "loop-a/clip.mp4"


def asset(url: str) -> dict[str, Any]:
    return {"assets": [{"type": "video", "url": url, "enabled": True}]}


BAD: dict[str, tuple[Any, str]] = {
    "NUL in a local asset path": (lambda t: asset("clip\x00.mp4"),
                                  "assets[0].url: must not hold control characters (NUL, line breaks…)"),
    "NUL in an asset URL": (lambda t: asset("http://example.com/a\x00b.mp4"),
                            "assets[0].url: must not hold control characters (NUL, line breaks…)"),
    "a 300-character file name": (lambda t: asset("x" * 300 + ".mp4"),
                                  "assets[0].url: holds a file name longer than 255 bytes"),
    "a loop of symbolic links under the source root": (lambda t: asset(loop_under(t / "sources")),
                                                       "assets[0].url: leads into a loop of symbolic links"),
    "an IPv6 URL that does not close": (lambda t: asset("http://[::1/clip.mp4"),
                                        "assets[0].url: cannot be read (Invalid IPv6 URL)"),
    "a port out of range": (lambda t: asset("http://example.com:99999/clip.mp4"),
                            "assets[0].url: cannot be read (Port out of range 0-65535)"),
    "a lone surrogate in the title": (lambda t: {"title": "bad \udcff title"}, "title: is not valid Unicode text"),
    "NUL in the body": (lambda t: {"body": "body\x00text"}, "body: must not hold control characters"),
    "a line break in the title": (lambda t: {"title": "two\nlines"},
                                  "title: must not hold control characters (NUL, line breaks…)"),
    "a callback URL that cannot be read": (lambda t: {"callback_url": "http://[oops/cb"},
                                           "callback_url: cannot be read (Invalid IPv6 URL)"),
    "a huge number as account": (lambda t: {"accounts": [10**1000]}, "accounts[0]: must be an account id"),
    "a key that is not a string": (lambda t: {1: "x"}, "<int key>: unknown field"),
}


@pytest.mark.parametrize("patch, problem", BAD.values(), ids=list(BAD))
def test_a_bad_request_is_refused_by_field_path_through_the_api(service: PublishingService, tmp_path, patch,
                                                                 problem) -> None:
    before = service.models.Task.select().count()
    doc = request_doc(tmp_path)
    doc.update(patch(tmp_path))
    with pytest.raises(InvalidRequestError) as caught:
        service.submit(doc)
    assert problem in caught.value.problems, caught.value.problems
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert service.models.Task.select().count() == before


def test_a_body_may_hold_line_breaks_and_tabs(service: PublishingService, tmp_path) -> None:
    assert service.submit(request_doc(tmp_path, body="line one\n\tline two\r\n")) > 0


def test_a_symlink_loop_made_after_submit_fails_the_copy_as_a_missing_asset(tmp_path) -> None:
    policy = make_settings(tmp_path).sources
    name = loop_under(tmp_path / "sources")
    with pytest.raises(AssetMissingError, match="loop of symbolic links"):
        copy_asset(name, "video", policy, tmp_path / "publish", task_id=1, index=0)


def test_an_unreadable_source_fails_the_copy_as_a_missing_asset(tmp_path) -> None:
    policy = make_settings(tmp_path).sources
    write_source(tmp_path, "locked.mp4")
    (tmp_path / "sources" / "locked.mp4").chmod(0)
    try:
        if os.geteuid() == 0:  # root reads anything: make the path unreadable another way
            (tmp_path / "sources" / "locked.mp4").unlink()
            (tmp_path / "sources" / "locked.mp4").mkdir()
            (tmp_path / "sources" / "locked.mp4" / "x").write_text("a directory, not a file")
        with pytest.raises(AssetMissingError):
            copy_asset("locked.mp4", "video", policy, tmp_path / "publish", task_id=1, index=0)
    finally:
        target = tmp_path / "sources" / "locked.mp4"
        if target.is_file():
            target.chmod(0o644)


# -- addresses carried inside IPv6 addresses --------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://[2002:7f00:1::1]/x",  # 6to4 of 127.0.0.1
    "http://[2002:a00:1::1]/x",  # 6to4 of 10.0.0.1
    "http://[2002:a9fe:a9fe::1]/latest/meta-data",  # 6to4 of 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x",  # Teredo, client 127.0.0.1
    "http://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
])
def test_addresses_embedded_in_6to4_teredo_and_nat64_are_checked_too(url) -> None:
    with pytest.raises(NotAllowed, match="private or loopback"):
        check_url(url, schemes={"http"}, allow_hosts=())


def test_a_6to4_address_of_a_public_ipv4_address_is_public() -> None:
    import ipaddress

    assert is_public(ipaddress.ip_address("2002:808:808::1"))  # 8.8.8.8
    check_url("http://[2002:808:808::1]/x", schemes={"http"}, allow_hosts=())


@pytest.mark.parametrize("url, reason", [
    ("http://exa\x00mple.com/x", "control characters"),
    ("http://example.com:abc/x", "invalid port"),
    ("http://[::1/x", "cannot be read"),
    ("http://" + "a" * 70 + ".example/x", "cannot be resolved"),
])
def test_a_url_the_policy_cannot_read_is_refused_not_raised(url, reason) -> None:
    with pytest.raises(NotAllowed, match=reason):
        check_url(url, schemes={"http"}, allow_hosts=())


# -- pubq publish FILE ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, write, message", [
    (".json", lambda doc: _json(doc, url="clip\x00.mp4"),
     "invalid publish request: assets[0].url: must not hold control characters (NUL, line breaks…)"),
    (".json", lambda doc: _json(doc, url="y" * 300 + ".mp4"),
     "invalid publish request: assets[0].url: holds a file name longer than 255 bytes"),
    (".json", lambda doc: "[" * 100_000 + "]" * 100_000, "{file}: nested too deeply to read"),
    (".yaml", lambda doc: "a: " + "[" * 100_000 + "]" * 100_000, "{file}: nested too deeply to read"),
], ids=["NUL", "300-character name", "JSON nested 100,000 deep", "YAML nested 100,000 deep"])
def test_pubq_publish_refuses_a_bad_request_in_one_line_with_exit_2(tmp_path, suffix, write, message) -> None:
    from tests.helpers import cli_in_process, write_config

    from .support import publishing_config

    path, _ = write_config(tmp_path, "sqlite", top={"publishing": publishing_config(tmp_path)})
    file = tmp_path / f"request{suffix}"
    file.write_text(write(request_doc(tmp_path)))
    code, out, err = cli_in_process("--config", str(path), "publish", str(file))
    assert (code, out, err) == (2, "", "Error: " + message.format(file=file) + "\n")
    assert cli_in_process("--config", str(path), "task", "show", "1")[0] == 1  # nothing was created


def _json(doc: dict[str, Any], *, url: str) -> str:
    import json

    doc["assets"][0]["url"] = url
    return json.dumps(doc)
