"""The livestream client: one WebSocket connection to a livestream server.

A :class:`Connection` is the thin I/O adapter around a sans-I/O
:class:`~livestream.client.protocol.ClientProtocol`: it opens the socket, writes
what the protocol queues, feeds it every message read, and acts on the events it
returns (runs subscription callbacks, resolves request futures); the socket is a
:mod:`livestream.client.transport` WebSocket (picows), whose frame callback hands each
message to the protocol with nothing awaited per message. The rules live in
the protocol and in each topic's :class:`~livestream.client.state.SubscriptionState`.

A connection runs on an event loop (the kernel's in a notebook, the
``livestream-io`` thread in a script; see :mod:`livestream.loop`). It reconnects
by itself with capped exponential backoff and jitter. Given several URLs (the
nodes of a cluster sharing topics through a backplane), it uses one at a time and
moves to the next after every failed or lost connection, with the same backoff
between attempts (see :meth:`Connection.__init__`); after a reconnect the
protocol resubscribes every subscription with its (epoch, offset), so the server
sends exactly the rows missed, or a ``gap`` and a fresh snapshot when they are no
longer retained. Rows are never applied twice: an update whose offsets overlap
what a subscription already holds is trimmed.

Tokens that expire (signed tokens) are renewed without reconnecting:
``conn.refresh_token(new)`` sends a ``refresh``; a ``token=`` callable is asked
for a new token shortly before the current one expires and at every reconnect.
A connection the server closed with 4003 (token expired) does not reconnect with
the same token: it waits in state ``unauthorized`` for a new one. The protocol
decides (when to renew, whether a new token is needed); this adapter runs the
timer, asks the callable and waits.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import ConnectionClosed, LivestreamError, RemoteError
from ..loop import call_in_loop, get_loop, on_loop_thread, run_in_loop
from . import registry
from .backoff import Backoff
from .protocol import (
    BadFrame,
    ClientProtocol,
    Event,
    Refused,
    Replied,
    ServerError,
    TokenRefreshed,
    TopicDeleted,
    Welcomed,
)
from .state import DEFAULT_WINDOW, GapDetected, RateMeter, RowsApplied
from .subscription import Subscription
from .transport import WebSocket, check_proxy
from .transport import connect as ws_connect

log = logging.getLogger("livestream.client")


@dataclass
class ConnectionStats:
    """Counters of a connection (``conn.stats``). ``url`` is the URL in use (or being
    tried); ``urls`` every URL the connection may use, in the order it tries them."""

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
    urls: tuple[str, ...] = ()


class Connection:
    """A connection to a livestream server (or to one node of a cluster at a time).
    Create with :func:`livestream.connect`."""

    def __init__(
        self,
        url: str | Sequence[str],
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
        proxy: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """``url`` is one URL, or a list of URLs of servers sharing their topics (the
        nodes of a cluster on one backplane): the connection uses the first, and after
        every failed or lost connection moves to the next one in turn (back to the first
        after the last), waiting ``backoff`` between attempts exactly as with one URL.
        Subscriptions resume on the next node by their (epoch, offset). With
        ``reconnect=False`` each URL is tried once until one connects."""
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("give at least one livestream URL")
        for u in urls:
            if not isinstance(u, str) or not u.startswith(("ws://", "wss://")):
                raise ValueError(f"livestream URLs start with ws:// or wss://, got {u!r}")
        if len(set(urls)) != len(urls):
            raise ValueError(f"the same URL is given twice: {urls!r}")
        if encoding not in ("json", "arrow"):
            raise ValueError("encoding must be 'json' or 'arrow'")
        #: every URL this connection may use, in the order it tries them
        self.urls: tuple[str, ...] = tuple(urls)
        self._url_index = 0
        #: the URL in use, or being tried
        self.url = urls[0]
        # a callable is asked for a token at each (re)connect and before the current
        # one expires; the current token itself lives in the protocol (``self.token``)
        self._token_provider: Callable[[], str | None] | None = token if callable(token) \
            else None
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._new_token: asyncio.Event | None = None
        self.encoding = encoding
        self.reconnect = reconnect
        self._backoff = backoff if isinstance(backoff, Backoff) else Backoff(*backoff)
        self._failures = 0  # consecutive failed or dropped connections since the last welcome
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_message_size = max_message_size
        self.headers = dict(headers or {})
        #: the proxy every connect tunnels through (``http://[user:pass@]host:port``), or None
        self.proxy = check_proxy(proxy)
        self._ssl: ssl.SSLContext | None = None
        if any(u.startswith("wss://") for u in urls):
            ctx = ssl.create_default_context(cafile=ca)
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx
        if loop is None:
            loop, _owned = get_loop()
        self.loop = loop
        self.subscriptions: dict[str, Subscription] = {}
        self.stats_data = ConnectionStats(self.url, urls=self.urls)
        #: the sans-I/O protocol this connection drives (touched on the loop only)
        self.protocol = ClientProtocol(encoding=encoding,
                                       token=None if callable(token) else token)
        self._meter = RateMeter()
        self._ws: WebSocket | None = None
        self._closed = False
        self._pending: dict[int, asyncio.Future] = {}
        self._live = asyncio.Event() if on_loop_thread(loop) else None
        self._state_cbs: list[Callable[[Connection, str], Any]] = []
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
        more = f" (1 of {len(self.urls)} URLs)" if len(self.urls) > 1 else ""
        return (f"<livestream.Connection {self.url}{more} {self.state} "
                f"subscriptions={len(self.subscriptions)}>")

    def _next_url(self) -> None:
        """Move to the next URL in turn (a no-op with one URL)."""
        if len(self.urls) > 1:
            self._url_index = (self._url_index + 1) % len(self.urls)
            self.url = self.stats_data.url = self.urls[self._url_index]

    @property
    def state(self) -> str:
        """connecting, live, reconnecting, unauthorized (token expired: waiting for a new
        one, see :meth:`refresh_token`) or closed."""
        return self.stats_data.state

    @property
    def token(self) -> str | None:
        """The token the connection uses (sent at every connect; set by
        :meth:`refresh_token` or the ``token=`` callable)."""
        return self.protocol.token

    @token.setter
    def token(self, token: str | None) -> None:
        self.protocol.set_token(token)

    @property
    def token_exp(self) -> float | None:
        """When the connection's token expires (seconds since the epoch; from the
        server's ``welcome``/``refreshed``), None if it does not."""
        return self.protocol.token_exp

    @property
    def stats(self) -> ConnectionStats:
        s = self.stats_data
        s.rows_per_s = self._meter.rate()
        s.subscriptions = len(self.subscriptions)
        return s

    @property
    def welcome(self) -> dict | None:
        """The server's last ``welcome`` message (None before the first)."""
        return self.protocol.welcome

    def on_state(self, callback: Callable[[Connection, str], Any]) -> None:
        """Call ``callback(conn, state)`` on the loop whenever the state changes."""
        self._state_cbs.append(callback)

    def _set_state(self, state: str) -> None:
        self._deliver(self.protocol.set_state(state))
        self._state_changed(state)

    def _state_changed(self, state: str) -> None:
        if self.stats_data.state == state:
            return
        self.stats_data.state = state
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
                # without reconnect: a lost connection ends it; a first connect tries
                # each URL once
                if self.stats_data.connects > 0 or self._url_index + 1 >= len(self.urls):
                    self._close_now("connection lost")
                    break
                self._next_url()
                continue
            self._next_url()
            if self.protocol.needs_token() and not await self._await_new_token():
                break
            self._set_state("reconnecting")
            try:
                self._failures += 1
                await asyncio.sleep(self._backoff.delay(self._failures))
            except asyncio.CancelledError:
                break

    async def _await_new_token(self) -> bool:
        """After close 4003: a new token from the callable, else wait (state
        ``unauthorized``) for :meth:`refresh_token`. False if closed meanwhile."""
        fresh = self._provided_token()
        if fresh:
            self.protocol.set_token(fresh)
        if not self.protocol.needs_token():
            return True
        self._set_state("unauthorized")
        log.warning("livestream: %s closed the connection: its token expired; waiting for "
                    "conn.refresh_token(new_token)", self.url)
        assert self._new_token is not None
        self._new_token.clear()
        while self.protocol.needs_token():
            try:
                await self._new_token.wait()
            except asyncio.CancelledError:
                return False
            self._new_token.clear()
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
        if self._token_provider is not None:
            self.protocol.set_token(self._provided_token() or self.protocol.token)
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        ws = await ws_connect(
            self.url, self._on_message, headers=headers, ssl=self._ssl,
            connect_timeout=self.connect_timeout, ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout, max_message_size=self.max_message_size,
            proxy=self.proxy,
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
        self.protocol.connection_made()
        self._flush()
        try:
            await ws.wait_closed()  # messages go to _on_message from the frame callback
            code, reason = ws.close_code, ws.close_reason
            self.stats_data.last_error = f"closed by server ({code}: {reason})" if code \
                else "connection lost"
        finally:
            ws.close()  # cancelled: a close frame (none if one was sent; the peer's answer or
            # the close timeout drops the socket)
            self._ws = None
            self._deliver(self.protocol.connection_lost("connection lost", ws.close_code))

    def _flush(self) -> None:
        """Write what the protocol queued."""
        ws = self._ws
        frames = self.protocol.data_to_send()
        if ws is None:
            return
        for data in frames:
            try:
                ws.send(data)
            except Exception as exc:  # closed under us: the reconnect loop resubscribes
                log.debug("livestream: write failed: %s", exc)
                return

    def _close_now(self, reason: str) -> None:
        self._closed = True
        self._cancel_refresh()
        registry.unregister(self)
        self._set_state("closed")
        for sub in list(self.subscriptions.values()):
            sub.mark_closed()

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
        sub = Subscription(topic, window=window, source=self, loop=self.loop, token=token)
        sub.set_state(self.state)
        self.subscriptions[topic] = sub
        call_in_loop(self.loop, self._add, sub)
        return sub

    def _add(self, sub: Subscription) -> None:
        if sub.closed or self.subscriptions.get(sub.name) is not sub:
            return
        self._deliver(self.protocol.add(sub.machine, sub.token))
        self._flush()

    def _remove(self, sub: Subscription) -> None:
        if self.protocol.topics.get(sub.name) is sub.machine:
            self.protocol.remove(sub.name)
            self._flush()

    def _protocol_call(self, method: Callable[[str], list[Event]], name: str) -> None:
        self._deliver(method(name))
        self._flush()

    # the hooks a Subscription calls (any thread)

    def subscription_closed(self, sub: Subscription) -> None:
        """Unsubscribe ``sub``'s topic (called by ``sub.close()``)."""
        if self.subscriptions.get(sub.name) is sub:
            del self.subscriptions[sub.name]
            call_in_loop(self.loop, self._remove, sub)

    def subscription_paused(self, sub: Subscription) -> None:
        """Unsubscribe ``sub``'s topic, keeping its resume point (``sub.pause()``)."""
        call_in_loop(self.loop, self._protocol_call, self.protocol.pause, sub.name)

    def subscription_resumed(self, sub: Subscription) -> None:
        """Subscribe ``sub``'s topic again from its resume point (``sub.resume()``)."""
        sub.set_state(self.state)
        call_in_loop(self.loop, self._protocol_call, self.protocol.resume, sub.name)

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
        mid = self.protocol.refresh(token)
        if mid is None:  # not connected: used by the next connect (and ends a 4003 wait)
            if self._new_token is not None:
                self._new_token.set()
            fut.set_result(None)
            return fut
        self._pending[mid] = fut
        self._flush()
        return fut

    def _cancel_refresh(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def _schedule_refresh(self) -> None:
        """With a token callable: ask it for a new token when the protocol says."""
        self._cancel_refresh()
        if self._token_provider is None:
            return
        delay = self.protocol.refresh_delay(time.time())
        if delay is not None:
            self._refresh_timer = self.loop.call_later(delay, self._auto_refresh)

    def _auto_refresh(self) -> None:
        self._refresh_timer = None
        fresh = self._provided_token()
        if not fresh or fresh == self.protocol.token or self._ws is None:
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

        A frame above the server's limits (``welcome.limits``: ``max_message_size``
        bytes or cells, ``max_rows_per_publish`` rows) is sent as several publishes, in
        row order, with one result: the ack of the whole (``offset`` of the first row,
        ``next`` after the last, ``rows``, ``parts``). The parts are separate
        publishes: if one is refused, the future raises its error and the parts before
        it stay published (``error.published_rows`` says how many rows). A single row
        above ``max_message_size`` raises :class:`~livestream.errors.LimitError` before
        anything is sent.
        """
        if on_loop_thread(self.loop):
            return self._publish(topic, df)
        return asyncio.run_coroutine_threadsafe(self._publish_async(topic, df), self.loop)

    async def _publish_async(self, topic: str, df: pd.DataFrame) -> dict:
        return await self._publish(topic, df)

    def _publish(self, topic: str, df: pd.DataFrame) -> asyncio.Future:
        fut: asyncio.Future = self.loop.create_future()
        if self._ws is None:
            fut.set_exception(ConnectionClosed("not connected; publish again when live"))
            return fut
        try:
            parts = self.protocol.publish_parts(topic, df)
        except LivestreamError as exc:
            fut.set_exception(exc)
            return fut
        if len(parts) == 1:
            mid, frame, _ = parts[0]
            self.protocol.queue_request(mid, frame)
            self._pending[mid] = fut
            self._flush()
        else:
            self._send_parts(parts, len(df), fut)
        return fut

    def _send_parts(self, parts: list[tuple[int, str | bytes, int]], rows: int,
                    fut: asyncio.Future) -> None:
        """Send the publishes of a split frame one at a time, each after the previous
        one's ack, and resolve ``fut`` once (see :meth:`publish`). Waiting for each ack
        bounds what the server must buffer; a refused part stops the rest."""
        acks: list[dict] = []

        def fail(exc: BaseException) -> None:
            published = sum(int(a.get("next", 0)) - int(a.get("offset", 0)) for a in acks)
            if isinstance(exc, Exception):
                exc.published_rows = published  # type: ignore[attr-defined]
                exc.add_note(f"the publish was split in {len(parts)} parts; {len(acks)} "
                             f"({published} rows) were published before this one failed, "
                             "the rest were not sent")
            if not fut.done():
                fut.set_exception(exc)

        def send_next() -> None:
            mid, frame, _ = parts[len(acks)]
            part: asyncio.Future = self.loop.create_future()
            try:
                self.protocol.queue_request(mid, frame)
            except LivestreamError as exc:
                fail(exc)
                return
            self._pending[mid] = part
            part.add_done_callback(done)
            self._flush()

        def done(part: asyncio.Future) -> None:
            if part.cancelled():
                fail(ConnectionClosed("publish cancelled"))
                return
            exc = part.exception()
            if exc is not None:
                fail(exc)
                return
            acks.append(part.result())
            if len(acks) < len(parts):
                send_next()
                return
            ack = dict(acks[-1])
            ack["offset"] = acks[0].get("offset")
            ack["rows"] = rows
            ack["parts"] = len(parts)
            if not fut.done():
                fut.set_result(ack)

        send_next()

    async def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time to the server in milliseconds (an application-level ping)."""
        fut: asyncio.Future = self.loop.create_future()
        if self._ws is None:
            raise ConnectionClosed("not connected")
        mid = self.protocol.ping(time.time() * 1000.0)
        self._pending[mid] = fut
        t0 = time.perf_counter()
        self._flush()
        await asyncio.wait_for(fut, timeout)
        return (time.perf_counter() - t0) * 1000.0

    # -- incoming -----------------------------------------------------------------------

    def _on_message(self, raw: str | bytes) -> None:
        s = self.stats_data
        s.messages += 1
        s.bytes += len(raw)
        self._deliver(self.protocol.receive_data(raw))
        self._flush()  # what the message made the protocol send (a resubscribe after refresh)

    def _deliver(self, events: Iterable[Event]) -> None:
        """Act on the protocol's events: callbacks, futures, counters."""
        s = self.stats_data
        for ev in events:
            if isinstance(ev, RowsApplied):
                sub = self.subscriptions.get(ev.topic)
                if sub is not None:
                    sub.dispatch((ev,))
                s.rows += ev.rows
                self._meter.add(ev.rows)
                if ev.ts is not None:
                    s.lag_ms = max(0.0, time.time() * 1000.0 - ev.ts)
            elif isinstance(ev, GapDetected):
                s.gaps += 1
                sub = self.subscriptions.get(ev.topic)
                if sub is not None:
                    sub.dispatch((ev,))
            elif isinstance(ev, Welcomed):
                self._failures = 0
                self._schedule_refresh()
                self._state_changed("live")
                if self._live is not None:
                    self._live.set()
            elif isinstance(ev, TokenRefreshed):
                self._schedule_refresh()
            elif isinstance(ev, TopicDeleted):
                log.info("livestream: topic %r was deleted on %s", ev.topic, self.url)
            elif isinstance(ev, Replied):
                fut = self._pending.pop(ev.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev.message)
            elif isinstance(ev, Refused):
                if isinstance(ev.error, RemoteError):
                    s.errors += 1
                    s.last_error = str(ev.error)
                fut = self._pending.pop(ev.id, None)
                if fut is not None and not fut.done():
                    fut.set_exception(ev.error)
            elif isinstance(ev, ServerError):
                s.errors += 1
                s.last_error = f"{ev.code}: {ev.message}"
                if ev.topic is None:
                    log.warning("livestream: server error %s: %s", ev.code, ev.message)
            elif isinstance(ev, BadFrame):
                s.errors += 1
                s.last_error = str(ev.error)
                log.warning("livestream: bad frame from %s: %s", self.url, ev.error)


def connect(url: str | Sequence[str], **options: Any) -> Connection:
    """Connect to a livestream server; returns at once, connecting in the background.

    ``url`` may be a list of the URLs of a cluster's nodes: they are tried in turn
    (see :class:`Connection`).

    Options: ``token`` (a string, or a callable returning the current token: asked at
    every connect and shortly before the token expires), ``encoding`` ("arrow" or
    "json"), ``reconnect``,
    ``backoff=(base, cap)`` seconds, ``ca`` (a CA bundle for wss), ``verify``,
    ``headers``, ``ping_interval``/``ping_timeout``, ``max_message_size``, ``proxy``
    (an ``http://``, ``https://``, ``socks4://`` or ``socks5://`` proxy URL to tunnel
    through; none by default, the environment's proxy variables are not read).
    """
    return Connection(url, **options)
