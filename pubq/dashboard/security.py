"""Sessions, CSRF tokens, auth and read-only mode, as one ASGI middleware.

A session is a random id in a signed, HttpOnly, SameSite=Strict cookie; the signing key is made per
process, so restarting the dashboard ends every session. A form's CSRF token is an HMAC of the
session id: a token from one session is refused in another. Every POST must carry it (checked by
:func:`check_csrf` in the action routes, which parse the form); in read-only mode every POST is
refused with 403 before any route runs. The one-line notice an action leaves for the next page
travels in the redirect's query string with a signature bound to the session (``notice``, ``sig``):
a page shows it only when the signature is this session's, so a link cannot show text of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .settings import DashboardSettings, verify_password

COOKIE = "pubq_dashboard"


class Signer:
    """Signs session ids and derives their CSRF tokens, with a key made once per process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def cookie_value(self, sid: str) -> str:
        return f"{sid}.{self._mac('session', sid)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The id of a cookie this process signed; None for anything else."""
        if not cookie or "." not in cookie:
            return None
        sid, _, mac = cookie.rpartition(".")
        return sid if hmac.compare_digest(mac, self._mac("session", sid)) else None

    def csrf_token(self, sid: str) -> str:
        return self._mac("csrf", sid)

    def notice_sig(self, sid: str, notice: str) -> str:
        """The signature of a flash line for one session: a crafted link cannot put text on a page."""
        return self._mac("notice", f"{sid}:{notice}")[:32]

    def notice_ok(self, sid: str | None, notice: str, sig: str) -> bool:
        return bool(sid) and bool(notice) and hmac.compare_digest(sig.encode(),
                                                                  self.notice_sig(sid or "", notice).encode())

    def csrf_ok(self, sid: str | None, token: str) -> bool:
        return bool(sid) and hmac.compare_digest(token.encode(), self.csrf_token(sid or "").encode())


def _authorized(request: Request, settings: DashboardSettings) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if settings.token and scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), settings.token.encode())
    if settings.username and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), settings.username.encode()) and verify_password(
            password, settings.password_hash)
    return False


class SecurityMiddleware:
    """Auth (when configured), read-only refusal of POSTs, and the session cookie."""

    def __init__(self, app: ASGIApp, *, signer: Signer, settings: DashboardSettings, read_only: bool) -> None:
        self.app = app
        self.signer = signer
        self.settings = settings
        self.read_only = read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.settings.auth_configured and not _authorized(request, self.settings):
            challenge = 'Basic realm="pubq dashboard"' if self.settings.username else "Bearer"
            response: Response = PlainTextResponse("Authentication required.", 401,
                                                   headers={"WWW-Authenticate": challenge})
            await response(scope, receive, send)
            return
        if self.read_only and request.method not in ("GET", "HEAD"):
            await PlainTextResponse("The dashboard is read-only.", 403)(scope, receive, send)
            return
        sid = self.signer.session_id(request.cookies.get(COOKIE))
        fresh = sid is None
        if fresh:
            sid = secrets.token_urlsafe(18)
        scope.setdefault("state", {})["session_id"] = sid

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _security_headers()
                if fresh:
                    cookie: SimpleCookie = SimpleCookie()
                    cookie[COOKIE] = self.signer.cookie_value(sid)
                    cookie[COOKIE].update({"httponly": True, "samesite": "Strict", "path": "/"})
                    headers.append((b"set-cookie", cookie.output(header="").strip().encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _security_headers() -> list[tuple[bytes, bytes]]:
    """Nothing is loaded from elsewhere, no page may be framed, nothing leaks in a Referer."""
    return [
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]


def session_id(request: Request) -> str:
    return request.scope.get("state", {}).get("session_id", "")


async def check_csrf(request: Request) -> dict[str, Any]:
    """The POSTed form, once its CSRF token is checked; a 403 response is raised as an exception."""
    from starlette.exceptions import HTTPException

    form = await request.form()
    token = str(form.get("csrf", ""))
    signer: Signer = request.app.state.dashboard.signer
    if not signer.csrf_ok(session_id(request), token):
        raise HTTPException(403, "Missing or invalid CSRF token: reload the page and try again.")
    return {k: str(v) for k, v in form.items()}
