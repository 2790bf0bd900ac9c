"""A job's attempt history as stored by the Redis and db drivers: one JSON list per job.

Each item is ``{attempt, error_class, message, traceback, code, failed_at}``, oldest first, at most
``Policy.history_limit`` of them (see "Attempt history" in :mod:`pubq.drivers.base`).
"""

from __future__ import annotations

import json
from typing import Any

from .records import Attempt, FailureInfo


def items(raw: Any) -> list[dict[str, Any]]:
    """The stored JSON (str, bytes, or NULL/empty) as a list of dicts; a damaged value reads as empty."""
    if not raw:
        return []
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw).decode("utf-8", "replace")
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def attempts(raw: Any) -> tuple[Attempt, ...]:
    """The stored JSON as :class:`Attempt` records, oldest first."""
    return tuple(
        Attempt(attempt=int(e.get("attempt") or 0), error_class=str(e.get("error_class") or ""),
                message=str(e.get("message") or ""), traceback=str(e.get("traceback") or ""),
                code=str(e.get("code") or ""), failed_at=float(e.get("failed_at") or 0))
        for e in items(raw)
    )


def appended(raw: Any, attempt: int, info: FailureInfo, now: float, limit: int) -> str:
    """The stored JSON with one more failed attempt, the newest ``limit`` kept."""
    kept = items(raw)
    kept.append({"attempt": attempt, "error_class": info.error_class, "message": info.message,
                 "traceback": info.traceback, "code": info.code or "", "failed_at": now})
    limit = max(int(limit), 0)
    return json.dumps(kept[len(kept) - limit:] if limit else [])
