"""JSON for job payloads, through the json module's C encoder and scanner directly.

Why: a worker woken for one job, and a producer pushing one now and then, run this code with cold
caches, and there the Python layers around the C code cost more than the C code: ``json.loads``
of a small payload took ~75 µs after 40 ms idle on the benchmark machine where the bare C scanner
took ~43 µs, and ``JSONEncoder.encode`` ~68 µs against ~47 µs for a C encoder built once
(bench/README.md, "Pickup latency"). Results and errors are exactly the json module's: anything
the fast path does not take as it is (not an object, trailing text, any error) goes through
``json.loads`` again, which then decides.
"""

from __future__ import annotations

import json
from json import decoder as _decoder
from json import encoder as _encoder
from json import scanner as _scanner
from typing import Any

_PLAIN = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_c_encoder = getattr(_encoder, "c_make_encoder", None)
_c_scanner = getattr(_scanner, "c_make_scanner", None)
#: Built once and shared (the json module shares its default scanner across threads the same way):
#: no circular check (a cycle raises RecursionError, as a too-deep object does), NaN refused.
_encode = (_c_encoder(None, _PLAIN.default, _encoder.encode_basestring, None, ":", ",", False, False, False)
           if _c_encoder is not None else None)
_scan = _c_scanner(_decoder.JSONDecoder()) if _c_scanner is not None else None


def dumps(obj: Any) -> str:
    """Compact JSON, non-ASCII kept, NaN and infinities refused (ValueError), like ``_PLAIN.encode``."""
    if _encode is None or isinstance(obj, str):
        return _PLAIN.encode(obj)
    return "".join(_encode(obj, 0))


def loads(data: bytes) -> Any:
    """``json.loads(data)``, with the C scanner called directly for a UTF-8 JSON object."""
    if _scan is not None and data[:1] == b"{":
        try:
            text = data.decode("utf-8", "surrogatepass")
            value, end = _scan(text, 0)
        except (ValueError, StopIteration):
            return json.loads(data)  # the json module's own error (or a UTF-16/32 text)
        if end == len(text) or not text[end:].strip(" \t\n\r"):
            return value
    return json.loads(data)
