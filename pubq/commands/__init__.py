"""The ``pubq`` command: one click group per configured queue plus the built-in commands.

Errors are rendered here and only here: one ``Error: …`` line on stderr, exit 1 (runtime) or 2
(usage/config), no traceback unless ``--debug``.
"""

from __future__ import annotations

import difflib
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import click

from .. import __version__
from ..errors import PubqError
from .options import BUILTINS, CliState, HelpGroup, translate_yii_args

PUBLISHING_REGISTRAR = "pubq.commands.publishing"


def _root_state(ctx: click.Context) -> CliState:
    """The CLI state, with the root options applied (click resolves sub-commands before the callback)."""
    st = ctx.ensure_object(CliState)
    root = ctx.find_root()
    if st.config_path is None and root.params.get("config_path"):
        st.config_path = root.params["config_path"]
    if root.params.get("debug"):
        st.debug = True
    if st.color is None and root.params.get("color") is not None:
        st.color = root.params["color"]
    return st


class RootGroup(HelpGroup):
    """Resolves queue names from the config on demand."""

    def _publishing(self) -> dict[str, click.Command]:
        cached = getattr(self, "_pub_cmds", None)
        if cached is not None:
            return cached
        cmds: dict[str, click.Command] = {}
        try:
            import importlib

            module = importlib.import_module(PUBLISHING_REGISTRAR)
        except ModuleNotFoundError:
            module = None
        if module is not None:
            holder = click.Group()
            module.register(holder)
            cmds = dict(holder.commands)
        self._pub_cmds = cmds
        return cmds

    def _builtin(self, name: str) -> click.Command | None:
        ref = BUILTINS.get(name)
        if ref is not None:
            import importlib

            module, _, attr = ref.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self._publishing().get(name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(BUILTINS) | set(self._publishing())
        try:
            names |= set(_root_state(ctx).config.queues)
        except PubqError:
            pass
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = self._builtin(cmd_name)
        if cmd is not None:
            return cmd
        config = _root_state(ctx).config  # a config error surfaces here, rendered once by main()
        if cmd_name in config.queues:
            from .queue_group import make_queue_group

            return make_queue_group(cmd_name, config.queues[cmd_name])
        return None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else None
        cmd = self.get_command(ctx, name) if name else None
        if cmd is None and name is not None and not name.startswith("-"):
            raise click.UsageError(self._unknown(ctx, name, args[1:]))
        return super().resolve_command(ctx, args)

    def _unknown(self, ctx: click.Context, name: str, rest: list[str]) -> str:
        """What to say about an unknown first word: a close name, or the Yii route spelled pubq's way."""
        queues = list(_root_state(ctx).config.queues)
        group, slash, action = name.partition("/")
        if slash and group and action:  # yii queue/run muscle memory
            target = group if group in queues else _closest(group, queues)
            if target is not None:
                return f"Unknown command {name!r}. Did you mean {shlex.join(['pubq', target, action, *rest])!r}?"
            return (f"Unknown command {name!r}: pubq takes the queue and the action as two words, "
                    f"'pubq QUEUE {action}' (queues: {', '.join(queues) or 'none'}).")
        match = _closest(name, self.list_commands(ctx))
        hint = f" Did you mean {match!r}?" if match else ""
        return f"Unknown queue or command {name!r} (queues: {', '.join(queues) or 'none'}).{hint}"


def _closest(word: str, choices: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="FILE", envvar=None,
              help="Config file (default: $PUBQ_CONFIG, else ./pubq.yaml, else the built-in SQLite pipeline).")
@click.option("--debug/--no-debug", default=False, help="Show tracebacks of unexpected errors.")
@click.option("--color/--no-color", "color", default=None, help="Force colours on or off.")
@click.version_option(__version__, "--version", prog_name="pubq")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool, color: bool | None) -> None:
    """pubq: job queues and the publishing pipeline.

    \b
      pubq copy-asset run --verbose --isolate     drain the queue, then exit
      pubq copy-asset listen 30                   work forever
      pubq upload-asset info                      counts (also: pubq upload-asset)
    """
    st = _root_state(ctx)
    st.config_path = config_path
    st.debug = debug
    st.color = color
    ctx.call_on_close(lambda: [close() for close in reversed(st.closers)])


def _setup_logging(state: CliState) -> None:
    from ..logs import configure_logging

    try:
        configure_logging(state.config.log if state._config is not None else None)
    except PubqError:
        configure_logging(None)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or "--debug=1" in args
    try:
        args = translate_yii_args(args)
        state = CliState()
        from ..logs import configure_logging

        configure_logging(None)
        rv = cli.main(args=args, prog_name="pubq", standalone_mode=False, obj=state)
        code = rv if isinstance(rv, int) else 0
    except PubqError as exc:
        if debug:
            logging.getLogger("pubq").exception("debug traceback")
        _error(str(exc))
        code = exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        code = 0
    except click.UsageError as exc:
        _error(exc.format_message())
        code = 2
    except click.Abort:
        _error("Aborted.")
        code = 1
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        _error(exc.format_message())
        code = exc.exit_code
    except KeyboardInterrupt:
        _error("Interrupted.")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors are rendered
        if debug:
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        code = 1
    sys.exit(code)


def _error(message: str) -> None:
    text = " ".join(message.strip().splitlines()) or "unknown error"
    if not text.startswith("Error:"):
        text = f"Error: {text}"
    click.echo(text, err=True)
