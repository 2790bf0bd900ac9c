"""Fuzzing the publish request (issue 11) on every publish-state database: whatever document
``service.submit`` gets, it creates a task or raises ``InvalidRequestError``/``DuplicateTaskError``
(one line) and creates nothing — never another exception."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pubq.errors import PubqError
from pubq.publishing.codes import DuplicateTaskError, InvalidRequestError
from pubq.publishing.service import PublishingService

from .support import request_doc

#: PUBQ_FUZZ_EXAMPLES=N explores N random examples instead of the fixed ones.
FUZZ = settings(max_examples=int(os.environ.get("PUBQ_FUZZ_EXAMPLES", 100)), deadline=None,
                derandomize=not os.environ.get("PUBQ_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.just(10**400) | st.floats()
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)

TEXT = st.one_of(st.text(max_size=20), st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
                 st.sampled_from(["x\x00y", "\udcff", "a\nb", "x" * 300, " ", "..", "../etc/passwd", "/etc/passwd"]))
URL = st.one_of(
    TEXT,
    st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}",
              st.sampled_from(["http", "https", "ftp", "file", "HTTP", ""]),
              st.sampled_from(["127.0.0.1", "[::1]", "[2002:7f00:1::1]", "[::1", "example.com:99999", "a\x00b",
                               "localhost", "0", "[64:ff9b::7f00:1]", "h" * 300]),
              TEXT),
    st.sampled_from(["clip.mp4", "loop-a/clip.mp4", "y" * 300 + ".mp4", "sub/../clip.mp4", "clip.mp4\x00.txt"]),
)
ASSET = st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["video", "image", "gif"]), "url": URL},
                                        optional={"enabled": st.one_of(st.booleans(), TEXT)}),
                  JSON_VALUE)
PATCH = st.fixed_dictionaries({}, optional={
    "uuid": st.one_of(TEXT, JSON_VALUE), "source": st.one_of(st.just("vms"), TEXT), "title": TEXT,
    "body": st.one_of(TEXT, JSON_VALUE), "callback_url": URL, "channel_type": st.one_of(st.just("douyin"), TEXT),
    "accounts": st.one_of(st.lists(st.one_of(st.sampled_from(["a1", "a2", "a9"]), TEXT,
                                             st.integers(min_value=-(2**70), max_value=2**70)), max_size=3),
                          JSON_VALUE),
    "assets": st.one_of(st.lists(ASSET, max_size=3), JSON_VALUE),
    "extra": JSON_VALUE,
})


@pytest.mark.held("copy-asset")  # a valid request creates its task; its pipeline need not run here
def test_no_publish_request_ends_in_anything_but_a_task_or_an_invalid_request_error(
        service: PublishingService, tmp_path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir(exist_ok=True)
    for name, target in (("loop-a", "loop-b"), ("loop-b", "loop-a")):
        if not (sources / name).is_symlink():
            os.symlink(target, sources / name)
    Task = service.models.Task

    @FUZZ
    @given(patch=PATCH)
    def run(patch: dict[str, Any]) -> None:
        doc: Any = request_doc(tmp_path)
        doc.update(patch)
        before = Task.select().count()
        try:
            task_id = service.submit(doc)
        except (InvalidRequestError, DuplicateTaskError) as exc:
            assert "\n" not in str(exc) and exc.exit_code in (1, 2)
            assert Task.select().count() == before
        except PubqError as exc:  # pragma: no cover - shown with the document that caused it
            raise AssertionError(f"{type(exc).__name__}: {exc} for {doc!r}") from exc
        else:
            assert isinstance(task_id, int) and Task.select().count() == before + 1

    run()
