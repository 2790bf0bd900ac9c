"""Tables for people: ids and times are never cut, free text wraps, piped output has no padding.

Every table of the CLI goes through :class:`Rows`. Its columns are *keys* (ids, times, names,
states, counts: what people copy into the next command) or *text* (messages, reasons). A key is
never wrapped, cut or ellipsized. On a terminal the text columns get the width that is left and
wrap in it; when the keys alone do not fit, each row is printed as a block of ``Header  value``
lines instead (psql's expanded display), so nothing is cut on an 80-column terminal either.
Off a terminal (a pipe, a file) the width is ignored: one line per row, columns aligned, and no
line ends in spaces.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

#: Columns are separated by this many spaces.
GAP = 2
#: A text column narrower than this (or than its longest cell) is unreadable: use records instead.
TEXT_MIN = 20
#: Trailing blanks of a rendered line, before any closing colour codes.
_TRAILING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$")


def _width(cell: str) -> int:
    return max((cell_len(line) for line in cell.splitlines()), default=0)


def is_terminal(con: Console) -> bool:
    """Whether ``con`` writes to a terminal (with or without colour)."""
    return bool(getattr(con.file, "isatty", lambda: False)())


class Rows:
    """A table being filled: ``Rows("ID", "Job", "Error", text=("Error",))``, ``add(...)``, ``print(con)``."""

    def __init__(self, *headers: str, text: Iterable[str] = (), right: Iterable[str] = ()) -> None:
        self.headers = headers
        text, right = set(text), set(right)
        unknown = (text | right) - set(headers)
        if unknown:
            raise ValueError(f"unknown columns: {sorted(unknown)}")
        self.text = [h in text for h in headers]
        self.right = [h in right for h in headers]
        self.rows: list[tuple[str, ...]] = []

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"{len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(tuple("" if c is None else str(c) for c in cells))

    def __len__(self) -> int:
        return len(self.rows)

    def widths(self) -> list[int]:
        """Each column's natural width: its widest cell or header."""
        return [max([_width(h), *(_width(r[i]) for r in self.rows)]) for i, h in enumerate(self.headers)]

    def fits(self, width: int) -> bool:
        """Whether every key keeps its full width and every text column gets a readable one."""
        need = sum(w if not t else min(w, TEXT_MIN) for w, t in zip(self.widths(), self.text, strict=True))
        return need + GAP * (len(self.headers) - 1) <= width

    # -- rendering ---------------------------------------------------------------------------------

    def render(self, *, width: int | None, color: bool) -> str:
        """The table as text: at ``width`` columns (a terminal), or at its natural width (None)."""
        natural = sum(self.widths()) + GAP * (len(self.headers) - 1)
        if width is not None and natural > width and not self.fits(width):
            return self._records(width, color)
        table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, GAP, 0, 0),
                      header_style="bold" if color else "", expand=False)
        for i, header in enumerate(self.headers):
            justify = "right" if self.right[i] else "left"
            if self.text[i]:
                table.add_column(header, justify=justify, overflow="fold")
            else:
                table.add_column(header, justify=justify, no_wrap=True, overflow="ignore",
                                 min_width=self.widths()[i])
        for row in self.rows:
            table.add_row(*row)
        return _plain_render(table, width or natural + GAP, color)

    def _records(self, width: int, color: bool) -> str:
        """One block per row, ``Header  value`` lines (empty cells left out), blank lines between."""
        label = max(_width(h) for h in self.headers)
        blocks = []
        for row in self.rows:
            grid = Table(box=None, pad_edge=False, show_edge=False, show_header=False, padding=(0, GAP, 0, 0),
                         expand=False)
            grid.add_column(no_wrap=True, min_width=label, style="bold" if color else "")
            grid.add_column(overflow="fold")
            for header, cell in zip(self.headers, row, strict=True):
                if cell:
                    grid.add_row(header, cell)
            blocks.append(_plain_render(grid, width, color))
        return "\n".join(blocks)

    def print(self, con: Console) -> None:
        """Print to ``con``'s stream: at the terminal's width on a terminal, else at natural width."""
        width = con.size.width if is_terminal(con) else None
        color = not con.no_color and con.color_system is not None
        con.file.write(self.render(width=width, color=color))
        con.file.flush()


def _plain_render(renderable: Any, width: int, color: bool) -> str:
    """Render at ``width`` and strip every line's trailing blanks."""
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=color, no_color=not color,
            color_system="standard" if color else None, highlight=False, markup=False, emoji=False,
            legacy_windows=False).print(renderable)
    return "".join(_TRAILING.sub(r"\1", line) + "\n" for line in out.getvalue().splitlines())
