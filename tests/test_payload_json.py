"""pubq.payload_json gives exactly the json module's results and errors, on any input."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pubq import payload_json

PLAIN = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(), inner, max_size=4)),
                      max_leaves=20)


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        result = fn(value)
    except Exception as exc:  # noqa: BLE001 - the comparison is of the errors too
        return type(exc).__name__, str(exc)
    return "ok", result


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (the stdlib reads "NaN" as a float nan)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return a == b and type(a) is type(b)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), values, max_size=5))
def test_dumps_is_the_plain_encoder(obj: dict[str, Any]) -> None:
    assert outcome(payload_json.dumps, obj) == outcome(PLAIN.encode, obj)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), values, max_size=5), st.sampled_from(["", " ", "\n", " x", "}", ",1", "\x00"]),
       st.sampled_from(["", " ", "\t\n"]))
def test_loads_is_json_loads_on_objects_with_anything_around_them(obj: dict[str, Any], tail: str, lead: str) -> None:
    text = json.dumps(obj, ensure_ascii=False) if not _has_nan(obj) else json.dumps(obj)
    data = (lead + text + tail).encode("utf-8", "surrogatepass")
    got, want = outcome(payload_json.loads, data), outcome(json.loads, data)
    assert got[0] == want[0] and (same(got[1], want[1]) if got[0] == "ok" else got[1] == want[1])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40).map(lambda b: b"{" + b))
def test_loads_is_json_loads_on_any_bytes_that_start_like_an_object(data: bytes) -> None:
    got, want = outcome(payload_json.loads, data), outcome(json.loads, data)
    assert got[0] == want[0] and (same(got[1], want[1]) if got[0] == "ok" else got[1] == want[1])


def test_loads_takes_utf16_and_bom_payloads_as_json_loads_does() -> None:
    for data in ('{"a": "é"}'.encode("utf-16"), b'\xef\xbb\xbf{"a": 1}', '{"a":1}'.encode("utf-32-le")):
        assert outcome(payload_json.loads, data) == outcome(json.loads, data)


def test_a_cycle_and_a_nan_are_refused() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    assert outcome(payload_json.dumps, cyclic)[0] == "RecursionError"
    assert outcome(payload_json.dumps, {"x": float("nan")}) == outcome(PLAIN.encode, {"x": float("nan")})


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False
