"""System log setup: text or JSON lines on stderr or a file, with secrets redacted.

Tracebacks of failed jobs go here (the ``log`` behaviour); the console shows one line only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from pubq.database import redact_url

#: A URL in a log line (up to the next blank), redacted by :func:`pubq.database.redact_url`, and
#: key=value pairs whose key names a secret.
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.I)
_KV_SECRET = re.compile(r"(?P<k>(?:password|passwd|secret|token|api[_-]?key)\s*[=:]\s*)(?P<v>[^\s,;&'\"]+)", re.I)


def redact(text: str) -> str:
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    return _KV_SECRET.sub(lambda m: f"{m.group('k')}***", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logged as it is
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "pubq", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info:
            data["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, default=str)


_HANDLER_TAG = "_pubq_handler"


def configure_logging(config: Any | None, *, level: str | None = None) -> None:
    """(Re)configure the ``pubq`` logger. ``config`` is a :class:`pubq.config.LogConfig` or None."""
    logger = logging.getLogger("pubq")
    for h in list(logger.handlers):
        if getattr(h, _HANDLER_TAG, False):
            logger.removeHandler(h)
            h.close()
    file = getattr(config, "file", None)
    handler: logging.Handler = logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_TAG, True)
    if getattr(config, "format", "text") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.setLevel(level or getattr(config, "level", None) or "WARNING")
    logger.propagate = False
