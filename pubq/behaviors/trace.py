"""A Python traceback in the shapes yii2-queue prints a PHP exception in.

PHP's ``getTraceAsString()`` lists the calls innermost first, each as ``#i file(line): function()``
(the place of the call and the function called), and ends with ``#N {main}``; the place that threw
is the exception's own ``in file:line``. Python's traceback text has the same facts outermost
first: each ``File "f", line n, in g`` is a line of ``g``. Only the last exception of a chain is
shown (the one that was raised), as PHP shows one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FRAME = re.compile(r'^  File "(?P<file>.*)", line (?P<line>\d+), in (?P<func>.+)$')
_HEADER = "Traceback (most recent call last):"


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    func: str


def frames(traceback: str) -> list[Frame]:
    """The frames of the last traceback in ``traceback`` (Python's text), outermost first."""
    text = traceback or ""
    start = text.rfind(_HEADER)
    if start < 0:
        return []
    out = []
    for line in text[start:].splitlines()[1:]:
        m = _FRAME.match(line)
        if m:
            out.append(Frame(m["file"], int(m["line"]), m["func"]))
        elif line and not line.startswith(" "):  # the exception line: the frames are over
            break
    return out


def origin(traceback: str) -> str:
    """``file:line`` where the error was raised, '' when the traceback is unknown."""
    found = frames(traceback)
    return f"{found[-1].file}:{found[-1].line}" if found else ""


def php_trace(traceback: str) -> list[str]:
    """``#0 file(line): function()`` … ``#N {main}``, innermost call first."""
    found = frames(traceback)
    lines = []
    for i, (caller, callee) in enumerate(reversed(list(zip(found, found[1:], strict=False)))):
        lines.append(f"#{i} {caller.file}({caller.line}): {callee.func}()")
    lines.append(f"#{len(lines)} {{main}}")
    return lines
