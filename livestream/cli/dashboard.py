"""``livestream dashboard APP``: serve a script or notebook's dashboard with a Bokeh server.

The script (``app.py``), notebook (``app.ipynb``) or Bokeh app directory runs
once per browser session, as under ``bokeh serve``; the dashboard it marks with
``dash.servable()`` becomes that session's document. Registered as a plug-in
command of :mod:`livestream.cli`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click
from tornado.process import task_id

__all__ = ["dashboard", "make_server"]


def make_server(app_path: str, *, host: str = "127.0.0.1", port: int = 5006,
                allow_websocket_origin: tuple[str, ...] = (), num_procs: int = 1,
                session_expiry: float = 2.0, prefix: str = "/", args: tuple[str, ...] = ()
                ) -> tuple[Any, str, list[str]]:
    """A Bokeh ``Server`` (not started) serving ``app_path`` at ``prefix``; its URL and
    WebSocket origin allowlist."""
    from bokeh.command.util import build_single_handler_application
    from bokeh.server.server import Server

    from ..dashboard.server import (
        default_origins,
        ensure_local_resources,
        pick_port,
        session_options,
    )

    path = Path(app_path)
    if not path.exists():
        raise click.BadParameter(f"no such file or directory: {app_path}",
                                 param_hint="'APP'")
    ensure_local_resources()
    app = build_single_handler_application(str(path), list(args))
    if port == 0:
        port = pick_port(host)
    origins = list(allow_websocket_origin) or default_origins(host, port)
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    command = os.getpid()
    server = Server({prefix: app}, port=port, address=host, allow_websocket_origin=origins,
                    num_procs=num_procs, **session_options(session_expiry))
    if num_procs != 1 and task_id() is not None:  # a worker forked by Tornado
        _stop_with(command, server)
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host
    return server, f"http://{shown}:{port}{prefix}", origins


#: how often a worker of ``--num-procs`` looks whether the command is still there (s)
PARENT_CHECK_INTERVAL = 0.5


def _stop_with(command: int, server: Any) -> None:
    """In a worker forked for ``--num-procs``: stop serving once the command's process
    (``command``, the one that forked it) is gone. Tornado's parent process does not
    pass a SIGTERM on to its workers, so without this they went on serving, orphaned."""
    from tornado.ioloop import PeriodicCallback

    def check() -> None:
        if os.getppid() != command:
            with contextlib.suppress(Exception):
                server.stop()
            server.io_loop.stop()

    def start() -> None:
        check()  # the command may be gone already
        PeriodicCallback(check, PARENT_CHECK_INTERVAL * 1000).start()

    server.io_loop.add_callback(start)


@click.command("dashboard")
@click.argument("app", type=click.Path(exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=5006, show_default=True,
              help="TCP port (0 picks a free one).")
@click.option("--allow-websocket-origin", "origins", multiple=True, metavar="HOST[:PORT]",
              help="Host a browser may load the dashboard from, as the browser sees it "
                   "(repeatable), e.g. desk.example.com:443 behind a proxy. Default: "
                   "localhost:PORT and 127.0.0.1:PORT. Other origins are refused (HTTP 403).")
@click.option("--num-procs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Worker processes (0: one per CPU). Bokeh supports this on Linux/macOS "
                   "only, not on Windows; each process has its own sessions and "
                   "connections.")
@click.option("--session-expiry", type=float, default=2.0, show_default=True,
              metavar="SECONDS",
              help="Release a session's views and subscriptions this long after its "
                   "page closed.")
@click.option("--show/--no-show", default=False, show_default=True,
              help="Open the dashboard in a browser.")
@click.option("--args", "app_args", multiple=True, metavar="ARG",
              help="sys.argv entries for the app script (repeatable).")
def dashboard(app: str, host: str, port: int, origins: tuple[str, ...], num_procs: int,
              session_expiry: float, show: bool, app_args: tuple[str, ...]) -> None:
    """Serve the dashboard of APP (app.py, app.ipynb or a Bokeh app directory).

    APP runs once per browser session, as under `bokeh serve`; the dashboard it
    marks with `dash.servable()` is shown, and closing the page closes the
    subscriptions the session opened. `bokeh serve app.py` serves the same
    script. BokehJS is served by this server (no CDN).

    \b
        import livestream as ls
        conn = ls.connect("ws://127.0.0.1:8765/ws")
        trades = conn.subscribe("trades")
        ls.Dashboard([trades.chart(x="ts", y="price", by="symbol")]).servable()
    """
    if session_expiry <= 0:
        raise click.BadParameter("must be greater than 0", param_hint="'--session-expiry'")
    try:
        server, url, allowed = make_server(app, host=host, port=port,
                                           allow_websocket_origin=origins,
                                           num_procs=num_procs, session_expiry=session_expiry,
                                           args=app_args)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: "
                                   f"{exc.strerror or exc}") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    server.start()
    click.echo(f"livestream dashboard {Path(app).name}")
    click.echo(f"  URL      {url}")
    click.echo(f"  origins  {', '.join(allowed)}")
    click.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()
    if show:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.run_until_shutdown()
    except KeyboardInterrupt:
        pass
    finally:
        if not getattr(server, "_stopped", False):
            with contextlib.suppress(Exception):
                server.stop()
    click.echo("stopped.")
