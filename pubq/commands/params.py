"""Click parameter types that hold a CLI number to its one documented range (:mod:`pubq.bounds`).

Every number or id a command takes goes through :class:`Bounded`: a value out of range, not a
number, ``inf``, ``nan``, ``1e300`` or ``10**23`` is a :class:`~pubq.errors.UsageError` naming the
option and the range (one line, exit 2), in the same words config load and push use, before any
backend sees it. So no input reaches a driver as an OverflowError or a database's range error.
"""

from __future__ import annotations

from typing import Any

import click

from ..bounds import Bound
from ..errors import UsageError


class Bounded(click.ParamType):
    """A number in ``bound``'s range. ``label`` names it in messages (default: the option's flag)."""

    def __init__(self, bound: Bound, label: str | None = None) -> None:
        self.bound = bound
        self.label = label
        self.name = "integer" if bound.integer else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        label = self.label or (param.opts[0] if param is not None and param.opts else self.bound.name)
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):  # a default
                return self.bound.check(value, label)
            return self.bound.parse(str(value), label)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def __repr__(self) -> str:
        return f"Bounded({self.bound.name})"

