"""Shared CLI plumbing: Yii-style booleans, colour, the lazily loaded app, console output."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from ..errors import UsageError

#: Built-in commands, module:attribute, loaded on demand so a worker imports only what it runs.
BUILTINS: dict[str, str] = {
    "queues": "pubq.commands.admin:queues_cmd",
    "init": "pubq.commands.admin:init_cmd",
    "db": "pubq.commands.admin:db_group",
    "jobs": "pubq.commands.admin:jobs_cmd",
    "workers": "pubq.commands.ops:workers_cmd",
    "health": "pubq.commands.ops:health_cmd",
    "metrics": "pubq.commands.ops:metrics_group",
    "schedule": "pubq.commands.schedule:schedule_group",
    "dashboard": "pubq.commands.dashboard:dashboard_cmd",
}
#: Every name a queue may not take: built-in commands, and those planned so that no user queue
#: ends up shadowing one later.
BUILTIN_NAMES = frozenset(BUILTINS) | frozenset({
    "help", "worker", "workers", "jobs", "health", "metrics", "schedule", "dashboard",
})
#: Boolean options that also accept Yii's ``--name=value`` spelling.
YII_BOOLEANS = ("verbose", "isolate", "color", "interactive", "debug", "json", "yes")
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}
_YII_RE = re.compile(r"^--({})=(.*)$".format("|".join(YII_BOOLEANS)))


def parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE and v != "":
        return False
    raise UsageError(f"Invalid value for --{name}: {value!r} (use 1/0, true/false or yes/no)")


def translate_yii_args(argv: Sequence[str]) -> list[str]:
    """``--isolate=0`` → ``--no-isolate``, ``--verbose=1`` → ``--verbose``; strict about values.

    Yii casts ``--isolate=false`` to true (a non-empty string); pubq refuses anything it cannot read.
    """
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        m = _YII_RE.match(arg)
        if m:
            name, value = m.group(1), m.group(2)
            if name == "interactive":
                out.append("--interactive" if parse_bool(name, value) else "--no-interactive")
            else:
                out.append(f"--{name}" if parse_bool(name, value) else f"--no-{name}")
        else:
            out.append(arg)
    return out


class HelpGroup(click.Group):
    """A group whose ``--help`` shows each command's first sentence whole: click cuts summaries at
    the terminal's width (``…``), mid-sentence."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@dataclass
class CliState:
    """What the root group parsed; the app is loaded on first use so ``--help`` needs nothing."""

    config_path: str | None = None
    debug: bool = False
    color: bool | None = None
    _app: Any = None
    _config: Any = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def config(self) -> Any:
        if self._config is None:
            from ..config import load_config
            from ..logs import configure_logging

            self._config = load_config(self.config_path, preset=cli_preset())
            # One-shot commands keep stderr to their one line unless a log file is configured;
            # workers switch to the configured level when they start.
            log = self._config.log
            configure_logging(log, level=None if log.file else "ERROR")
        return self._config

    @property
    def app(self) -> Any:
        if self._app is None:
            from ..app import App

            self._app = App(self.config)
            self.closers.append(self._app.close)
        return self._app

    def use_color(self, local: bool | None = None, stream: Any = None) -> bool:
        choice = local if local is not None else self.color
        if choice is not None:
            return choice
        if os.environ.get("NO_COLOR"):
            return False
        stream = stream or sys.stdout
        return bool(getattr(stream, "isatty", lambda: False)())


def cli_preset() -> Any:
    """The publishing preset, with every built-in command name reserved (no queue may take one)."""
    from ..publishing.preset import publishing_preset

    return publishing_preset(BUILTIN_NAMES)


def state() -> CliState:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:  # invoked without the root group (tests of a sub-command)
        obj = ctx.ensure_object(CliState)
    return obj


def current_queue() -> Any:
    """The Queue whose group this command runs under (``pubq QUEUE …``)."""
    ctx: click.Context | None = click.get_current_context()
    while ctx is not None and ctx.parent is not None and ctx.parent.parent is not None:
        ctx = ctx.parent
    if ctx is None or ctx.info_name is None:
        raise UsageError("no queue given")
    return state().app.queue(ctx.info_name)


def console(color: bool, *, stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output has no width to respect: do not cut table cells at rich's default 80 columns.
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return Console(
        file=stream,
        width=None if tty or os.environ.get("COLUMNS") else 200,
        force_terminal=color or None,  # colour off still lets rich see a terminal (rich.live redraws)
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        soft_wrap=True,
        emoji=False,
        markup=False,
    )


def color_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--color/--no-color", "color", default=None,
        help="Force colours on or off (default: only on a terminal). Yii spelling --color=0 works too.",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(fn)


def emit_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def confirm(question: str) -> bool:
    """Yii's prompt: yes/y/no/n in any case, empty means no, anything else asks again."""
    while True:
        click.echo(f"{question} (yes|no) [no]:", nl=False)
        line = sys.stdin.readline()
        if not line:  # end of input: no
            click.echo("")
            return False
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
