"""The web dashboard (``pubq dashboard``): server-rendered pages of the queues, the failed registry,
the workers and the publish state, with POST-only actions guarded by CSRF tokens.

Needs the ``dashboard`` extra (Starlette, Jinja2, uvicorn); nothing here is imported by the core.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(app: Any, **kwargs: Any) -> Any:
    """See :func:`pubq.dashboard.app.create_app` (imported lazily: the extra may not be installed)."""
    from .app import create_app as make

    return make(app, **kwargs)
