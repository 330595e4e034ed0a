"""The ``livestream`` command.

::

    livestream serve    [--host H] [--port P] [--token T] [--allow-origin O]... [--cert C --key K]
                        [--allow-host NAME]... [--trusted-proxy IP[/BITS]]...
                        [--admin-token T] [--jwt-secret-file F | --jwt-public-key-file K]
    livestream demo     [--port P] [--rate R] [--duration S]
    livestream publish  FILE --topic T [--url URL] [--token T]
    livestream replay   FILE --topic T --time-column C [--speed N] [--url URL]
    livestream token    --secret-file F | --private-key-file K  [--sub P] [--pub P] [--admin P]
                        [--ttl 1h] [--aud A] [--nbf WHEN] [--subject NAME]
    livestream topics   ls | rm NAME...  [--url URL] [--token T]

Every command has ``--help``. Bad arguments and runtime failures end with one
line, ``Error: …``, on stderr and exit code 2 (usage) or 1 (anything else); no
traceback is shown unless ``LIVESTREAM_DEBUG=1`` is set.

Extra commands plug in from optional modules (see :data:`PLUGIN_COMMANDS`):
``livestream/cli_bridge.py`` exporting a click command ``bridge`` and
``livestream/cli_dashboard.py`` exporting ``dashboard`` are registered when present.
"""

from __future__ import annotations

import collections
import errno
import http.client
import importlib
import logging
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import click

from ._version import __version__
from .errors import LivestreamError

#: Optional command modules: ``(module, attribute)``; each is added when it imports.
PLUGIN_COMMANDS: tuple[tuple[str, str], ...] = (
    ("livestream.cli_bridge", "bridge"),
    ("livestream.cli_dashboard", "dashboard"),
)

ARROW_STREAM = "application/vnd.apache.arrow.stream"

log = logging.getLogger("livestream.cli")


# -- shared helpers ---------------------------------------------------------------------------


class CLIError(click.ClickException):
    """A runtime failure: printed as ``Error: …``, exit code 1."""


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _sigterm_as_interrupt() -> None:
    """Turn SIGTERM into KeyboardInterrupt so ``kill`` shuts down as cleanly as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise click.BadParameter("must be greater than 0", ctx=ctx, param=param)
    return value


def _server_options(fn: Any) -> Any:
    """Options shared by ``serve`` and ``demo``: address, auth, TLS, origins."""
    opts = [
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Interface to listen on (0.0.0.0 for every interface)."),
        click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
                     help="TCP port (0 picks a free one)."),
        click.option("--token", envvar="LIVESTREAM_TOKEN", default=None,
                     help="Token required to subscribe and to publish "
                          "[env: LIVESTREAM_TOKEN]."),
        click.option("--subscribe-token", envvar="LIVESTREAM_SUBSCRIBE_TOKEN", default=None,
                     help="Token required to subscribe (overrides --token)."),
        click.option("--publish-token", envvar="LIVESTREAM_PUBLISH_TOKEN", default=None,
                     help="Token required to publish (overrides --token)."),
        click.option("--admin-token", envvar="LIVESTREAM_ADMIN_TOKEN", default=None,
                     help="Token that may do everything, deleting topics included "
                          "[env: LIVESTREAM_ADMIN_TOKEN]."),
        click.option("--jwt-secret-file", type=click.Path(exists=True, dir_okay=False),
                     default=None,
                     help="Accept signed tokens (HS256) made with this shared secret "
                          "(at least 32 bytes); see `livestream token`."),
        click.option("--jwt-public-key-file", type=click.Path(exists=True, dir_okay=False),
                     default=None,
                     help="Accept signed tokens (RS256/ES256) verified with this PEM "
                          "public key."),
        click.option("--jwt-algorithm", "jwt_algorithms", multiple=True, metavar="ALG",
                     help="Signing algorithm to accept (repeatable) [HS256 for the secret; "
                          "RS256, ES256 for the public key]."),
        click.option("--jwt-audience", default=None, metavar="AUD",
                     help="The 'aud' signed tokens must carry (default: none; tokens with "
                          "an 'aud' are then refused)."),
        click.option("--jwt-leeway", type=click.FloatRange(min=0), default=None,
                     metavar="SECONDS", help="Clock skew allowed on token times [0]."),
        click.option("--max-topics", type=click.IntRange(min=1), default=None,
                     help="Topics the server holds at most; creating more is refused "
                          "[10000]."),
        click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
                     help="Browser Origin allowed to open a WebSocket, e.g. "
                          "http://localhost:5006 (repeatable; '*' allows all). "
                          "Default: same host and localhost."),
        click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
                     help="Host name the server answers besides IP addresses, localhost and "
                          "--host (and, when listening beyond loopback, this machine's name): "
                          "e.g. the public name behind a proxy (repeatable; '.example.com' for "
                          "a domain and its subdomains). Other Host headers get 403, against "
                          "DNS rebinding. '*' answers any Host: unsafe."),
        click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="IP[/BITS]",
                     help="Reverse proxy address or network whose X-Forwarded-For / X-Real-Ip "
                          "/ X-Forwarded-Proto headers are believed (repeatable). Default: "
                          "none; those headers are ignored."),
        click.option("--cert", "certfile", type=click.Path(exists=True, dir_okay=False),
                     help="TLS certificate (PEM); serves wss:// and https://. Needs --key."),
        click.option("--key", "keyfile", type=click.Path(exists=True, dir_okay=False),
                     help="TLS private key (PEM)."),
        click.option("--slow-consumer", type=click.Choice(["close", "conflate"]),
                     default="close", show_default=True,
                     help="What happens to a client whose send queue is full: close it "
                          "(code 4000) or conflate to a fresh snapshot."),
        click.option("--retention-rows", type=click.IntRange(min=1), default=None,
                     help="Rows each topic keeps for snapshots and resume [100000]."),
        click.option("--retention-seconds", type=float, default=None, callback=_positive,
                     help="Also drop rows older than this many seconds."),
        click.option("--max-message-size", type=click.IntRange(min=1), default=None,
                     help="Largest accepted frame / POST body, bytes [16 MiB]."),
        click.option("--max-subscriptions", type=click.IntRange(min=1), default=None,
                     help="Subscriptions per connection [256]."),
        click.option("--max-rows-per-publish", type=click.IntRange(min=1), default=None,
                     help="Rows in one publish [1000000]."),
        click.option("--max-columns", type=click.IntRange(min=1), default=None,
                     help="Columns in one publish or topic [1000]."),
        click.option("--send-queue-bytes", type=click.IntRange(min=1), default=None,
                     help="Unsent bytes allowed per client before --slow-consumer applies "
                          "[8 MiB]."),
        click.option("--max-send-bytes-total", type=click.IntRange(min=1), default=None,
                     help="Unsent bytes allowed for all clients together; past it the "
                          "clients with the most are dropped [256 MiB]."),
        click.option("--backplane", default=None, metavar="URL",
                     help="Share topics between server processes, e.g. "
                          "redis://localhost:6379/0 (default: in this process)."),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"],
                                                      case_sensitive=False),
                     default="warning", show_default=True, help="Log level (to stderr)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


_LIMIT_KEYS = ("retention_rows", "retention_seconds", "max_message_size", "max_subscriptions",
               "max_rows_per_publish", "max_columns", "send_queue_bytes", "max_topics",
               "max_send_bytes_total", "admin_token", "jwt_secret_file", "jwt_public_key_file",
               "jwt_audience", "jwt_leeway")


def _make_backplane(url: str | None) -> Any:
    if url is None or url in ("memory", "memory://"):
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise click.BadParameter("use redis://HOST:PORT/DB (or 'memory')",
                                 param_hint="'--backplane'")
    try:
        mod = importlib.import_module("livestream.backplane.redis")
    except ImportError as exc:
        if exc.name == "livestream.backplane.redis":
            raise CLIError("this version of livestream has no Redis backplane") from None
        raise CLIError(f"the Redis backplane needs the redis package ({exc}); "
                       "pip install 'livestream[redis]'") from None
    cls = mod.RedisBackplane
    factory = getattr(cls, "from_url", None)
    return factory(url) if factory is not None else cls(url)


def _start_server(kw: dict[str, Any]) -> Any:
    """``serve(...)`` from CLI options, with one-line errors."""
    from .server.app import serve

    if (kw["certfile"] is None) != (kw["keyfile"] is None):
        raise click.UsageError("give both --cert and --key for TLS, or neither")
    options: dict[str, Any] = {k: kw[k] for k in _LIMIT_KEYS if kw.get(k) is not None}
    if kw.get("jwt_algorithms"):
        options["jwt_algorithms"] = list(kw["jwt_algorithms"])
    sub_tok = kw["subscribe_token"] or kw["token"]
    pub_tok = kw["publish_token"] or kw["token"]
    backplane = _make_backplane(kw.get("backplane"))
    try:
        return serve(
            kw["host"], kw["port"], backplane=backplane,
            allowed_origins=list(kw["allow_origins"]), allowed_hosts=list(kw["allow_hosts"]),
            trusted_proxies=list(kw["trusted_proxies"]), certfile=kw["certfile"],
            keyfile=kw["keyfile"], slow_consumer=kw["slow_consumer"],
            subscribe_token=sub_tok, publish_token=pub_tok, **options,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except ssl.SSLError as exc:
        raise CLIError(f"cannot load the TLS certificate/key: {exc}") from None
    except OSError as exc:
        hint = " (another --port, or --port 0 for a free one)" if \
            exc.errno == errno.EADDRINUSE else ""
        raise CLIError(f"cannot listen on {kw['host']}:{kw['port']}: "
                       f"{exc.strerror or exc}{hint}") from None


def _print_urls(console: Any, srv: Any, title: str) -> None:
    console.print(f"[bold]{title}[/bold]")
    console.print(f"  WebSocket  {srv.url}")
    console.print(f"  HTTP       {srv.http_url}  (/health /topics /metrics)")
    sys.stdout.flush()


def _wait(srv: Any, duration: float | None, tick: Any = None, every: float = 0.5) -> None:
    """Block until Ctrl-C / SIGTERM / ``duration`` / the server closing."""
    end = None if duration is None else time.monotonic() + duration
    try:
        while not srv.closed:
            left = every if end is None else min(every, end - time.monotonic())
            if left <= 0:
                break
            time.sleep(left)
            if tick is not None:
                tick()
    except KeyboardInterrupt:
        pass


# -- the group --------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="livestream")
def cli() -> None:
    """livestream: live pandas DataFrames over WebSocket, for notebooks and dashboards.

    Start with `livestream demo`, then in a notebook:

    \b
        import livestream as ls
        conn = ls.connect("ws://127.0.0.1:8765/ws")
        trades = conn.subscribe("trades")
        trades.df
    """


# -- serve ------------------------------------------------------------------------------------


@cli.command()
@_server_options
@click.option("--duration", type=float, default=None, callback=_positive, metavar="SECONDS",
              help="Stop by itself after this many seconds.")
def serve(duration: float | None, log_level: str, **kw: Any) -> None:
    """Run a livestream server until Ctrl-C.

    Publishers push DataFrames with `ls.connect(url).publish(...)`, the HTTP
    endpoint `POST /topics/NAME`, or `livestream publish`; subscribers get
    each topic's snapshot and then its live updates.
    """
    _setup_logging(log_level)
    srv = _start_server(kw)
    console = _console()
    _print_urls(console, srv, f"livestream {__version__} serving")
    console.print("Press Ctrl-C to stop.")
    sys.stdout.flush()
    try:
        _wait(srv, duration)
    finally:
        srv.close()
    console.print("stopped.")


# -- demo -------------------------------------------------------------------------------------


RATE_WINDOW = 3.0  # seconds over which the demo table computes rows/s


def _stats_table(srv: Any, prev: dict[str, collections.deque], feeds: Any) -> Any:
    """A rich table of per-topic rows, rows/s and subscribers (computed on the loop)."""
    from rich.table import Table

    from .loop import run_in_loop

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


@cli.command()
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

    from .demo import run_demo_feeds

    _setup_logging(log_level)
    srv = _start_server(kw)
    try:
        feed = run_demo_feeds(srv, rate, seed=seed, feeds=feeds or ("trading", "chat", "game"))
    except Exception:
        srv.close()
        raise
    dash = None
    if with_dashboard:
        try:
            dash = _start_demo_dashboard(srv, feed, kw, dashboard_port)
        except Exception:
            feed.stop()
            srv.close()
            raise
    console = _console()
    _print_urls(console, srv, f"livestream {__version__} demo")
    if dash is not None:
        console.print(f"  Dashboard  {dash.url}")
    console.print(f"Topics: {', '.join(feed.topics)}")
    console.print("In a notebook:  import livestream as ls; "
                  f"ls.connect({srv.url!r}).subscribe('trades').df")
    sys.stdout.flush()
    prev: dict[str, collections.deque] = {}
    try:
        if console.is_terminal:
            with Live(_stats_table(srv, prev, feed), console=console, auto_refresh=False) as live:
                _wait(srv, duration,
                      tick=lambda: live.update(_stats_table(srv, prev, feed), refresh=True))
        else:  # piped or logged: no live redraws, one table at the end
            _stats_table(srv, prev, feed)
            _wait(srv, duration)
            if not srv.closed:
                console.print(_stats_table(srv, prev, feed))
    finally:
        feed.stop()
        if dash is not None:
            dash.stop()
        srv.close()
    console.print("stopped.")


def _start_demo_dashboard(srv: Any, feed: Any, kw: dict[str, Any], port: int) -> Any:
    """Serve the demo dashboard (per-session subscriptions to ``srv``) on ``port``."""
    from .demo import demo_dashboard

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


# -- publish / replay: HTTP client ------------------------------------------------------------


def _http_base(url: str) -> urllib.parse.SplitResult:
    """``http(s)://host:port`` from an http(s) or ws(s) URL (a ``/ws`` path is dropped)."""
    u = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(u.scheme, u.scheme)
    if scheme not in ("http", "https") or not u.hostname:
        raise click.BadParameter(f"{url!r} is not an http(s):// or ws(s):// URL",
                                 param_hint="'--url'")
    path = u.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[:-3]
    return urllib.parse.SplitResult(scheme, u.netloc, path, "", "")


class HttpClient:
    """Requests to a livestream server's HTTP endpoints on one keep-alive connection."""

    def __init__(self, url: str, token: str | None = None, *, insecure: bool = False,
                 ca: str | None = None, timeout: float = 30.0) -> None:
        self.base = _http_base(url)
        self.token = token
        self.timeout = timeout
        self._ctx: ssl.SSLContext | None = None
        if self.base.scheme == "https":
            self._ctx = ssl.create_default_context(cafile=ca)
            if insecure:
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        self._conn: http.client.HTTPConnection | None = None

    def topic_url(self, topic: str) -> str:
        return f"{self.base.geturl()}/topics/{urllib.parse.quote(topic, safe='')}"

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self.base.hostname or "", self.base.port
            if self._ctx is not None:
                self._conn = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                         context=self._ctx)
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Any:
        """Send one request to ``url`` (on this server); returns the decoded JSON reply,
        or raises :class:`CLIError` with the server's error code and message."""
        from .protocol.codec import loads

        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Length"] = str(len(body))
        path = urllib.parse.urlsplit(url).path
        for attempt in (1, 2):  # one retry when a kept-alive connection was closed under us
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                self.close()
                if attempt == 2:
                    raise CLIError(f"cannot {method} {url}: {exc}") from None
            except OSError as exc:
                self.close()
                raise CLIError(f"cannot reach {self.base.geturl()}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        try:
            reply = loads(data)
        except Exception:
            reply = None
        if resp.status != 200:
            if isinstance(reply, dict) and "message" in reply:
                raise CLIError(f"{reply.get('code', resp.status)}: {reply['message']}")
            raise CLIError(f"HTTP {resp.status} from {url}")
        return reply

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class HttpPublisher(HttpClient):
    """POSTs DataFrames as Arrow IPC streams to ``/topics/{topic}`` on one keep-alive connection."""

    def __init__(self, url: str, topic: str, token: str | None = None, *,
                 insecure: bool = False, ca: str | None = None, timeout: float = 30.0) -> None:
        super().__init__(url, token, insecure=insecure, ca=ca, timeout=timeout)
        self.topic = topic

    @property
    def url(self) -> str:
        return self.topic_url(self.topic)

    def publish(self, df: Any) -> dict:
        """POST one batch; returns the server's ack, or raises :class:`CLIError`."""
        from .protocol import frame_to_arrow

        reply = self.request("POST", self.url, frame_to_arrow(df),
                             {"Content-Type": ARROW_STREAM})
        return reply if isinstance(reply, dict) else {}


def read_table(path: str, fmt: str | None = None, parse_dates: tuple[str, ...] = ()) -> Any:
    """Read a CSV or Parquet file into a DataFrame (format from the extension by default)."""
    import pandas as pd

    p = Path(path)
    if fmt is None:
        suffixes = [s.lower() for s in p.suffixes]
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            fmt = "parquet"
        elif suffixes and (suffixes[-1] in (".csv", ".txt")
                           or suffixes[-2:-1] == [".csv"]):
            fmt = "csv"
        else:
            raise click.BadParameter(f"cannot tell the format of {p.name!r}; pass --format",
                                     param_hint="'FILE'")
    try:
        df = pd.read_parquet(p) if fmt == "parquet" else pd.read_csv(p)
    except (OSError, ValueError, ImportError) as exc:
        raise CLIError(f"cannot read {p.name} as {fmt}: {exc}") from None
    except Exception as exc:  # pyarrow / parser errors
        raise CLIError(f"cannot read {p.name} as {fmt}: {type(exc).__name__}: {exc}") from None
    for c in parse_dates:
        if c not in df.columns:
            raise click.BadParameter(f"no column {c!r} in {p.name}", param_hint="'--parse-dates'")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df[c] = pd.to_datetime(df[c])
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(f"column {c!r} does not hold dates: {exc}",
                                     param_hint="'--parse-dates'") from None
    df.index = pd.RangeIndex(len(df))
    return df


def _client_options(fn: Any) -> Any:
    opts = [
        click.argument("file", type=click.Path(exists=True, dir_okay=False)),
        click.option("--topic", "-t", required=True, help="Topic to publish to."),
        click.option("--url", envvar="LIVESTREAM_URL", default="http://127.0.0.1:8765",
                     show_default=True,
                     help="The server (http(s):// or its ws(s):// URL) [env: LIVESTREAM_URL]."),
        click.option("--token", envvar="LIVESTREAM_PUBLISH_TOKEN", default=None,
                     help="Publish token [env: LIVESTREAM_PUBLISH_TOKEN]."),
        click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default=None,
                     help="File format (default: from the extension)."),
        click.option("--parse-dates", multiple=True, metavar="COLUMN",
                     help="CSV column to parse as datetimes (repeatable)."),
        click.option("--batch-rows", type=click.IntRange(min=1), default=50_000,
                     show_default=True, help="Largest number of rows per request."),
        click.option("--insecure", is_flag=True,
                     help="Do not verify the server's TLS certificate."),
        click.option("--ca", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="CA bundle to verify an https:// server with."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@cli.command()
@_client_options
def publish(file: str, topic: str, url: str, token: str | None, fmt: str | None,
            parse_dates: tuple[str, ...], batch_rows: int, insecure: bool,
            ca: str | None) -> None:
    """Publish a CSV or Parquet FILE to a topic, once (HTTP POST, Arrow body)."""
    from .core.topic import check_topic_name
    from .errors import TopicError

    try:
        check_topic_name(topic)
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="'--topic'") from None
    df = read_table(file, fmt, parse_dates)
    pub = HttpPublisher(url, topic, token, insecure=insecure, ca=ca)
    first = last = None
    try:
        for start in range(0, max(len(df), 1), batch_rows):
            ack = pub.publish(df.iloc[start:start + batch_rows])
            first = ack.get("offset") if first is None else first
            last = ack.get("next")
    finally:
        pub.close()
    click.echo(f"published {len(df):,} rows to {topic!r} at {pub.base.geturl()} "
               f"(offsets {first}..{last})")


def _retimed(col: Any, times: Any, unit: str) -> Any:
    """``col`` shifted so its first time is now, in ``col``'s own type (datetime or number)."""
    import pandas as pd

    shifted = times + (pd.Timestamp.now(tz="UTC") - times.iloc[0])
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return shifted.dt.tz_convert(col.dtype.tz)
    if pd.api.types.is_datetime64_dtype(col):
        return shifted.dt.tz_localize(None)
    if pd.api.types.is_numeric_dtype(col):
        per = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[unit]
        vals = shifted.dt.as_unit("ns").astype("int64") / per
        return vals.astype(col.dtype) if pd.api.types.is_integer_dtype(col) else vals
    return shifted


@cli.command()
@_client_options
@click.option("--time-column", "-c", required=True, metavar="COLUMN",
              help="Column holding each row's time; sets the pace.")
@click.option("--speed", type=float, default=1.0, show_default=True, callback=_positive,
              help="Replay at N× real time (10 = ten times faster).")
@click.option("--time-unit", type=click.Choice(["s", "ms", "us", "ns"]), default="s",
              show_default=True, help="Unit of a numeric time column.")
@click.option("--tick", type=float, default=0.05, show_default=True, callback=_positive,
              help="Seconds between publishes; rows due in the same tick go together.")
@click.option("--retime", is_flag=True,
              help="Shift the time column so the replay looks live (first row = now).")
def replay(file: str, topic: str, url: str, token: str | None, fmt: str | None,
           parse_dates: tuple[str, ...], batch_rows: int, insecure: bool, ca: str | None,
           time_column: str, speed: float, time_unit: str, tick: float, retime: bool) -> None:
    """Replay a recorded CSV or Parquet FILE as a live stream at --speed× real time.

    Rows are sorted by --time-column and published when their time comes
    (HTTP POST, Arrow body), so subscribers see the recording unfold as it
    happened, --speed times faster.
    """
    import numpy as np
    import pandas as pd
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from .core.topic import check_topic_name
    from .errors import TopicError

    try:
        check_topic_name(topic)
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="'--topic'") from None
    df = read_table(file, fmt, parse_dates)
    if time_column not in df.columns:
        raise click.BadParameter(
            f"no column {time_column!r} in {Path(file).name} (columns: {', '.join(map(str, df.columns))})",
            param_hint="'--time-column'")
    col = df[time_column]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not infer format": we report errors
            if pd.api.types.is_numeric_dtype(col):
                times = pd.to_datetime(col, unit=time_unit, utc=True)
            else:
                times = pd.to_datetime(col, utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise click.BadParameter(f"column {time_column!r} does not hold times: {exc}",
                                 param_hint="'--time-column'") from None
    if times.isna().any():
        raise click.BadParameter(f"column {time_column!r} has empty times",
                                 param_hint="'--time-column'")
    order = np.argsort(times.to_numpy(), kind="stable")
    df = df.iloc[order].reset_index(drop=True)
    times = times.iloc[order].reset_index(drop=True)
    # seconds after the first row, at replay speed
    rel = ((times - times.iloc[0]).dt.total_seconds().to_numpy() / speed if len(times)
           else np.zeros(0))
    if retime and len(df):
        df[time_column] = _retimed(col.iloc[order].reset_index(drop=True), times, time_unit)
    pub = HttpPublisher(url, topic, token, insecure=insecure, ca=ca)
    console = _console(stderr=True)
    sent, n = 0, len(df)
    last_pub = -tick
    t0 = time.monotonic()
    try:
        with Progress(
            TextColumn(f"replay → {topic}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("rows"), TimeRemainingColumn(), console=console,
        ) as progress:
            task = progress.add_task("replay", total=n)
            while sent < n:
                now = time.monotonic() - t0
                if rel[sent] > now:  # nothing due yet: wait for the next row
                    time.sleep(rel[sent] - now)
                    continue
                if now - last_pub < tick:  # rows due within one tick travel together
                    time.sleep(tick - (now - last_pub))
                    now = time.monotonic() - t0
                due = int(np.searchsorted(rel, now, side="right"))
                end = min(due, sent + batch_rows)
                pub.publish(df.iloc[sent:end])
                last_pub = now
                progress.update(task, advance=end - sent)
                sent = end
    except KeyboardInterrupt:
        click.echo(f"interrupted after {sent:,} of {n:,} rows", err=True)
        raise SystemExit(130) from None
    finally:
        pub.close()
    took = time.monotonic() - t0
    click.echo(f"replayed {sent:,} rows to {topic!r} in {took:.1f} s "
               f"(recording spans {rel[-1] * speed if len(rel) else 0:.1f} s, speed {speed:g}×)")


# -- token ------------------------------------------------------------------------------------


def _when(text: str, now: float) -> float:
    """``--nbf``: a delay from now (``10m``) or an ISO-8601 time (naive = UTC)."""
    import datetime as dt

    from .server.auth import parse_duration

    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a delay (10m) nor an ISO time",
                                 param_hint="'--nbf'") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


@cli.command()
@click.option("--secret-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Shared secret (the server's --jwt-secret-file): signs with HS256.")
@click.option("--private-key-file", type=click.Path(exists=True, dir_okay=False),
              default=None,
              help="PEM private key whose public key the server has (--jwt-public-key-file): "
                   "RSA signs with RS256, EC P-256 with ES256, Ed25519 with EdDSA.")
@click.option("--alg", default=None, metavar="ALG",
              help="Signing algorithm (default: from the key, as above).")
@click.option("--sub", "sub", multiple=True, metavar="PATTERN",
              help="Topics the bearer may subscribe to (glob, e.g. 'prices.*'; repeatable).")
@click.option("--pub", "pub", multiple=True, metavar="PATTERN",
              help="Topics the bearer may publish to (repeatable). A pattern naming one "
                   "topic exactly also lets the bearer create it.")
@click.option("--admin", "admin", multiple=True, metavar="PATTERN",
              help="Topics the bearer owns: create, delete, publish and subscribe "
                   "(repeatable).")
@click.option("--ttl", default="1h", show_default=True, metavar="DURATION",
              help="How long the token is valid: 90s, 15m, 1h, 7d.")
@click.option("--aud", default=None, metavar="AUD",
              help="Audience: the server's --jwt-audience.")
@click.option("--nbf", default=None, metavar="WHEN",
              help="Not valid before: a delay (10m) or an ISO time; --ttl counts from it.")
@click.option("--subject", default=None, metavar="NAME",
              help="Who the token is for (the JWT 'sub' claim; shown in server logs).")
def token(secret_file: str | None, private_key_file: str | None, alg: str | None,
          sub: tuple[str, ...], pub: tuple[str, ...], admin: tuple[str, ...], ttl: str,
          aud: str | None, nbf: str | None, subject: str | None) -> None:
    """Mint a signed token granting topic patterns; prints it (one line).

    \b
    livestream token --secret-file jwt.secret --sub 'prices.*' --pub orders --ttl 1h
    """
    from .server.auth import (
        HMAC_ALGORITHMS,
        PUBLIC_KEY_ALGORITHMS,
        load_private_key,
        mint_token,
        parse_duration,
        read_secret,
    )

    if (secret_file is None) == (private_key_file is None):
        raise click.UsageError("give --secret-file or --private-key-file (one of them)")
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--ttl'") from None
    try:
        if secret_file is not None:
            key: Any = read_secret(secret_file)
            algorithm = alg or "HS256"
            if algorithm not in HMAC_ALGORITHMS:
                raise click.BadParameter(f"a secret signs with {', '.join(HMAC_ALGORITHMS)}",
                                         param_hint="'--alg'")
        else:
            key, default_alg = load_private_key(private_key_file)  # type: ignore[arg-type]
            algorithm = alg or default_alg
            if algorithm not in PUBLIC_KEY_ALGORITHMS:
                raise click.BadParameter(
                    f"a private key signs with {', '.join(PUBLIC_KEY_ALGORITHMS)}",
                    param_hint="'--alg'")
        now = time.time()
        tok = mint_token(key, algorithm=algorithm, sub=sub, pub=pub, admin=admin, ttl=seconds,
                         audience=aud, not_before=_when(nbf, now) if nbf else None,
                         subject=subject, now=now)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(tok)


# -- topics -----------------------------------------------------------------------------------


def _topics_options(fn: Any) -> Any:
    opts = [
        click.option("--url", envvar="LIVESTREAM_URL", default="http://127.0.0.1:8765",
                     show_default=True,
                     help="The server (http(s):// or its ws(s):// URL) [env: LIVESTREAM_URL]."),
        click.option("--token", envvar="LIVESTREAM_TOKEN", default=None,
                     help="Token: subscribe rights to list, admin rights to delete "
                          "[env: LIVESTREAM_TOKEN]."),
        click.option("--insecure", is_flag=True,
                     help="Do not verify the server's TLS certificate."),
        click.option("--ca", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="CA bundle to verify an https:// server with."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@cli.group()
def topics() -> None:
    """List or delete a server's topics (over HTTP)."""


@topics.command("ls")
@_topics_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON answer.")
def topics_ls(url: str, token: str | None, insecure: bool, ca: str | None,
              as_json: bool) -> None:
    """List the topics the token may see: name, mode, rows held, next offset."""
    import json as json_mod

    from rich.table import Table

    client = HttpClient(url, token, insecure=insecure, ca=ca)
    try:
        reply = client.request("GET", f"{client.base.geturl()}/topics")
    finally:
        client.close()
    items = reply.get("topics", []) if isinstance(reply, dict) else []
    if as_json:
        click.echo(json_mod.dumps(items, indent=2))
        return
    table = Table(title_justify="left", box=None)
    for col, just in (("topic", "left"), ("mode", "left"), ("rows", "right"),
                      ("next offset", "right"), ("epoch", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for t in items:
        mode = t.get("mode", "")
        if t.get("key"):
            mode += f" by {', '.join(t['key'])}"
        table.add_row(t.get("name", ""), mode, f"{t.get('rows', 0):,}",
                      f"{t.get('next_offset', 0):,}", str(t.get("epoch", "")))
    _console().print(table)
    if not items:
        click.echo("(no topics)")


@topics.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@_topics_options
def topics_rm(names: tuple[str, ...], url: str, token: str | None, insecure: bool,
              ca: str | None) -> None:
    """Delete topics and their history (needs the admin right on each; without auth on
    the server, only from the server's own machine). Their subscribers are told, and a
    topic published to again starts afresh."""
    from .core.topic import check_topic_name
    from .errors import TopicError

    for name in names:
        try:
            check_topic_name(name)
        except TopicError as exc:
            raise click.BadParameter(str(exc), param_hint="'NAME'") from None
    client = HttpClient(url, token, insecure=insecure, ca=ca)
    try:
        for name in names:
            client.request("DELETE", client.topic_url(name))
            click.echo(f"deleted {name!r}")
    finally:
        client.close()


# -- plug-in commands -------------------------------------------------------------------------


def register_plugins(group: click.Group = cli) -> list[str]:
    """Add the optional commands of :data:`PLUGIN_COMMANDS` that import; returns their names.

    To add a command from another module, export a ``click.Command`` from it and
    list ``(module, attribute)`` in :data:`PLUGIN_COMMANDS`.
    """
    added = []
    for module, attr in PLUGIN_COMMANDS:
        try:
            command = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if exc.name != module:  # the module exists but something it needs does not
                log.warning("livestream: command %r unavailable: %s", attr, exc)
            continue
        except AttributeError:
            continue
        group.add_command(command)
        added.append(command.name)
    return added


register_plugins()


# -- entry point ------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs :data:`cli`; errors end as one ``Error:`` line."""
    debug = os.environ.get("LIVESTREAM_DEBUG", "") not in ("", "0")
    _sigterm_as_interrupt()
    try:
        rv = cli.main(args=argv, prog_name="livestream", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except LivestreamError as exc:
        if debug:
            raise
        click.echo(f"Error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    except (OSError, ValueError, RuntimeError) as exc:
        if debug:
            raise
        click.echo(f"Error: {_one_line(f'{type(exc).__name__}: {exc}')}", err=True)
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        click.echo(f"Error: internal error: {_one_line(f'{type(exc).__name__}: {exc}')} "
                   "(set LIVESTREAM_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
