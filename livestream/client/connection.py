"""The livestream client: one WebSocket connection to a livestream server.

A :class:`Connection` runs on an event loop (the kernel's in a notebook, the
``livestream-io`` thread in a script; see :mod:`livestream.client.loop`). It
reconnects by itself with capped exponential backoff and jitter; after a
reconnect it resubscribes every subscription with its (epoch, offset), so the
server sends exactly the rows missed, or a ``gap`` and a fresh snapshot when they
are no longer retained. Rows are never applied twice: an update whose offsets
overlap what a subscription already holds is trimmed.

Tokens that expire (signed tokens) are renewed without reconnecting:
``conn.refresh_token(new)`` sends a ``refresh``; a ``token=`` callable is asked
for a new token shortly before the current one expires and at every reconnect.
A connection the server closed with 4003 (token expired) does not reconnect with
the same token: it waits in state ``unauthorized`` for a new one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ..core.schema import Schema
from ..errors import ConnectionClosed, LivestreamError, RemoteError
from ..protocol import (
    PROTOCOL_VERSION,
    decode_data,
    dumps,
    encode_columns_json,
    frame_to_arrow,
    loads,
    pack_binary,
    unpack_binary,
)
from . import registry
from .backoff import Backoff
from .loop import call_in_loop, get_loop, on_loop_thread, run_in_loop
from .subscription import DEFAULT_WINDOW, RateMeter, Subscription

log = logging.getLogger("livestream.client")

_DATA_TYPES = ("snapshot", "append", "upsert", "replace")


@dataclass
class ConnectionStats:
    """Counters of a connection (``conn.stats``)."""

    url: str
    state: str = "connecting"
    connects: int = 0
    reconnects: int = 0
    rows: int = 0
    messages: int = 0
    bytes: int = 0
    rows_per_s: float = 0.0
    lag_ms: float | None = None
    gaps: int = 0
    errors: int = 0
    last_error: str | None = None
    subscriptions: int = 0


class Connection:
    """A connection to a livestream server. Create with :func:`livestream.connect`."""

    def __init__(
        self,
        url: str,
        *,
        token: str | Callable[[], str | None] | None = None,
        encoding: str = "arrow",
        reconnect: bool = True,
        backoff: Backoff | tuple[float, float] = (0.1, 10.0),
        connect_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_message_size: int = 256 * 1024 * 1024,
        ca: str | None = None,
        verify: bool = True,
        headers: dict[str, str] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"livestream URLs start with ws:// or wss://, got {url!r}")
        if encoding not in ("json", "arrow"):
            raise ValueError("encoding must be 'json' or 'arrow'")
        self.url = url
        # the current token (a string); a callable is asked for one at each (re)connect
        # and before the current one expires
        self._token_provider: Callable[[], str | None] | None = token if callable(token) \
            else None
        self.token: str | None = None if callable(token) else token
        #: When the connection's token expires (seconds since the epoch; from ``welcome``).
        self.token_exp: float | None = None
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._new_token: asyncio.Event | None = None
        self._close_code: int | None = None
        self.encoding = encoding
        self.reconnect = reconnect
        self._backoff = backoff if isinstance(backoff, Backoff) else Backoff(*backoff)
        self._failures = 0  # consecutive failed or dropped connections since the last welcome
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_message_size = max_message_size
        self.headers = dict(headers or {})
        self._ssl: ssl.SSLContext | None = None
        if url.startswith("wss://"):
            ctx = ssl.create_default_context(cafile=ca)
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx
        if loop is None:
            loop, _owned = get_loop()
        self.loop = loop
        self.subscriptions: dict[str, Subscription] = {}
        self.stats_data = ConnectionStats(url)
        self._meter = RateMeter()
        self._ws: WebSocketClientConnection | None = None
        self._closed = False
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future] = {}
        self._live = asyncio.Event() if on_loop_thread(loop) else None
        self._state_cbs: list[Callable[[Connection, str], Any]] = []
        self.welcome: dict | None = None
        self._task: asyncio.Task | None = None
        registry.register(self)
        call_in_loop(loop, self._start)

    # -- lifecycle ----------------------------------------------------------------------

    def _start(self) -> None:
        if self._live is None:
            self._live = asyncio.Event()
        self._new_token = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def __repr__(self) -> str:
        return f"<livestream.Connection {self.url} {self.state} subscriptions={len(self.subscriptions)}>"

    @property
    def state(self) -> str:
        """connecting, live, reconnecting, unauthorized (token expired: waiting for a new
        one, see :meth:`refresh_token`) or closed."""
        return self.stats_data.state

    @property
    def stats(self) -> ConnectionStats:
        s = self.stats_data
        s.rows_per_s = self._meter.rate()
        s.subscriptions = len(self.subscriptions)
        return s

    def on_state(self, callback: Callable[[Connection, str], Any]) -> None:
        """Call ``callback(conn, state)`` on the loop whenever the state changes."""
        self._state_cbs.append(callback)

    def _set_state(self, state: str) -> None:
        if self.stats_data.state == state:
            return
        self.stats_data.state = state
        for sub in self.subscriptions.values():
            if not sub.paused:
                sub._set_state(state)
        for cb in list(self._state_cbs):
            try:
                cb(self, state)
            except Exception:
                log.exception("livestream: state callback failed")

    async def _run(self) -> None:
        while not self._closed:
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                break
            except Exception as exc:
                self.stats_data.last_error = f"{type(exc).__name__}: {exc}"
                log.info("livestream: connection to %s failed: %s", self.url, exc)
            if self._closed:
                break
            if self._live is not None:
                self._live.clear()
            self._cancel_refresh()
            if not self.reconnect:
                self._close_now("connection lost")
                break
            if self._close_code == 4003 and not await self._await_new_token():
                break
            self._set_state("reconnecting")
            try:
                self._failures += 1
                await asyncio.sleep(self._backoff.delay(self._failures))
            except asyncio.CancelledError:
                break

    async def _await_new_token(self) -> bool:
        """After close 4003: a new token from the provider, else wait for
        :meth:`refresh_token`. False if the connection was closed meanwhile."""
        expired = self.token
        fresh = self._provided_token()
        if fresh and fresh != expired:
            self.token = fresh
            return True
        self._set_state("unauthorized")
        log.warning("livestream: %s closed the connection: its token expired; waiting for "
                    "conn.refresh_token(new_token)", self.url)
        assert self._new_token is not None
        self._new_token.clear()
        try:
            await self._new_token.wait()
        except asyncio.CancelledError:
            return False
        return not self._closed

    def _provided_token(self) -> str | None:
        if self._token_provider is None:
            return None
        try:
            return self._token_provider()
        except Exception:
            log.exception("livestream: the token callable failed")
            return None

    async def _connect_once(self) -> None:
        self._close_code = None
        if self._token_provider is not None:
            self.token = self._provided_token() or self.token
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = HTTPRequest(self.url, headers=headers, connect_timeout=self.connect_timeout,
                          request_timeout=self.connect_timeout, ssl_options=self._ssl)
        ws = await websocket_connect(
            req, ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
            max_message_size=self.max_message_size,
        )
        if self._closed:
            ws.close()
            return
        self._ws = ws
        first = self.stats_data.connects > 0
        self.stats_data.connects += 1
        if first:
            self.stats_data.reconnects += 1
            for sub in self.subscriptions.values():
                sub.stats_data.reconnects += 1
        hello = {"type": "hello", "v": PROTOCOL_VERSION, "encoding": self.encoding,
                 "client": "livestream-py"}
        if self.token:
            hello["token"] = self.token
        await ws.write_message(dumps(hello))
        for sub in list(self.subscriptions.values()):
            if not sub.paused and not sub.closed:
                self._send_subscribe(sub)
        try:
            while True:
                msg = await ws.read_message()
                if msg is None:
                    code, reason = ws.close_code, ws.close_reason
                    self._close_code = code
                    self.stats_data.last_error = f"closed by server ({code}: {reason})" if code \
                        else "connection lost"
                    break
                self._on_message(msg)
        finally:
            self._ws = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionClosed("connection lost before the reply"))
            self._pending.clear()

    def _close_now(self, reason: str) -> None:
        self._closed = True
        self._cancel_refresh()
        registry.unregister(self)
        self._set_state("closed")
        for sub in list(self.subscriptions.values()):
            sub._mark_closed()

    def close(self, timeout: float = 5.0, *, code: int = 1000,
              reason: str = "client closed") -> None:
        """Close the connection and every subscription. Safe from any thread, twice.

        From another thread than the loop's, waits up to ``timeout`` seconds for the
        loop to have sent the close frame. ``code=1001`` says the client is going
        away (kernel shutdown).
        """
        if self._closed:
            return
        self._closed = True

        def shutdown() -> None:
            ws = self._ws
            if ws is not None:
                ws.close(code, reason)
            if self._task is not None:
                self._task.cancel()
            self._close_now("closed by the user")

        if on_loop_thread(self.loop):
            shutdown()
        elif self.loop.is_running() and not self.loop.is_closed():
            try:
                run_in_loop(self.loop, shutdown, timeout=timeout)
            except Exception:  # the loop is stuck or gone: at least mark everything closed
                self._close_now("closed by the user")
        else:
            self._close_now("closed by the user")

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def wait_live(self, timeout: float = 10.0) -> Connection:
        """Await until the connection is live (welcomed by the server)."""
        assert self._live is not None
        await asyncio.wait_for(self._live.wait(), timeout)
        return self

    # -- subscriptions ------------------------------------------------------------------

    def subscribe(self, topic: str, window: int | None = DEFAULT_WINDOW, *,
                  token: str | None = None) -> Subscription:
        """Subscribe to ``topic``; returns its live :class:`Subscription` at once.

        ``window`` bounds the rows kept (append topics); keyed topics keep one row
        per key. Subscribing twice to a topic returns the existing subscription.
        """
        if self._closed:
            raise ConnectionClosed("the connection is closed")
        existing = self.subscriptions.get(topic)
        if existing is not None and not existing.closed:
            return existing
        sub = Subscription(topic, window=window, source=self, loop=self.loop)
        sub._token = token  # type: ignore[attr-defined]
        sub._set_state(self.state)
        self.subscriptions[topic] = sub
        call_in_loop(self.loop, self._send_subscribe, sub)
        return sub

    def _send_subscribe(self, sub: Subscription) -> None:
        ws = self._ws
        if ws is None:
            return  # sent on (re)connect
        msg: dict[str, Any] = {"type": "subscribe", "topic": sub.name, "id": next(self._ids)}
        if sub.epoch is not None and sub.offset is not None:
            msg["epoch"], msg["offset"] = sub.epoch, sub.offset
        token = getattr(sub, "_token", None)
        if token:
            msg["token"] = token
        self._write(msg)

    def _write(self, msg: dict) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            ws.write_message(dumps(msg).decode())
        except Exception as exc:  # closed under us: the reconnect loop resubscribes
            log.debug("livestream: write failed: %s", exc)

    def _unsubscribe(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.name) is sub:
            del self.subscriptions[sub.name]
            call_in_loop(self.loop, self._write, {"type": "unsubscribe", "topic": sub.name})

    def _pause(self, sub: Subscription) -> None:
        call_in_loop(self.loop, self._write, {"type": "unsubscribe", "topic": sub.name})

    def _resume(self, sub: Subscription) -> None:
        sub._set_state(self.state)
        call_in_loop(self.loop, self._send_subscribe, sub)

    # -- tokens -------------------------------------------------------------------------

    def refresh_token(self, token: str) -> Any:
        """Give the connection a new token (before the current one expires).

        Sent at once as a ``refresh`` when connected, and used for every later
        (re)connect. Returns a future of the server's ``refreshed`` reply (``None``
        when not connected: the token is used when the connection is made); a
        refused token raises :class:`~livestream.errors.RemoteError` from it and
        the connection keeps its current token. A connection waiting in state
        ``unauthorized`` (closed with 4003) reconnects with the new token.
        Like :meth:`publish`: an asyncio future on the loop, a
        ``concurrent.futures.Future`` from another thread.
        """
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if on_loop_thread(self.loop):
            return self._refresh(token)
        return asyncio.run_coroutine_threadsafe(self._refresh_async(token), self.loop)

    async def _refresh_async(self, token: str) -> dict | None:
        return await self._refresh(token)

    def _refresh(self, token: str) -> asyncio.Future:
        fut: asyncio.Future = self.loop.create_future()
        self.token = token
        ws = self._ws
        if ws is None or self.welcome is None:
            if self._new_token is not None:
                self._new_token.set()
            fut.set_result(None)
            return fut
        mid = next(self._ids)
        self._pending[mid] = fut
        self._write({"type": "refresh", "token": token, "id": mid})
        return fut

    def _cancel_refresh(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def _schedule_refresh(self) -> None:
        """With a token callable: ask it for a new token a little before ``token_exp``."""
        self._cancel_refresh()
        if self._token_provider is None or self.token_exp is None:
            return
        left = self.token_exp - time.time()
        margin = min(30.0, max(0.5, 0.25 * left))
        self._refresh_timer = self.loop.call_later(max(0.0, left - margin), self._auto_refresh)

    def _auto_refresh(self) -> None:
        self._refresh_timer = None
        fresh = self._provided_token()
        if not fresh or fresh == self.token or self._ws is None:
            return  # nothing new: the server closes with 4003 at exp; reconnect asks again
        fut = self._refresh(fresh)
        fut.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    # -- publishing ---------------------------------------------------------------------

    def publish(self, topic: str, df: pd.DataFrame) -> asyncio.Future:
        """Publish rows through this connection; returns a future of the server's ack.

        On the connection's loop the future is an asyncio future (``await`` it);
        from another thread it is a ``concurrent.futures.Future`` (``.result()``).
        A server-side rejection (schema, token, limits) raises
        :class:`~livestream.errors.RemoteError` from the future.
        """
        if on_loop_thread(self.loop):
            return self._publish(topic, df)
        return asyncio.run_coroutine_threadsafe(self._publish_async(topic, df), self.loop)

    async def _publish_async(self, topic: str, df: pd.DataFrame) -> dict:
        return await self._publish(topic, df)

    def _publish(self, topic: str, df: pd.DataFrame) -> asyncio.Future:
        fut: asyncio.Future = self.loop.create_future()
        ws = self._ws
        if ws is None:
            fut.set_exception(ConnectionClosed("not connected; publish again when live"))
            return fut
        mid = next(self._ids)
        self._pending[mid] = fut
        header: dict[str, Any] = {"type": "publish", "topic": topic, "id": mid}
        if self.token:
            header["token"] = self.token
        if self.encoding == "arrow":
            ws.write_message(pack_binary(header, frame_to_arrow(df)), binary=True)
        else:
            schema = Schema.from_frame(df)
            cols, cats = encode_columns_json(schema.conform(df), schema)
            header["schema"] = schema.to_json()
            header["columns"] = cols
            if cats:
                header["categories"] = cats
            ws.write_message(dumps(header).decode())
        return fut

    # -- incoming -----------------------------------------------------------------------

    def _on_message(self, raw: str | bytes) -> None:
        s = self.stats_data
        s.messages += 1
        s.bytes += len(raw)
        try:
            if isinstance(raw, bytes):
                header, payload = unpack_binary(raw)
                self._handle(header, payload)
            else:
                self._handle(loads(raw), None)
        except LivestreamError as exc:
            s.errors += 1
            s.last_error = str(exc)
            log.warning("livestream: bad frame from %s: %s", self.url, exc)

    def _handle(self, msg: dict, payload: Any) -> None:
        mtype = msg.get("type")
        topic = msg.get("topic")
        sub = self.subscriptions.get(topic) if topic is not None else None
        if mtype in _DATA_TYPES:
            if sub is None or sub.paused or sub.closed:
                return
            self._apply_data(sub, mtype, msg, payload)
        elif mtype == "welcome":
            self.welcome = msg
            self._failures = 0
            self.token_exp = msg.get("exp")
            self._schedule_refresh()
            self._set_state("live")
            if self._live is not None:
                self._live.set()
        elif mtype == "refreshed":
            self.token_exp = msg.get("exp")
            self._schedule_refresh()
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            for s in list(self.subscriptions.values()):  # ended by the old token: try again
                if s.stats_data.state == "unauthorized" and not s.paused and not s.closed:
                    self._send_subscribe(s)
        elif mtype == "deleted":
            if sub is not None:
                sub._set_state("waiting")  # like a topic not created yet; a gap comes with it
            log.info("livestream: topic %r was deleted on %s", topic, self.url)
        elif mtype == "unsubscribed":
            if sub is not None and msg.get("reason") and not sub.closed:
                # the server ended the subscription (its token no longer allows it)
                sub._error(f"unsubscribed by the server: {msg['reason']}")
                sub._set_state("unauthorized")
        elif mtype == "subscribed":
            if sub is None:
                return
            if msg.get("mode"):
                sub.mode = msg["mode"]
            if msg.get("key"):
                sub.key = tuple(msg["key"])
            if msg.get("schema") is not None:
                sub._wire_schema = Schema.from_json(msg["schema"])  # type: ignore[attr-defined]
            # "waiting": the topic has no rows (or does not exist) yet
            sub._set_state("live" if msg.get("schema") is not None else "waiting")
        elif mtype == "gap":
            if sub is None:
                return
            self.stats_data.gaps += 1
            sub._gap(msg)
        elif mtype == "ack":
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif mtype == "error":
            self.stats_data.errors += 1
            self.stats_data.last_error = f"{msg.get('code')}: {msg.get('message')}"
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_exception(RemoteError(str(msg.get("code")), str(msg.get("message")),
                                              topic))
            elif sub is not None:
                sub._error(f"{msg.get('code')}: {msg.get('message')}")
                if msg.get("code") == "unauthorized":
                    sub._set_state("unauthorized")
            else:
                log.warning("livestream: server error %s: %s", msg.get("code"),
                            msg.get("message"))
        elif mtype == "pong":
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _apply_data(self, sub: Subscription, kind: str, msg: dict, payload: Any) -> None:
        schema_json = msg.get("schema")
        schema = Schema.from_json(schema_json) if schema_json is not None else (
            sub.schema or getattr(sub, "_wire_schema", None))
        offset, nxt = msg.get("offset"), msg.get("next")
        epoch = msg.get("epoch")
        if kind in ("append", "upsert") and sub.offset is not None and epoch == sub.epoch \
                and isinstance(offset, int) and isinstance(nxt, int):
            if nxt <= sub.offset:
                return  # already held: never apply twice
            if offset > sub.offset:
                # a hole the server should never produce; say so rather than hide it
                sub._gap({"type": "gap", "topic": sub.name, "epoch": epoch,
                          "offset": sub.offset, "new_epoch": epoch, "until": offset,
                          "reason": "hole"})
        fast = kind == "append" and payload is not None
        frame = decode_data(msg, schema, payload, as_table=fast, trusted=True)
        if kind in ("append", "upsert") and sub.offset is not None and epoch == sub.epoch \
                and isinstance(offset, int) and offset < sub.offset:
            skip = sub.offset - offset
            frame = frame.slice(skip) if isinstance(frame, pa.Table) else \
                frame.iloc[skip:].reset_index(drop=True)
            offset = sub.offset
        if sub.stats_data.state == "waiting":
            sub._set_state("live")
        sub._apply(kind, frame, schema=schema, epoch=epoch, offset=offset, next_offset=nxt,
                   ts=msg.get("ts"), mode=msg.get("mode"))
        self.stats_data.rows += len(frame)
        self._meter.add(len(frame))
        ts = msg.get("ts")
        if ts is not None:
            self.stats_data.lag_ms = max(0.0, time.time() * 1000.0 - ts)

    async def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time to the server in milliseconds (an application-level ping)."""
        fut: asyncio.Future = self.loop.create_future()
        mid = next(self._ids)
        self._pending[mid] = fut
        t0 = time.perf_counter()
        self._write({"type": "ping", "id": mid, "t": time.time() * 1000.0})
        await asyncio.wait_for(fut, timeout)
        return (time.perf_counter() - t0) * 1000.0


def connect(url: str, **options: Any) -> Connection:
    """Connect to a livestream server; returns at once, connecting in the background.

    Options: ``token`` (a string, or a callable returning the current token: asked at
    every connect and shortly before the token expires), ``encoding`` ("arrow" or "json"), ``reconnect``,
    ``backoff=(base, cap)`` seconds, ``ca`` (a CA bundle for wss), ``verify``,
    ``headers``, ``ping_interval``/``ping_timeout``, ``max_message_size``.
    """
    return Connection(url, **options)
