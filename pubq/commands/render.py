"""Human output shared by commands (rich; plain text when colour is off)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.text import Text

from ..drivers.records import Counts

INFO_FIELDS = ("waiting", "delayed", "reserved", "done", "failed")


def info_text(counts: Counts, *, paused: bool = False) -> Text:
    """The Yii shape: ``Jobs`` then ``- waiting: N`` … plus pubq's ``- failed: N``, then
    ``- follow-up failed: N`` (raising afterExec/afterError handlers) when there are any, and
    ``- paused: yes`` as the last line while the queue is paused."""
    text = Text("Jobs", style="green")
    rows: list[tuple[str, object]] = [(name, getattr(counts, name)) for name in INFO_FIELDS]
    if counts.follow_up_failed:
        rows.append(("follow-up failed", counts.follow_up_failed))
    if paused:
        rows.append(("paused", "yes"))
    for name, value in rows:
        text.append("\n- ")
        text.append(f"{name}:", style="yellow")
        text.append(f" {value}")
    return text


def render_info(con: Any, counts: Counts, *, paused: bool = False) -> None:
    con.print(info_text(counts, paused=paused))


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def first_line(text: str, width: int = 80) -> str:
    line = (text or "").splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"
