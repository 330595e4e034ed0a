"""``livestream bridge``: relay an outside JSON feed into a livestream server topic.

One upstream connection, many notebooks: the bridge holds the feed's socket,
parses its messages into typed rows and publishes them into ``--topic`` of the
livestream server at ``--server``; notebooks subscribe to that topic.

Example::

    livestream bridge wss://feed.example/ws --server ws://localhost:8765/ws --topic ticker \\
        --on-open '{"type": "subscribe", "channels": ["ticker"]}' --ack type=subscriptions \\
        --select type=ticker --column time:datetime --column price:float \\
        --column product_id:category
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import click
import orjson


def _parse_match(items: tuple[str, ...], what: str) -> dict | None:
    """``("type=ticker", "channel=x")`` or a JSON object → a field match dict."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        item = item.strip()
        if item.startswith("{"):
            try:
                obj = orjson.loads(item)
            except orjson.JSONDecodeError as exc:
                raise click.BadParameter(f"not a JSON object: {exc}", param_hint=what) from None
            if not isinstance(obj, dict):
                raise click.BadParameter("must be a JSON object", param_hint=what)
            out.update(obj)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"{item!r}: use KEY=VALUE (e.g. type=ticker) or a JSON object", param_hint=what
            )
        try:
            out[key] = orjson.loads(value)  # numbers, true/false, quoted strings
        except orjson.JSONDecodeError:
            out[key] = value
    return out


def _parse_columns(items: tuple[str, ...]) -> dict | None:
    """``name:type`` or ``name=source:type`` (source may be dotted or an index)."""
    if not items:
        return None
    from ..client.feeds.convert import resolve_type
    from ..client.feeds.parse import Column

    cols: dict[str, Any] = {}
    for item in items:
        spec, sep, type_ = item.rpartition(":")
        if not sep:
            spec, type_ = item, "auto"
        name, eq, source = spec.partition("=")
        if not name:
            raise click.BadParameter(f"{item!r}: use name:type or name=source:type",
                                     param_hint="--column")
        try:
            resolve_type(type_, name)
        except (TypeError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--column") from None
        src: str | int | None = None
        if eq:
            src = int(source) if source.lstrip("-").isdigit() else source
        cols[name] = Column(source=src, type=type_)
    return cols


def _parse_messages(items: tuple[str, ...]) -> list | None:
    if not items:
        return None
    msgs: list = []
    for item in items:
        try:
            obj = orjson.loads(item)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--on-open") from None
        msgs.extend(obj if isinstance(obj, list) else [obj])
    return msgs


@click.command("bridge")
@click.argument("url")
@click.option("--server", required=True, help="livestream server to publish into (ws://host:port/ws).")
@click.option("--topic", required=True, help="Topic the rows are published to.")
@click.option("--select", "select", multiple=True,
              help="Which messages: KEY=VALUE (repeatable, dotted keys) or a JSON object.")
@click.option("--path", default=None, help="Where the records sit in a message, e.g. data.trades.")
@click.option("--column", "columns", multiple=True,
              help="name:type or name=source:type (repeatable); default: every field, inferred.")
@click.option("--required", multiple=True, help="Column that must be present (repeatable).")
@click.option("--on-open", "on_open", multiple=True,
              help="JSON message (or JSON list) sent after every connect (repeatable).")
@click.option("--ack", multiple=True, help="Acknowledgement to wait for: KEY=VALUE or JSON.")
@click.option("--ack-error", multiple=True, help="Message that means the subscribe failed.")
@click.option("--header", "headers", multiple=True, help="'Name: value' handshake header.")
@click.option("--param", "params", multiple=True, help="name=value query parameter (e.g. a token).")
@click.option("--subprotocol", "subprotocols", multiple=True, help="WebSocket subprotocol.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="CA bundle for wss.")
@click.option("--ping-match", default=None, help="App-level ping: exact text, KEY=VALUE or JSON.")
@click.option("--pong", default=None, help="Reply to --ping-match (JSON or text).")
@click.option("--stale-after", type=float, default=None, help="Reconnect after N silent seconds.")
@click.option("--token", default=None, help="Token for the livestream server.")
@click.option("--duration", type=float, default=None,
              help="Stop after N seconds (default: until interrupted).")
def bridge(url: str, server: str, topic: str, select: tuple[str, ...], path: str | None,
           columns: tuple[str, ...], required: tuple[str, ...], on_open: tuple[str, ...],
           ack: tuple[str, ...], ack_error: tuple[str, ...], headers: tuple[str, ...],
           params: tuple[str, ...], subprotocols: tuple[str, ...], ca: str | None,
           ping_match: str | None, pong: str | None, stale_after: float | None,
           token: str | None, duration: float | None) -> None:
    """Relay the outside JSON feed at URL into TOPIC of a livestream server."""
    if not url.startswith(("ws://", "wss://")):
        raise click.BadParameter("the feed URL must start with ws:// or wss://", param_hint="URL")
    if not server.startswith(("ws://", "wss://")):
        raise click.BadParameter("must start with ws:// or wss://", param_hint="--server")
    hdrs: dict[str, str] = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{h!r}: use 'Name: value'", param_hint="--header")
        hdrs[name.strip()] = value.strip()
    qs: dict[str, str] = {}
    for p in params:
        name, sep, value = p.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{p!r}: use name=value", param_hint="--param")
        qs[name] = value
    options: dict[str, Any] = {
        "headers": hdrs, "params": qs, "subprotocols": list(subprotocols) or None,
        "ca": ca, "on_open": _parse_messages(on_open), "ack": _parse_match(ack, "--ack"),
        "ack_error": _parse_match(ack_error, "--ack-error"), "stale_after": stale_after,
    }
    if ping_match is not None:
        if pong is None:
            raise click.BadParameter("--ping-match needs --pong", param_hint="--pong")
        if ping_match.startswith("{") or "=" in ping_match:
            options["ping_match"] = _parse_match((ping_match,), "--ping-match")
        else:
            options["ping_match"] = ping_match
        try:
            options["pong"] = orjson.loads(pong)
        except orjson.JSONDecodeError:
            options["pong"] = pong
    stream_opts = {
        "select": _parse_match(select, "--select"),
        "path": path,
        "columns": _parse_columns(columns),
        "required": list(required),
    }
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_bridge(url, server, topic, token, options, stream_opts, duration))


async def _run_bridge(url: str, server: str, topic: str, token: str | None, options: dict,
                      stream_opts: dict, duration: float | None) -> None:
    from ..client.connection import Connection
    from ..client.feed import open_feed

    target = Connection(server, token=token) if token else Connection(server)
    feed = open_feed(url, **options)
    stream = feed.stream(**stream_opts, name=topic)
    relay = stream.publish_to(target, topic)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    click.echo(f"bridge: {url} → {server} topic {topic!r}", err=True)
    started = time.monotonic()
    last = 0.0
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            now = time.monotonic()
            if now - last >= 10.0:
                last = now
                s, r = feed.stats, relay.stats
                click.echo(
                    f"bridge: {s.state} rows={s.rows} published={r.rows} "
                    f"dead_letters={s.dead_letters} reconnects={s.reconnects} "
                    f"relay_errors={r.errors} last_failure={s.last_failure}",
                    err=True,
                )
            if duration is not None and now - started >= duration:
                break
    finally:
        relay.stop()
        feed.close()
        target.close()
        s, r = feed.stats, relay.stats
        click.echo(f"bridge: stopped; rows={s.rows} published={r.rows} relay_errors={r.errors}",
                   err=True)


if __name__ == "__main__":  # python -m livestream.cli.bridge URL ...
    bridge()
