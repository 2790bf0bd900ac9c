"""What running one job produced, in this process or reported by an isolated child."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .drivers.base import FailureInfo
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
        error_class=error_name(error), message=str(error), traceback=traceback, code=error_code(error),
        retry_delay=retry_delay,
    )
