"""The publishing config section and publish-request validation."""

from __future__ import annotations

import pytest

from pubq.errors import ConfigError
from pubq.publishing.codes import InvalidRequestError
from pubq.publishing.request import validate_request
from pubq.publishing.settings import load_settings

from .support import make_settings, publishing_config, request_doc


def test_defaults_and_paths_resolve_against_base_dir(tmp_path) -> None:
    settings = load_settings({}, tmp_path)
    assert settings.table_prefix == "pub_" and settings.queues.copy == "copy-asset"
    assert settings.sources.root == (tmp_path / "sources").resolve()
    assert settings.publish_dirs["video"] == (tmp_path / "publish" / "video").resolve()
    assert settings.sources.schemes == {"http", "https"}


@pytest.mark.parametrize("patch,message", [
    ({"bogus": 1}, "publishing.bogus: unknown key"),
    ({"sources": {"max_bytes": "big"}}, "publishing.sources.max_bytes: must be an integer"),
    ({"sources": {"schemes": ["ftp"]}}, "publishing.sources.schemes: only http and https"),
    ({"callback": {"secret": "plaintext"}}, "publishing.callback.secret: must be an environment reference"),
    ({"callback": {"secret": "${PUBQ_SURELY_UNSET_VAR}"}}, "PUBQ_SURELY_UNSET_VAR is not set"),
    ({"channel_types": {"x": {"adapter": "nope"}}}, "publishing.channel_types.x.adapter"),
    ({"channel_types": {"x": {"adapter": "os:path"}}}, "is not a ChannelAdapter subclass"),
    ({"channel_types": {"x": {"adapter": "filesystem", "options": {}}}}, "publishing.channel_types.x.options.dir"),
    ({"channel_types": {"x": {"adapter": "http", "options": {"base_url": "ftp://h"}}}}, "options.base_url"),
    ({"channel_types": {"x": {"adapter": "filesystem", "options": {"dir": "d"},
                              "accounts": [{"id": "a"}, {"id": "a"}]}}}, "accounts[1].id: duplicate"),
    ({"channel_types": {"x": {"adapter": "filesystem", "options": {"dir": "d"},
                              "accounts": [{"id": "a", "credentials": {"token": "literal"}}]}}},
     "accounts[0].credentials.token: must be an environment reference"),
    ({"channel_types": {"x": {"adapter": "filesystem", "options": {"dir": "d"},
                              "rate_limit": {"rate": 0}}}}, "rate_limit.rate: must be greater than 0"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, patch, message) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(publishing_config(tmp_path, **patch), tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_secrets_never_show_in_repr(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PUBQ_TEST_SECRET_X", "s3cr3t-value")
    settings = make_settings(tmp_path, callback={"secret": "${PUBQ_TEST_SECRET_X}"})
    assert settings.callback.secret.reveal() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings.callback.secret)


def test_valid_request(tmp_path) -> None:
    settings = make_settings(tmp_path)
    req = validate_request(request_doc(tmp_path, accounts=["a1", "a2"]), settings)
    assert req.accounts == ("a1", "a2") and req.assets[0].type == "video"


def test_invalid_fields_are_reported_by_path(tmp_path) -> None:
    settings = make_settings(tmp_path)
    doc = request_doc(tmp_path, accounts=["a1", "a1", "zz"], bogus=True)
    doc["assets"].append({"type": "gif", "url": "../../etc/passwd"})
    doc["assets"].append({"type": "image", "url": "ftp://example.com/x.png", "enabled": "yes"})
    doc["callback_url"] = "file:///tmp/x"
    del doc["source"]
    with pytest.raises(InvalidRequestError) as info:
        validate_request(doc, settings)
    problems = info.value.problems
    for expected in ["bogus: unknown field", "source: is required", "accounts[1]: duplicate account 'a1'",
                     "accounts[2]: 'zz' is not configured for channel type douyin",
                     "assets[1].type: must be one of image, video", "assets[1].url: path leaves the source root",
                     "assets[2].enabled: must be true or false", "assets[2].url: scheme 'ftp' is not allowed",
                     "callback_url: must be an http/https URL with a host"]:
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert info.value.exit_code == 2 and info.value.biz_code == 35001


@pytest.mark.parametrize("field,value,message", [
    ("accounts", [], "accounts: must be a non-empty list"),
    ("assets", [], "assets: must be a non-empty list"),
    ("channel_type", "wx", "channel_type: 'wx' is not configured"),
    ("uuid", "has space", "uuid: 'has space' is not valid"),
])
def test_required_shapes(tmp_path, field, value, message) -> None:
    doc = request_doc(tmp_path)
    doc[field] = value
    with pytest.raises(InvalidRequestError) as info:
        validate_request(doc, make_settings(tmp_path))
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems
