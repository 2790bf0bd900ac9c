"""Human output shared by commands (rich; plain text when colour is off)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.text import Text

from ..drivers.base import Counts

INFO_FIELDS = ("waiting", "delayed", "reserved", "done", "failed")


def render_info(con: Any, counts: Counts, *, paused: bool = False) -> None:
    """The Yii shape: ``Jobs`` then ``- waiting: N`` … plus ``- failed: N`` (and ``- paused: yes``
    as an extra last line while the queue is paused)."""
    con.print(Text("Jobs", style="green"))
    for name in INFO_FIELDS:
        line = Text("- ")
        line.append(f"{name}:", style="yellow")
        line.append(f" {getattr(counts, name)}")
        con.print(line)
    if paused:
        line = Text("- ")
        line.append("paused:", style="yellow")
        line.append(" yes")
        con.print(line)


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def first_line(text: str, width: int = 80) -> str:
    line = (text or "").splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"
