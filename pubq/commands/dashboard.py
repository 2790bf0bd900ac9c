"""``pubq dashboard``: serve the web dashboard (needs ``pip install 'pubq[dashboard]'``)."""

from __future__ import annotations

import os

import click

from ..errors import ConfigError, UsageError
from .options import state


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than 127.0.0.1/localhost/::1 needs dashboard.auth in the config.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--read-only", is_flag=True, help="No actions: pages only; every POST is refused (403).")
@click.option("--refresh", type=click.FloatRange(min=0), default=5.0, show_default=True, metavar="S",
              help="Seconds between auto-refreshes of a page (0: off).")
@click.option("--hash-password", is_flag=True,
              help="Read a password (prompted, or from stdin) and print its hash for dashboard.auth.password_hash.")
def dashboard_cmd(host: str, port: int, read_only: bool, refresh: float, hash_password: bool) -> None:
    """Serve the web dashboard: queues, jobs, failed registry, workers and publish tasks.

    \b
      pubq dashboard                      http://127.0.0.1:8080/
      pubq dashboard --read-only          pages only, no buttons
      pubq dashboard --hash-password      make a password_hash for dashboard.auth
    """
    if hash_password:
        from ..dashboard.settings import hash_password as make_hash

        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        click.echo(make_hash(password))
        return
    try:
        import uvicorn

        from ..dashboard import create_app
        from ..dashboard.settings import check_bind, parse_settings
    except ModuleNotFoundError as exc:
        raise UsageError(f"the dashboard needs its extra: pip install 'pubq[dashboard]' ({exc.name} is missing)") \
            from None
    st = state()
    config = st.config
    try:
        settings = parse_settings(config.dashboard, config.source, os.environ)
    except ConfigError:
        raise
    check_bind(host, settings)
    web = create_app(st.app, read_only=read_only, settings=settings, refresh=refresh)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Serving the pubq dashboard on http://{shown}:{port}/{' (read-only)' if read_only else ''}")
    uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False)
