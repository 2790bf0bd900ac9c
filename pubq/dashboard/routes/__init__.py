"""The dashboard's pages, one module per page family; helpers shared by them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse

if TYPE_CHECKING:
    from ..app import Dashboard


def dash(request: Request) -> Dashboard:
    return request.app.state.dashboard


def int_param(request: Request, name: str, *, minimum: int = 0) -> int | None:
    """An integer query parameter; None when absent; 400 when it is not a number in range."""
    value = request.query_params.get(name, "")
    if value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer (got {value[:40]!r})") from None
    if number < minimum or number > 2**63 - 1:
        raise HTTPException(400, f"{name} must be between {minimum} and 2**63-1")
    return number


def path_id(request: Request, name: str = "job_id") -> int:
    value = request.path_params[name]
    if not value.isdigit() or int(value) < 1 or int(value) > 2**63 - 1:
        raise HTTPException(404, f"No such id: {value[:40]!r}.")
    return int(value)


def back(request: Request, url: str, notice: str, **params: Any) -> RedirectResponse:
    """Where an action sends the browser (303: the next request is a GET), with one line to show,
    signed for this session (:meth:`pubq.dashboard.security.Signer.notice_sig`)."""
    from ..security import session_id

    query = {k: v for k, v in params.items() if v not in (None, "")}
    query["notice"] = notice
    query["sig"] = dash(request).signer.notice_sig(session_id(request), notice)
    return RedirectResponse(f"{url}?{urlencode(query)}", 303)
