"""What running one job produced, in this process or reported by an isolated child."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .drivers.records import FailureInfo
from .errors import error_code, error_name


@dataclass
class Outcome:
    """The result of ``execute``: success with its result, or the error and its traceback."""

    ok: bool
    result: Any = None
    error: BaseException | None = None
    traceback: str = ""
    #: Seconds the job ran.
    duration: float | None = None
    #: Peak RSS of the process that ran the job, in MiB, when known.
    memory_mib: float | None = None


def failure_info(error: BaseException, traceback: str = "", retry_delay: float | None = None) -> FailureInfo:
    """The stored record of a failed attempt."""
    return FailureInfo(
        error_class=storable(error_name(error)), message=storable(error_message(error)),
        traceback=storable(traceback), code=storable(error_code(error)), retry_delay=retry_delay,
    )


def error_message(error: BaseException) -> str:
    """``str(error)``, or a placeholder when the error's own ``__str__`` raises (a job's exception
    class may be as broken as its data)."""
    try:
        return str(error)
    except Exception as exc:  # noqa: BLE001
        return f"<{type(error).__name__} whose message cannot be shown: {type(exc).__name__}>"


def storable(text: str) -> str:
    """``text`` as every backend can store it: PostgreSQL refuses NUL in text, and a lone surrogate
    (from bytes decoded with ``surrogateescape``) has no UTF-8 form. A job's error message is bad
    input like any other: it must not stop the worker from recording the failure (#11)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
