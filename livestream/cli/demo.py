"""``livestream demo``: a server with simulated live feeds, a stats table and a dashboard."""

from __future__ import annotations

import collections
import errno
import sys
import time
from typing import Any

import click

from .._version import __version__
from ._common import CLIError, _console, _positive, _setup_logging, log
from .serve import _print_urls, _server_options, _start_server, _wait

RATE_WINDOW = 3.0  # seconds over which the demo table computes rows/s


def _stats_table(srv: Any, prev: dict[str, collections.deque], feeds: Any) -> Any:
    """A rich table of per-topic rows, rows/s and subscribers (computed on the loop)."""
    from rich.table import Table

    from ..loop import run_in_loop

    def collect() -> list[tuple[str, str, int, int, int]]:
        core = srv.core
        out = []
        for name in sorted(core.backplane.names()):
            t = core.backplane.get(name)
            if t is None:
                continue
            info = t.info()
            out.append((name, info["mode"], info["rows"], info["next_offset"],
                        len(core.subscribers.get(name, ()))))
        return out

    rows = run_in_loop(srv.loop, collect, timeout=5.0)
    now = time.monotonic()
    table = Table(title=f"livestream demo — {srv.url}", title_justify="left")
    table.add_column("topic")
    table.add_column("kind")
    table.add_column("rows held", justify="right")
    table.add_column("offset", justify="right")
    table.add_column("rows/s", justify="right")
    table.add_column("subscribers", justify="right")
    for name, mode, held, offset, subs in rows:
        hist = prev.setdefault(name, collections.deque())
        hist.append((now, offset))
        while len(hist) > 2 and now - hist[1][0] >= RATE_WINDOW:
            hist.popleft()  # rows/s over the last few seconds, not one jittery refresh
        t0, o0 = hist[0]
        rate = (offset - o0) / (now - t0) if now > t0 else 0.0
        table.add_row(name, mode, f"{held:,}", f"{offset:,}", f"{rate:,.0f}", str(subs))
    m = srv.metrics
    table.caption = (f"connections {m.connections} · rows sent {m.rows_sent:,} · "
                     f"published {feeds.rows:,} rows in {feeds.ticks:,} ticks · Ctrl-C to stop")
    return table


@click.command()
@_server_options
@click.option("--rate", type=float, default=200.0, show_default=True, callback=_positive,
              help="Rows per second for each simulated feed (trades, chat, telemetry).")
@click.option("--duration", type=float, default=None, callback=_positive, metavar="SECONDS",
              help="Stop by itself after this many seconds.")
@click.option("--seed", type=int, default=None, help="Random seed (repeatable data).")
@click.option("--feed", "feeds", type=click.Choice(["trading", "chat", "game"]),
              multiple=True, help="Which use cases to simulate (repeatable; default all).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=5006,
              show_default=True,
              help="Port of the demo dashboard (a Bokeh server app; 0 picks a free one; "
                   "a free one is also used when the default is busy).")
@click.option("--dashboard/--no-dashboard", "with_dashboard", default=True, show_default=True,
              help="Serve the demo dashboard (one panel per use case).")
def demo(rate: float, duration: float | None, seed: int | None, feeds: tuple[str, ...],
         dashboard_port: int, with_dashboard: bool, log_level: str, **kw: Any) -> None:
    """Run a server with simulated live feeds, and show per-topic stats.

    \b
    trading  trades (ts, symbol, price, size, side), quotes (keyed by symbol),
             bars_1s (derived 1-second OHLC bars, keyed by ts + symbol)
    chat     chat (ts, room, user, text)
    game     telemetry (ts, player, x, y, hp), scores (keyed by player)

    A dashboard of the feeds (a Bokeh server app) is served on a second port
    (--dashboard-port); its URL is printed.
    """
    from rich.live import Live

    from ..demo import run_demo_feeds

    _setup_logging(log_level)
    srv = _start_server(kw)
    try:
        feed = run_demo_feeds(srv, rate, seed=seed, feeds=feeds or ("trading", "chat", "game"))
    except BaseException:  # KeyboardInterrupt too: SIGTERM may come at any moment
        srv.close()
        raise
    dash = None
    if with_dashboard:
        try:
            dash = _start_demo_dashboard(srv, feed, kw, dashboard_port)
        except BaseException:
            feed.stop()
            srv.close()
            raise
    console = _console()
    prev: dict[str, collections.deque] = {}
    try:
        _print_urls(console, srv, f"livestream {__version__} demo")
        if dash is not None:
            console.print(f"  Dashboard  {dash.url}")
        console.print(f"Topics: {', '.join(feed.topics)}")
        console.print("In a notebook:  import livestream as ls; "
                      f"ls.connect({srv.url!r}).subscribe('trades').df")
        sys.stdout.flush()
        if console.is_terminal:
            with Live(_stats_table(srv, prev, feed), console=console, auto_refresh=False) as live:
                _wait(srv, duration,
                      tick=lambda: live.update(_stats_table(srv, prev, feed), refresh=True))
        else:  # piped or logged: no live redraws, one table at the end
            _stats_table(srv, prev, feed)
            _wait(srv, duration)
            if not srv.closed:
                console.print(_stats_table(srv, prev, feed))
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM before the wait began: the same clean stop
    finally:
        feed.stop()
        if dash is not None:
            dash.stop()
        srv.close()
    console.print("stopped.")


def _start_demo_dashboard(srv: Any, feed: Any, kw: dict[str, Any], port: int) -> Any:
    """Serve the demo dashboard (per-session subscriptions to ``srv``) on ``port``."""
    from ..demo import demo_dashboard

    # with signed tokens only, viewers bring theirs: ?livestream_token=
    token = kw.get("subscribe_token") or kw.get("token") or kw.get("admin_token")
    dash = demo_dashboard(srv.url, feed.feeds, token=token)
    try:
        return dash.serve(port=port, host=kw["host"])
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port == 0:
            raise CLIError(f"cannot serve the dashboard on {kw['host']}:{port}: "
                           f"{exc.strerror or exc}") from None
        log.warning("livestream: dashboard port %d is busy; using a free one", port)
        return dash.serve(port=0, host=kw["host"])
