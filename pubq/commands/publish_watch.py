"""``pubq publish FILE --wait``: watch a task's accounts until none has a pipeline step left.

It only reads publish state (polling it); the workers do the work. With ``sync`` queues the
pipeline ran inside ``publish`` and the first look is final; with ``db`` or ``redis`` queues the
workers run elsewhere (``pubq QUEUE listen`` in other terminals, systemd, cron).

On a terminal a live table (rich ``Live``) shows each account moving through pending → releasing
→ under review / failed / published, with a progress bar. Off a terminal it prints one line per
change, then the final table. Either way the last thing printed is the accounts' summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.text import Text

from ..errors import PubqError
from ..publishing.vocabulary import AccountStatus
from .tables import Rows, is_terminal

#: An account in one of these statuses has no pipeline step left (a review result comes by `task sync`).
SETTLED = frozenset({AccountStatus.FAILED, AccountStatus.UNDER_REVIEW, AccountStatus.PUBLISHED,
                     AccountStatus.REJECTED})
#: Width of the progress bar, in cells.
BAR = 30
#: Seconds between two looks at publish state.
POLL = 0.25


class WaitTimeoutError(PubqError):
    """``--wait`` gave up; the task goes on."""


def settled(accounts: list[dict[str, Any]]) -> int:
    return sum(1 for a in accounts if a["status"] in SETTLED)


def status_rows(accounts: list[dict[str, Any]]) -> Rows:
    rows = Rows("Account", "Status", "Item", "Error", text=("Error",))
    for a in accounts:
        error = f"{a['code']} {a['message']}" if a["status"] == AccountStatus.FAILED and a["code"] else ""
        rows.add(a["account"], f"{a['status']} {AccountStatus.label_of(a['status'])}", a["item_id"] or "-", error)
    return rows


def watch(read: Callable[[], list[dict[str, Any]]], con: Console, *, summary: Callable[[list[dict[str, Any]]], str],
          waiting_hint: str, timeout: float, show: str = "", sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """Poll ``read`` (the task's accounts) until every account is settled; returns them.

    Raises :class:`WaitTimeoutError` after ``timeout`` seconds (naming the ``show`` command). ``waiting_hint`` tells, while
    nothing is final, who does the work (the workers).
    """
    started = time.monotonic()
    deadline = started + timeout
    accounts = read()
    live = _LiveView(con, waiting_hint, started) if is_terminal(con) else _ChangeLog(con)
    with live:
        while True:
            live.update(accounts)
            if settled(accounts) == len(accounts):
                return accounts
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(f"gave up waiting after {timeout:g} s: {summary(accounts)}; "
                                       f"the task goes on{f' ({show})' if show else ''}")
            sleep(POLL)
            accounts = read()


class _LiveView:
    """A table and a progress bar, redrawn in place."""

    def __init__(self, con: Console, hint: str, started: float) -> None:
        from rich.live import Live

        self.con = con
        self.hint = hint
        self.started = started
        self.color = not con.no_color and con.color_system is not None
        self.live = Live(console=con, auto_refresh=False, transient=False, redirect_stdout=False,
                         redirect_stderr=False)

    def __enter__(self) -> _LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)

    def update(self, accounts: list[dict[str, Any]]) -> None:
        done, total = settled(accounts), len(accounts)
        table = Text.from_ansi(status_rows(accounts).render(width=self.con.size.width, color=self.color).rstrip("\n"))
        filled = BAR * done // max(total, 1)
        bar = Text("━" * filled, style="green")
        bar.append("─" * (BAR - filled), style="dim")
        bar.append(f" {done} of {total} account{'s' if total != 1 else ''} done · "
                   f"{time.monotonic() - self.started:.0f} s")
        parts: list[Any] = [table, Text(""), bar]
        if done < total:
            parts.append(Text(self.hint, no_wrap=False, overflow="fold"))
        self.live.update(Group(*parts), refresh=True)


class _ChangeLog:
    """Off a terminal: one line per account whose status changed, then the final table."""

    def __init__(self, con: Console) -> None:
        self.con = con
        self.seen: dict[str, int] = {}
        self.last: list[dict[str, Any]] = []

    def __enter__(self) -> _ChangeLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.last:
            self.con.print()
            status_rows(self.last).print(self.con)

    def update(self, accounts: list[dict[str, Any]]) -> None:
        self.last = accounts
        for a in accounts:
            before = self.seen.get(a["account"])
            if before == a["status"]:
                continue
            now = AccountStatus.label_of(a["status"])
            change = now if before is None else f"{AccountStatus.label_of(before)} → {now}"
            self.con.print(f"{time.strftime('%H:%M:%S')} {a['account']}: {change}")
            self.seen[a["account"]] = a["status"]
