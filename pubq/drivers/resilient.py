"""A driver wrapper that rides out backend outages: log, back off, reconnect, go on (spec §5.10).

One-shot commands give up after ``give_up_after`` seconds (10 by default) with one error line;
``listen`` passes None and never gives up. Each wrapped call is one atomic driver step, so retrying
it after a connection error is safe except for a step that landed just before the connection broke:
a guarded step that then answers False on the retry is reported as done (its first try landed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..errors import BackendUnavailableError, DriverError

log = logging.getLogger("pubq.driver")

#: Steps guarded by (job id, attempt): False after a retried error means "the first try landed".
_GUARDED = frozenset({"ack", "retry_later", "fail", "settle", "release"})
#: Methods that are safe to pass straight through (no I/O or no retry wanted).
_PASSTHROUGH = frozenset({"close", "channel", "runs_inline", "failed_limit", "follow_up_limit"})


class ResilientDriver:
    def __init__(
        self,
        driver: Any,
        *,
        give_up_after: float | None = 10.0,
        max_backoff: float = 30.0,
        abort: Callable[[], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = driver
        self.give_up_after = give_up_after
        self.max_backoff = max_backoff
        self.abort = abort
        self._sleep = sleep

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name in _PASSTHROUGH or not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, target, args, kwargs)

        call.__name__ = name
        self.__dict__[name] = call  # built once per method, not per call (the worker's hot path)
        return call

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("inner", "give_up_after", "max_backoff", "abort", "_sleep"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def _call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        started = time.monotonic()
        delay = 0.1
        failed_once = False
        while True:
            try:
                result = fn(*args, **kwargs)
            except DriverError as exc:
                waited = time.monotonic() - started
                if self.give_up_after is not None and waited >= self.give_up_after:
                    raise BackendUnavailableError(
                        f"{getattr(self.inner, 'channel', '?')}: backend unavailable for {waited:.0f} s: {exc}"
                    ) from exc
                if self.abort is not None and self.abort():
                    raise
                if not failed_once:
                    log.warning("backend error in %s (%s); retrying with backoff", name, exc)
                failed_once = True
                pause = delay
                if self.give_up_after is not None:
                    pause = min(pause, max(0.05, self.give_up_after - waited))
                self._sleep(pause)
                delay = min(delay * 2, self.max_backoff)
                continue
            if failed_once:
                log.warning("backend is back; %s succeeded after retrying", name)
                if name in _GUARDED and result is False:
                    return True
            return result
