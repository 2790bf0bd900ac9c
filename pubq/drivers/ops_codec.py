"""Small encodings the drivers share for the operations API (progress values, cancel records)."""

from __future__ import annotations

import json

from .records import CANCELLED_CODE

#: Longest progress message kept (characters); longer ones are cut.
PROGRESS_MESSAGE_MAX = 200
#: The error class a cancel records (``pubq.errors.JobCancelledError``; drivers do not import errors' classes).
CANCELLED_CLASS = "JobCancelledError"


def clamp_fraction(fraction: float) -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        return 0.0
    if value != value:  # NaN
        return 0.0
    return min(max(value, 0.0), 1.0)


def progress_value(fraction: float, message: str) -> str:
    """``"fraction|message"`` as stored (Redis hash value)."""
    return f"{clamp_fraction(fraction):.4f}|{(message or '')[:PROGRESS_MESSAGE_MAX]}"


def parse_progress(raw: bytes | str | None) -> tuple[float | None, str]:
    if not raw:
        return None, ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    head, _, message = text.partition("|")
    try:
        return float(head), message
    except ValueError:
        return None, ""


def cancel_failure(reason: str) -> str:
    """The failure record of a cancelled waiting/delayed job (the Redis failinfo JSON)."""
    return json.dumps({"error_class": CANCELLED_CLASS, "message": reason, "traceback": "", "code": CANCELLED_CODE,
                       "retry_delay": None})
