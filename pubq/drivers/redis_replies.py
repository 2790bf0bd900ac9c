"""What the Redis driver makes of Redis's replies: errors mapped to pubq's typed errors, and the
rows its scripts return turned into the contract's records (kept apart so redis.py stays the driver).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from ..errors import BackendDataError, BackendUnavailableError, ConfigError, DriverError
from .base import FailureInfo, Reservation
from .ops_codec import parse_progress

#: Replies of a command (or of a script's call) that refused a value: bad input, never an outage.
_VALUE_REFUSED = re.compile(
    r"not an integer|not a valid float|not a float|out of range|is negative|no integer representation"
    r"|invalid expire time", re.IGNORECASE)


_ERRORS = (redis.RedisError, RedisClusterException)
#: Replies of a server older than 6.2 (no BLMOVE, no RPOP count): refused, never retried.
_TOO_OLD = re.compile(r"unknown command .?blmove|wrong number of arguments for .?rpop", re.IGNORECASE)
#: Replies of a server that cannot take the write *now* (a failover in progress): an outage.
_FAILING_OVER = re.compile(r"^(READONLY|UNBLOCKED|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|LOADING|MOVED|ASK)\b")


def _wrap(exc: Exception, channel: str) -> DriverError:
    # whoever shows the message names the queue (ResilientDriver's label): only the backend here
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, RedisClusterException)):
        return BackendUnavailableError(f"redis: {exc}")
    if isinstance(exc, redis.ResponseError) and (
            _FAILING_OVER.match(str(exc)) or isinstance(exc, (redis.exceptions.ClusterError,
                                                               redis.exceptions.ReadOnlyError))):
        return BackendUnavailableError(f"redis: {exc}")
    if isinstance(exc, redis.ResponseError) and _TOO_OLD.search(str(exc)):
        raise ConfigError("the redis driver needs Redis >= 6.2 (BLMOVE, RPOP with a count); this server "
                          f"answered: {str(exc).splitlines()[0]}") from exc
    if isinstance(exc, redis.ResponseError) and _VALUE_REFUSED.search(str(exc)):
        return BackendDataError(f"redis refused a value: {str(exc).splitlines()[0]}")
    return DriverError(f"redis: {exc}")


def _reservation(row: Sequence[Any]) -> Reservation:
    """``{id, payload, attempt, ttr, deadline, token, priority, pushed_at[, why unreadable]}`` as the
    scripts return it."""
    return Reservation(
        job_id=int(row[0]), payload=row[1], attempt=int(row[2]), ttr=int(row[3]),
        deadline=float(row[4]), token=int(row[5]), priority=int(row[6]), pushed_at=float(row[7]),
        unreadable=_text(row[8]) if len(row) > 8 else "",
    )


def _live(holder: bytes, progress: bytes, cancel: int, reason: bytes) -> dict[str, Any]:
    """The JobInfo fields of a reservation's holder, progress and cancel request."""
    fraction, message = parse_progress(progress)
    return {"holder": holder.decode("utf-8", "replace"), "progress": fraction, "progress_message": message,
            "cancel_reason": reason.decode("utf-8", "replace") if cancel == 1 else None}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _meta(raw: bytes) -> list[bytes]:
    """``state|attempt|ttr|priority|pushed_at|seq|deadline|lease`` (see lua/_lib.lua)."""
    return raw.split(b"|")


def _meta_numbers(raw: bytes) -> tuple[int, int, int, float]:
    """(attempt, ttr, priority, pushed_at) of a packed meta, 0 for a field that does not parse: a
    meta written by hand or by another version must not break a listing (#11)."""
    fields = raw.split(b"|") if raw else []
    out: list[float] = []
    for index, kind in ((1, int), (2, int), (3, int), (4, float)):
        try:
            out.append(kind(fields[index]))
        except (IndexError, ValueError):
            out.append(0)
    return int(out[0]), int(out[1]), int(out[2]), float(out[3])


def _record(raw: bytes | None) -> dict[str, Any]:
    """A stored JSON record; one that does not parse is shown as such instead of breaking a read."""
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return {"error_class": "?", "message": f"unreadable record: {_text(raw or b'')[:200]}"}
    return data if isinstance(data, dict) else {"message": f"unreadable record: {_text(raw or b'')[:200]}"}


def _failure_record(info: FailureInfo) -> str:
    return json.dumps({
        "error_class": info.error_class, "message": info.message, "traceback": info.traceback,
        "code": info.code, "retry_delay": info.retry_delay,
    })
