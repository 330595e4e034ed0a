"""``livestream serve``, and the server options and start-up helpers ``demo`` shares."""

from __future__ import annotations

import errno
import importlib
import ssl
import sys
import time
from typing import Any

import click

from .._version import __version__
from ._common import CLIError, _console, _positive, _setup_logging


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
    from ..errors import BackplaneUnavailable
    from ..server.app import serve

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
    except BackplaneUnavailable as exc:
        raise CLIError(str(exc)) from None
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


# -- serve ------------------------------------------------------------------------------------


@click.command()
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
    try:
        _print_urls(console, srv, f"livestream {__version__} serving")
        console.print("Press Ctrl-C to stop.")
        sys.stdout.flush()
        _wait(srv, duration)
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM before the wait began: the same clean stop
    finally:
        srv.close()
    console.print("stopped.")
