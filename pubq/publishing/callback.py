"""Signed source callbacks.

The body is canonical JSON (sorted keys, no spaces) with every account's current status and the
outbox row's ``event_id`` (stable across retries, so the source can drop duplicates). The header
``X-Pubq-Signature: sha256=<hex>`` is the HMAC-SHA256 of the exact body bytes with the configured
secret. Timeouts, connection errors, 5xx and 429 are retried inside the job (tenacity, exponential
backoff with full jitter, honouring ``Retry-After``) for up to ``callback.max_seconds``; then the job raises
a retryable error. Any other 4xx is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from .codes import CallbackFailedError, CallbackNotAllowedError, CallbackRejectedError
from .netpolicy import NotAllowed, check_url, pinned
from .settings import CallbackSettings

log = logging.getLogger("pubq.publishing")
SIGNATURE_HEADER = "X-Pubq-Signature"
EVENT_HEADER = "X-Pubq-Event-Id"


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """What a source does with our header (constant-time compare)."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class CallbackSender:
    def __init__(self, settings: CallbackSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.sleep = sleep

    def send(self, url: str, payload: dict[str, Any], *, task_id: int) -> int:
        """POST ``payload`` signed; return the HTTP status of the accepted answer."""
        if self.settings.secret is None:
            raise CallbackNotAllowedError.make(task_id=task_id, reason="publishing.callback.secret is not configured")
        try:
            target, host_header, extensions = pinned(
                check_url(url, schemes=self.settings.schemes, allow_hosts=self.settings.allow_hosts))
        except NotAllowed as exc:
            raise CallbackNotAllowedError.make(task_id=task_id, reason=str(exc)) from None
        body = canonical_json(payload)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self.settings.secret.reveal()),
            EVENT_HEADER: str(payload.get("event_id", "")),
            **host_header,
        }
        import httpx  # only the source-callback worker needs it

        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_delay(self.settings.max_seconds),
            wait=_wait(wait_random_exponential(multiplier=0.5, max=8.0), self.settings.max_seconds),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda state: log.info(
                "callback of task %s: attempt %s failed (%s), retrying", task_id, state.attempt_number,
                state.outcome.exception() if state.outcome else "?"),
        )
        with httpx.Client(timeout=httpx.Timeout(self.settings.timeout), follow_redirects=False) as client:
            try:
                return retrying(self._post, client, target, body, headers, extensions)
            except _Transient as exc:
                raise CallbackFailedError.make(reason=str(exc)) from None

    @staticmethod
    def _post(client: Any, url: str, body: bytes, headers: dict[str, str], extensions: dict[str, str]) -> int:
        import httpx

        try:
            response = client.post(url, content=body, headers=headers, extensions=extensions)
        except httpx.TimeoutException:
            raise _Transient("timed out") from None
        except httpx.HTTPError as exc:
            raise _Transient(f"cannot connect ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}", _retry_after(response.headers.get("retry-after")))
        if status >= 400:
            raise CallbackRejectedError.make(status=status)
        return status


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _wait(base: Callable[[RetryCallState], float], cap: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff, but at least the server's Retry-After (capped by the budget)."""

    def wait(state: RetryCallState) -> float:
        delay = base(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return min(delay, cap)

    return wait
