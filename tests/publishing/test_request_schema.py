"""The publish request's JSON Schema (shipped in the package) and the real validator agree: on
required fields, types, enums, patterns and limits; and every example people are shown (the docs,
README, ``pubq publish --example``) passes both."""

from __future__ import annotations

import copy
import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pubq.commands.publishing_init import create_publishing_files, publishing_section
from pubq.publishing.codes import InvalidRequestError
from pubq.publishing.request import validate_request
from pubq.publishing.request_doc import SCHEMA_FILE, example_request, request_schema
from pubq.publishing.settings import ASSET_TYPES, PublishingSettings, load_settings
from tests.helpers import ROOT

from .support import make_settings, write_source

SCHEMA = request_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
#: Marks a fenced block in the docs as a publish request (an HTML comment: invisible on the site).
MARKER = "<!-- publish-request -->"


@pytest.fixture
def settings(tmp_path: Path) -> PublishingSettings:
    """Channel type ``douyin`` with accounts a1, a2 and a numeric id 7; a video under the source root."""
    write_source(tmp_path)
    return make_settings(tmp_path, channel_types={"douyin": {
        "adapter": "filesystem", "options": {"dir": str(tmp_path / "platform")},
        "accounts": [{"id": a} for a in ("a1", "a2", "7")]}})


def valid() -> dict[str, Any]:
    return {"uuid": "u-1", "source": "vms", "channel_type": "douyin", "callback_url": "https://example.com/cb",
            "title": "A video", "body": "Body", "accounts": ["a1", "a2"],
            "assets": [{"type": "video", "url": "clip.mp4", "enabled": True}]}


def accepted(doc: Any, settings: PublishingSettings) -> bool:
    try:
        validate_request(doc, settings)
    except InvalidRequestError:
        return False
    return True


def assert_agree(doc: Any, settings: PublishingSettings) -> None:
    by_schema = VALIDATOR.is_valid(doc)
    assert by_schema == accepted(doc, settings), (
        f"schema says {'valid' if by_schema else 'invalid'}, validator disagrees: {doc!r}")


#: Values of every JSON type but strings.
NOT_STRINGS = [None, 7, 1.5, True, [], {}]
#: (field, values) whose acceptance depends on nothing in the config.
MUTATIONS: list[tuple[str, list[Any]]] = [
    ("uuid", [*NOT_STRINGS, "", "a", "-a", "a" * 64, "a" * 65, "a b", "a:b", "a/b", "é", "A_b.c-d:9"]),
    ("source", [*NOT_STRINGS, "", "cms", "-cms", "c" * 64, "c" * 65, "a:b", "a b"]),
    ("channel_type", NOT_STRINGS),
    ("callback_url", NOT_STRINGS),
    ("title", [*NOT_STRINGS, "", "t" * 512, "t" * 513]),
    ("body", NOT_STRINGS),
    ("accounts", [None, "a1", {}, [], ["a1", "a1"], ["a1", 7], [7], [-7], [True], [1.5], [None], [["a1"]],
                  ["a 1"], ["-a1"]]),
    ("assets", [None, {}, [], ["clip.mp4"], [None]]),
]
ASSET_MUTATIONS: list[tuple[str, list[Any]]] = [
    ("type", [None, "audio", "Video", 1, ["video"], *ASSET_TYPES]),
    ("url", [None, 1, "", " ", "\t", "https://example.com/" + "x" * 2028, "https://example.com/" + "x" * 2029,
             "https://example.com/a.mp4"]),
    ("enabled", [None, 0, 1, "true", "yes", True, False]),
]


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_file_is_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["pubq.publishing"]
    assert any(fnmatch.fnmatch(SCHEMA_FILE, p) for p in patterns)
    assert (ROOT / "pubq" / "publishing" / SCHEMA_FILE).is_file()


def test_a_valid_request_passes_both(settings):
    assert VALIDATOR.is_valid(valid()) and accepted(valid(), settings)


@pytest.mark.parametrize("field", sorted(SCHEMA["properties"]))
def test_a_field_is_required_by_the_schema_exactly_when_the_validator_requires_it(settings, field):
    doc = valid()
    del doc[field]
    assert accepted(doc, settings) == (field not in SCHEMA["required"])
    assert_agree(doc, settings)


@pytest.mark.parametrize("field, values", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_types_patterns_and_limits_of_each_field_agree(settings, field, values):
    for value in values:
        doc = valid()
        doc[field] = value
        assert_agree(doc, settings)


@pytest.mark.parametrize("field, values", ASSET_MUTATIONS, ids=[m[0] for m in ASSET_MUTATIONS])
def test_types_and_enums_of_each_asset_field_agree(settings, field, values):
    for value in values:
        doc = valid()
        doc["assets"][0][field] = value
        assert_agree(doc, settings)
        del doc["assets"][0][field]
        assert_agree(doc, settings)


def test_unknown_fields_are_refused_by_both(settings):
    doc = valid()
    doc["priority"] = 1
    assert_agree(doc, settings)
    doc = valid()
    doc["assets"][0]["size"] = 1
    assert_agree(doc, settings)
    assert_agree([valid()], settings)
    assert_agree("uuid: u-1", settings)


def test_the_asset_type_enum_is_the_validators():
    assert SCHEMA["properties"]["assets"]["items"]["properties"]["type"]["enum"] == list(ASSET_TYPES)


# -- the examples people are shown -----------------------------------------------------------------


def init_settings(tmp_path: Path) -> PublishingSettings:
    """The settings of the ``publishing:`` section ``pubq init`` writes, with the files it creates."""
    create_publishing_files(tmp_path)
    return load_settings(yaml.safe_load(publishing_section())["publishing"], tmp_path)


def documented_requests() -> list[tuple[str, Any]]:
    """Every fenced block marked as a publish request in README.md and docs/*.md."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in re.finditer(re.escape(MARKER) + r"\s*```(\w+)\n(.*?)```", text, re.S):
            found.append((f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}",
                          yaml.safe_load(match.group(2))))  # YAML reads JSON too
    return found


def test_the_docs_show_requests_in_json_and_yaml():
    assert len(documented_requests()) >= 3


@pytest.mark.parametrize("where, doc", documented_requests(), ids=[w for w, _ in documented_requests()])
def test_every_documented_request_passes_the_validator_and_the_schema(tmp_path, where, doc):
    request = validate_request(copy.deepcopy(doc), init_settings(tmp_path))  # raises on any problem
    assert request.uuid == doc["uuid"] and list(request.accounts) == [str(a) for a in doc["accounts"]]
    assert list(VALIDATOR.iter_errors(doc)) == []


def test_the_example_for_the_init_config_passes_both(tmp_path):
    doc, notes = example_request(init_settings(tmp_path))
    assert notes == []
    validate_request(doc, init_settings(tmp_path))
    VALIDATOR.validate(doc)


def test_the_example_names_a_file_of_each_type_under_the_source_root(settings, tmp_path):
    (tmp_path / "sources" / "img").mkdir()
    (tmp_path / "sources" / "img" / "cover.JPG").write_bytes(b"jpeg")
    (tmp_path / "sources" / ".hidden.png").write_bytes(b"png")
    doc, notes = example_request(settings)
    assert notes == []
    assert doc["channel_type"] == "douyin" and doc["accounts"] == ["a1", "a2", "7"]
    assert doc["assets"] == [{"type": "image", "url": "img/cover.JPG", "enabled": True},
                             {"type": "video", "url": "clip.mp4", "enabled": True}]
    validate_request(doc, settings)
    VALIDATOR.validate(doc)
    assert example_request(settings)[0]["uuid"] != doc["uuid"]
