"""Outside feeds: any ws:// or wss:// JSON WebSocket feed as live typed DataFrames.

:class:`FeedConnection` is a WebSocket client for feeds livestream did not write
(an exchange's ticker, a chat service, a game server). It runs on the current
asyncio loop (the kernel's in a notebook) or, in a plain script, on livestream's
background ``livestream-io`` loop, and:

* opens the socket with extra ``headers``, ``cookies``, query-string ``params``
  (tokens) and ``subprotocols``; for wss:// the certificate is verified (system
  CAs, or ``ca=`` a PEM bundle of your own);
* sends ``on_open`` messages (a list, or a function of the connection) after
  every connect and reconnect, and optionally waits for the feed's
  acknowledgement (``ack=``, checked against ``ack_error=``);
* answers application-level pings (``ping_match=`` / ``pong=``), sends its own
  (``app_ping=`` every ``app_ping_interval`` s), runs WebSocket ping/pong
  (``ws_ping_interval`` / ``ws_ping_timeout``) and treats a feed silent for
  ``stale_after`` seconds as dropped;
* reconnects with capped exponential backoff and jitter; ``.stats`` shows the
  attempts and the reason of the last failure.

It is three parts: the checked options (:mod:`livestream.client.feeds.options`),
the sans-I/O session that makes every decision
(:mod:`livestream.client.feeds.session`), and this module, the I/O adapter on
:mod:`livestream.client.transport` (picows): sockets, the session loop, timers, the
per-message hot path and the hand-over from other threads.

:meth:`FeedConnection.stream` returns a :class:`~livestream.client.feeds.stream.FeedStream`,
which *is* a :class:`~livestream.client.subscription.Subscription`.

Example::

    feed = livestream.connect("wss://feed.example/ws", protocol="json",
                              on_open=[{"type": "subscribe", "channels": ["ticker"]}],
                              ack={"type": "subscriptions"})
    ticks = feed.stream(select={"type": "ticker"},
                        columns={"time": "datetime", "price": float, "product_id": "category"})
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import inspect
import itertools
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
from tornado.httpclient import HTTPClientError

from ..errors import ConnectionClosed, LivestreamError
from ..loop import call_in_loop, get_loop, on_loop_thread, run_in_loop
from . import registry
from .backoff import Backoff
from .feeds.options import DEFAULT_BACKOFF, FeedOptions, Message, as_messages, encode_message
from .feeds.parse import Column, RowParser
from .feeds.select import Selector
from .feeds.session import FeedError, FeedSession, FeedStats
from .feeds.stream import DeadLetter, FastBatch, FeedStream, Relay
from .state import DEFAULT_WINDOW
from .transport import WebSocket
from .transport import connect as ws_connect

__all__ = [
    "DEFAULT_BACKOFF",
    "Backoff",
    "Column",
    "DeadLetter",
    "FeedConnection",
    "FeedError",
    "FeedOptions",
    "FeedStats",
    "FeedStream",
    "Relay",
    "open_feed",
]

log = logging.getLogger("livestream.feeds")


#: A run of text messages the struct batch handler took before the Struct refused one
#: must be this long for the handler to go on after the refused message; shorter runs mean
#: refusals close together, and the rest of the list goes one message at a time.
MIN_STRUCT_RUN = 16


def _ignore(msg: Any) -> None:
    return None


def _describe(exc: BaseException) -> str:
    """Why an attempt failed, in words (the transport's, which keeps Tornado's error types,
    and the ssl module's errors)."""
    if isinstance(exc, HTTPClientError):
        if exc.code == 599:
            return f"connect failed: {exc.message or exc}"
        return f"handshake refused: HTTP {exc.code} {exc.message or ''}".rstrip()
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate not trusted: {exc.verify_message or exc} "
            "(pass ca='bundle.pem' for a private CA)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "connect timed out"
    if isinstance(exc, FeedError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"connect failed: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


class FeedConnection:
    """A JSON WebSocket client for an outside feed. Create with :func:`open_feed`
    (or ``livestream.connect(url, protocol="json", ...)``).

    Handshake:
        ``headers`` (dict), ``cookies`` (dict → a ``Cookie`` header), ``params``
        (dict appended to the query string, e.g. ``{"token": ...}``),
        ``subprotocols`` (list), ``ca`` (PEM bundle path for wss), ``verify``
        (``False`` turns certificate checks off: never for real credentials),
        ``ssl_context`` (your own :class:`ssl.SSLContext`), ``connect_timeout``.

    Subscribing:
        ``on_open``: message(s) to send after every (re)connect — dicts/lists are
        sent as JSON, str as text, bytes as binary — or a function
        ``on_open(conn)`` returning them (it may also be ``async``, or call
        :meth:`send` itself and return None). ``ack``: a field match (dict) or
        predicate; when given, the connection is live only after ``ack_count``
        matching messages (default: one per on_open message; a feed that sends one
        ack per pair of one subscribe message needs ``ack_count`` = the pairs) arrive
        within ``ack_timeout`` seconds. ``ack_error``: the feed's error messages
        (default: ``type``/``event``/``op``/``status`` == "error"; ``False``: none):
        shown in ``stats.last_feed_error`` and ``last_failure``, logged, kept from
        the streams; while waiting for acks one fails the session. A session that
        ends before its first data message counts for ``max_retries`` and backoff.

    Heartbeats:
        ``ping_match`` (dict, predicate, or an exact text such as ``"ping"``) with
        ``pong`` (a message, or a function of the ping returning one) answers
        app-level pings; those messages do not reach streams. ``app_ping`` (a
        message or a function of the connection) is sent every
        ``app_ping_interval`` seconds while live. ``ws_ping_interval`` /
        ``ws_ping_timeout`` run WebSocket-level pings. ``stale_after``: a feed
        silent that long (any message counts, pongs too) is treated as dropped and
        reconnected; ``stream(..., stale_after=)`` judges a stream by its data.

    Batching:
        rows parsed from the messages that arrive within ``batch_interval``
        seconds (default 0.02: views redraw at most ~20 times a second anyway) are appended to a stream as one typed batch: one
        window update and one ``on_update`` call per batch, not per message.
        ``0`` appends after every read from the socket. A batch also ends after
        ``batch_messages`` messages (default 2048), so that a fast feed is converted
        in batches that stay in the CPU's caches (one read from the socket can hold
        tens of thousands of messages).

    Reconnecting:
        ``backoff``: a :class:`Backoff` or ``(initial, maximum)`` seconds;
        ``max_retries``: consecutive failed attempts before giving up (state
        ``"failed"``; default: never give up); ``reconnect=False`` to end at the
        first drop.

    Limits: ``max_message_size`` (bytes, default 64 MiB), ``dead_letter_limit``
    (dead letters kept per stream, default 1000).

    Proxy: ``proxy="http://[user:pass@]host:port"`` (also ``https://``, ``socks4://``,
    ``socks5://``) tunnels every connect through it; none by default (the environment's
    proxy variables are not read).

    States: ``connecting``, ``subscribing`` (waiting for acks), ``live``,
    ``reconnecting``, ``failed``, ``closed``.

    The options are checked by :class:`~livestream.client.feeds.options.FeedOptions`
    (``feed.options``); the decisions (acks, pings, staleness, backoff) are the
    sans-I/O :class:`~livestream.client.feeds.session.FeedSession`'s
    (``feed.session``); this class moves the bytes, on :mod:`livestream.client.transport`.
    """

    def __init__(self, url: str, *, loop: asyncio.AbstractEventLoop | None = None,
                 **options: Any) -> None:
        #: the checked options (see :class:`FeedOptions`)
        self.options = FeedOptions.of(url, **options)
        #: the sans-I/O decisions of this connection
        self.session = FeedSession(self.options)
        self.url = url
        if loop is None:
            loop, _owned = get_loop()
        self.loop = loop
        self.subscriptions: dict[str, FeedStream] = {}
        self._streams: tuple[FeedStream, ...] = ()
        self._raw_cbs: tuple[Callable[[Any], Any], ...] = ()
        # what a decoded message goes to: the one stream's handler when that is all
        # there is to do, else _dispatch_all (see _reroute)
        self._dispatch: Callable[[Any, str | bytes], None] = self._dispatch_all
        # the one stream's struct fast path, taking raw text before any decode (True: taken),
        # when nothing else has to see the decoded message (see _reroute)
        self._fast: Callable[[Any], bool] | None = None
        # ... and its handler for a list of text messages (see FeedStream._fast_batch)
        self._fast_batch: FastBatch | None = None
        self._route_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ws: WebSocket | None = None
        self._gen = 0
        self._count = 0
        self._batch_open = False
        # a batch ends after batch_interval s (this timer) or at message _batch_full_at
        self._batch_timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._batch_full_at = 0
        self._closed_fut: asyncio.Future | None = None
        self._ack_fut: asyncio.Future | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._wake: asyncio.Event | None = None
        self._live_flag = threading.Event()
        self._ended = threading.Event()
        self._task: asyncio.Task | None = None
        self._conn_errors = 0
        self._conn_last_error: str | None = None
        registry.register(self)
        call_in_loop(loop, self._start)

    def __repr__(self) -> str:
        s = self.stats
        said = f" feed_error={s.last_feed_error!r}" if s.last_feed_error else ""
        return (
            f"<FeedConnection {self.name} {self.url} {self.display_state} "
            f"streams={len(self.subscriptions)} attempts={s.attempts} "
            f"last_failure={s.last_failure!r}{said}>"
        )

    # -- public API -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        """connecting, subscribing, live, reconnecting, failed or closed."""
        return self.session.state

    @property
    def closed(self) -> bool:
        return self.session.closing

    @property
    def name(self) -> str:
        """The feed's name in listings: the host of its URL."""
        return urlsplit(self.url).hostname or self.url

    @property
    def paused(self) -> bool:
        """Whether every stream of this feed is paused (:meth:`pause`)."""
        streams = [st for st in self._streams if not st.closed]
        return bool(streams) and all(st.paused for st in streams)

    @property
    def display_state(self) -> str:
        """:attr:`state`, or ``paused`` while live with every stream paused."""
        state = self.state
        return "paused" if state == "live" and self.paused else state

    @property
    def stats_data(self) -> FeedStats:
        """The counters as they are (see :attr:`stats`)."""
        return self.session.stats

    @property
    def stats(self) -> FeedStats:
        """Counters, with attempts and the reason of the last failure."""
        s = self.session.stats
        streams = self._streams
        last = self.session.last_message
        s.messages = self._count
        s.last_message_age = None if last is None else time.monotonic() - last
        s.rows = sum(st.stats_data.rows for st in streams)
        s.rows_per_s = sum(st.machine.meter.rate() for st in streams)
        s.dead_letters = sum(st.stats_data.extra.get("dead_letters", 0) for st in streams)
        s.stream_errors = {st.name: st.stats_data.errors for st in streams}
        s.errors = self._conn_errors + sum(s.stream_errors.values())
        lasts = [st.stats_data.last_error for st in streams if st.stats_data.last_error]
        s.last_error = self._conn_last_error or (lasts[-1] if lasts else None)
        s.subscriptions = len(streams)
        return s

    def stream(
        self,
        select: Selector = None,
        *,
        path: str | Sequence[str | int] | Callable[[Any], Any] | None = None,
        columns: Mapping[str, Any] | Sequence[str] | None = None,
        required: Sequence[str] = (),
        window: int | None = DEFAULT_WINDOW,
        name: str | None = None,
        stale_after: float | None = None,
        envelope: Mapping[str, Any] | None = None,
    ) -> FeedStream:
        """A live window of rows parsed from this feed's messages (a Subscription).

        ``select``: which messages (a predicate, or a field match such as
        ``{"type": "ticker"}``; default: all). ``path``: where the records sit in a
        message (``"data"``, ``"data.trades"``, ``["data", 0]`` or a function); the
        value there may be one record or a list of them; records may be objects or
        arrays. ``columns``: output name → type, ``(source, type)`` or
        :class:`Column` (see :mod:`livestream.client.feeds.convert` for the types and
        coercions); a list of names, or None for every scalar field, infers types.
        ``required``: columns whose absence dead-letters a record. ``envelope``:
        columns copied from the message onto every record ``path`` selects
        (name → path in the message, e.g. ``{"pair": -1}``). ``window``:
        rows kept. Messages that do not fit are counted and dead-lettered.
        ``stale_after``: seconds without a message this stream selects, while the
        feed is live, after which the feed is reconnected and resubscribed (judged
        by data: pings, pongs, acks and other streams' messages do not count).
        """
        if self.session.closing:
            raise ConnectionClosed(f"feed {self.url} is closed")
        parser = RowParser(select=select, path=path, columns=columns, required=required,
                           envelope=envelope)
        with self._lock:
            if name is None:
                if isinstance(select, Mapping):
                    name = ",".join(f"{k}={v}" for k, v in select.items())
                else:
                    name = f"stream{len(self.subscriptions) + 1}"
            base, i = name, 2
            while name in self.subscriptions:
                name = f"{base}#{i}"
                i += 1
            st = FeedStream(self, parser, name=name, window=window,
                            dead_letter_limit=self.options.dead_letter_limit,
                            stale_after=stale_after)
            st.set_state(self.state)
            self.subscriptions[name] = st
            self._streams = (*self._streams, st)
        self._reroute()
        return st

    def on_message(self, callback: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Call ``callback(message)`` with every decoded message (not pings/acks), on the loop."""
        self._raw_cbs = (*self._raw_cbs, callback)
        self._reroute()
        return callback

    def send(self, message: Message) -> None:
        """Send a message now (dict/list as JSON, str as text, bytes as binary).

        Raises :class:`~livestream.errors.ConnectionClosed` when not connected. Safe
        from any thread.
        """
        data = encode_message(message)
        if on_loop_thread(self.loop):
            self._send_now(data)
        else:
            run_in_loop(self.loop, self._send_now, data, timeout=10.0)

    def _send_now(self, data: str | bytes) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionClosed(f"feed {self.url} is not connected ({self.state})")
        ws.send(data)

    def wait_open(self, timeout: float = 10.0) -> FeedConnection:
        """Block until live (scripts; not on the feed's own loop). Raises TimeoutError
        naming the last failure, or ConnectionClosed if closed or failed."""
        if on_loop_thread(self.loop):
            raise LivestreamError(
                "wait_open() would block the loop the feed runs on; use 'await feed.opened()'"
            )
        deadline = time.monotonic() + timeout
        while not self._live_flag.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            self._check_waitable(timeout, deadline)
        return self

    async def opened(self, timeout: float = 10.0) -> FeedConnection:
        """Await until live. Raises TimeoutError naming the last failure."""
        deadline = time.monotonic() + timeout
        while not self._live_flag.is_set():
            self._check_waitable(timeout, deadline)
            await asyncio.sleep(0.005)
        return self

    def _check_waitable(self, timeout: float, deadline: float) -> None:
        s = self.session.stats
        if self.session.closing or self.state in ("failed", "closed"):
            raise ConnectionClosed(
                f"feed {self.url} is {self.state} (last failure: {s.last_failure})"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"feed {self.url} not live after {timeout}s ({self.state}, "
                f"{s.attempts} attempts; last failure: {s.last_failure})"
            )

    def pause(self) -> None:
        """Pause every stream of this feed (the socket stays open; messages are ignored)."""
        for st in list(self._streams):
            st.pause()

    def resume(self) -> None:
        """Resume every stream of this feed."""
        for st in list(self._streams):
            st.resume()

    def close(self, timeout: float = 5.0, *, code: int = 1000,
              reason: str = "client closed") -> None:
        """Close the socket and every stream. Safe from any thread, and twice.

        From a thread other than the loop's, waits up to ``timeout`` s for the loop
        to have done it. ``code``/``reason`` go into the WebSocket close frame.
        """
        if self.session.closing:
            return
        self.session.closing = True
        if on_loop_thread(self.loop):
            self._shutdown(code, reason)
        elif self.loop.is_running() and not self.loop.is_closed():
            try:
                run_in_loop(self.loop, self._shutdown, code, reason, timeout=timeout)
            except Exception:  # the loop is gone or stuck: release what we can
                self._shutdown_offloop()
        else:
            self._shutdown_offloop()

    async def aclose(self) -> None:
        """Close, from async code on the feed's loop."""
        self.close()

    def __enter__(self) -> FeedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # status display -------------------------------------------------------------------

    def _repr_html_(self) -> str:
        s = self.stats
        rows = "".join(
            f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in (("state", s.state), ("attempts", s.attempts),
                         ("reconnects", s.reconnects), ("last failure", s.last_failure),
                         ("feed's last error", s.last_feed_error),
                         ("messages", s.messages), ("rows", s.rows),
                         ("rows/s", f"{s.rows_per_s:.0f}"),
                         ("dead letters", s.dead_letters), ("streams", s.subscriptions))
        )
        return (f"<b>livestream feed</b> <code>{html.escape(self.url)}</code>"
                f"<table>{rows}</table>")

    def status(self) -> Any:
        """The status widget of this feed (see :func:`livestream.subscriptions`)."""
        return registry.subscriptions(self).widget()

    # -- the session loop (on the loop) ---------------------------------------------------

    def _start(self) -> None:
        if self.session.closing:
            return
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def _set_state(self, state: str) -> None:
        if not self.session.set_state(state):
            return
        if state == "live":
            self._live_flag.set()
        else:
            self._live_flag.clear()
        for st in self._streams:
            if not st.paused and not st.closed:
                st.set_state(state)

    def _fail(self, reason: str) -> None:
        self.session.failed(reason)
        log.info("livestream: feed %s: %s", self.url, reason)

    async def _run(self) -> None:
        session = self.session
        try:
            while not session.closing:
                was_live = False
                try:
                    was_live = await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reason = _describe(exc)
                    self._drop(None)
                    self._fail(reason)
                if session.closing:
                    break
                step = session.next_attempt(was_live)
                if isinstance(step, str):  # "closed" (no reconnect) or "failed" (retries spent)
                    self._end(step)
                    break
                self._set_state("reconnecting")
                assert self._wake is not None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), step)
        except asyncio.CancelledError:
            pass
        finally:
            self._ended.set()

    async def _session(self) -> bool:
        """One connection: connect, subscribe, run until it ends. Returns True if it was live.

        Raises on a failed connect or subscribe; a live session that ends records
        its reason with :meth:`_fail` and returns True.
        """
        loop = asyncio.get_running_loop()
        o, session = self.options, self.session
        self._gen += 1
        gen = self._gen
        closed: asyncio.Future = loop.create_future()
        self._closed_fut = closed
        self._set_state(session.attempt())
        on_message, on_texts = self._make_callback(gen)
        ws = await ws_connect(
            o.request_url, on_message, lambda _ws: on_message(None), on_texts=on_texts,
            headers=o.headers, subprotocols=o.subprotocols, ssl=o.ssl,
            connect_timeout=o.connect_timeout, ping_interval=o.ws_ping_interval,
            ping_timeout=o.ws_ping_timeout, max_message_size=o.max_message_size,
            proxy=o.proxy,
        )
        if session.closing or gen != self._gen:
            ws.close(1000, "client closed")
            return False
        self._ws = ws
        if session.connected():
            for st in self._streams:
                st.stats_data.reconnects += 1
        if o.stale_after is not None:
            self._schedule(o.stale_after / 4, self._stale_tick, gen)

        # subscribe
        msgs = await self._open_messages()
        if session.subscribing(len(msgs)):
            self._ack_fut = loop.create_future()
            self._reroute()
            self._set_state("subscribing")
        for m in msgs:
            ws.send(encode_message(m))
        if self._ack_fut is not None:
            ack_fut = self._ack_fut
            done, _ = await asyncio.wait({ack_fut, closed}, timeout=o.ack_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            self._ack_fut = None
            self._reroute()
            if ack_fut not in done:
                if closed.done():
                    raise FeedError(f"connection ended before the acknowledgement: {closed.result()}")
                raise FeedError(f"no acknowledgement within {o.ack_timeout:g}s")
            ack_fut.result()  # raises FeedError for an error ack
        session.live()
        self._set_state("live")
        if o.app_ping is not None and o.app_ping_interval is not None:
            self._schedule(o.app_ping_interval, self._app_ping_tick, gen)
        reason = await closed
        self._cancel_timers()
        if not session.closing:
            self._fail(reason)
        return True

    async def _open_messages(self) -> list:
        on_open = self.options.on_open
        if on_open is None:
            return []
        if not callable(on_open):
            return list(self.options.on_open_messages)
        result = on_open(self)
        if inspect.isawaitable(result):
            result = await result
        return as_messages(result, "on_open(conn)")

    # -- timers ---------------------------------------------------------------------------

    def _schedule(self, delay: float, fn: Callable[[int], None], gen: int) -> None:
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(self.loop.call_later(delay, fn, gen))

    def _cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers = []

    def _stale_tick(self, gen: int) -> None:
        after = self.options.stale_after
        if gen != self._gen or self.session.closing or after is None:
            return
        if self.session.is_stale():
            self._drop(self.session.stale_reason(), abort=True)
            return
        self._schedule(after / 4, self._stale_tick, gen)

    def _app_ping_tick(self, gen: int) -> None:
        if gen != self._gen or self.session.closing or self._ws is None:
            return
        try:
            data = self.session.app_ping(self)
            if data is not None:
                self._send_now(data)
                self.session.stats.pings_sent += 1
        except Exception as exc:
            self._conn_error(f"app ping failed: {exc!r}")
        assert self.options.app_ping_interval is not None
        self._schedule(self.options.app_ping_interval, self._app_ping_tick, gen)

    def _conn_error(self, msg: str) -> None:
        self._conn_errors += 1
        self._conn_last_error = msg

    # -- ending a session -----------------------------------------------------------------

    def _drop(self, reason: str | None, *, abort: bool = False, code: int = 1000) -> None:
        """End the current session (its callback goes deaf), resolving its ``closed`` future."""
        self._gen += 1
        self._cancel_timers()
        ws, self._ws = self._ws, None
        fut = self._closed_fut
        if fut is not None and not fut.done() and reason is not None:
            fut.set_result(reason)
            if not self.session.closing:
                self._set_state("reconnecting")
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close(code, reason[:100] if reason else None)
            if abort:
                ws.abort_soon()  # a stalled peer may never answer the close frame

    def _end(self, state: str) -> None:
        self._set_state(state)
        if state == "closed":
            for st in list(self._streams):
                st.mark_closed()

    def _shutdown(self, code: int, reason: str) -> None:
        self.session.closing = True
        for st in list(self._streams):
            st._flush()
        self._drop(reason, code=code)
        if self._wake is not None:
            self._wake.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._end("closed")
        for st in list(self._streams):
            st.close()
        registry.unregister(self)

    def _shutdown_offloop(self) -> None:
        """Close without the loop (interpreter exit after the loop stopped): abort sockets."""
        self.session.closing = True
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.abort_offloop()
        self.session.stats.state = "closed"
        self._live_flag.clear()
        for st in list(self._streams):
            st.mark_closed()
        registry.unregister(self)

    # -- streams (the hooks a Subscription calls) ---------------------------------------------

    def subscription_closed(self, st: FeedStream) -> None:
        """Forget a stream (``st.close()``)."""
        with self._lock:
            if self.subscriptions.get(st.name) is st:
                del self.subscriptions[st.name]
            self._streams = tuple(x for x in self._streams if x is not st)
        self._reroute()

    def subscription_paused(self, st: FeedStream) -> None:
        """Nothing to do: the stream ignores its messages while paused."""

    def subscription_resumed(self, st: FeedStream) -> None:
        """The stream takes messages again, from now on (``st.resume()``)."""
        st.set_state(self.state)

    # -- the hot path ---------------------------------------------------------------------

    def _make_callback(self, gen: int) -> tuple[Callable[[str | bytes | None], None],
                                                Callable[[list[bytes]], None]]:
        """The session's two message handlers: one message at a time (``None``: the
        socket closed), and a list of text messages (from the transport, whose UTF-8
        it has checked), which goes to the one stream's struct batch handler when it
        can take them, else one at a time."""
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        ping_text = self.options.ping_text
        ping_bytes = None if ping_text is None else ping_text.encode("utf-8")
        ping = self.options.ping
        loop = self.loop
        batch_interval = self.options.batch_interval
        batch_messages = self.options.batch_messages

        def open_batch(count: int) -> None:
            """A batch starts at message ``count``: it ends after ``batch_interval`` or
            ``batch_messages`` messages, whichever comes first."""
            self._batch_open = True
            self._batch_full_at = count + batch_messages
            self._batch_timer = (loop.call_later(batch_interval, self._end_batch)
                                 if batch_interval else loop.call_soon(self._end_batch))

        def next_batch() -> None:
            if self._batch_timer is not None:
                self._batch_timer.cancel()
            self._end_batch()

        def on_message(raw: str | bytes | None) -> None:
            if gen != self._gen:
                return
            if raw is None:
                self._on_socket_closed(gen)
                return
            count = self._count = self._count + 1
            if not self._batch_open:
                open_batch(count)
            elif count >= self._batch_full_at:  # a full batch: convert it now
                next_batch()
                open_batch(count)
            handle(raw)

        def handle(raw: str | bytes) -> None:
            if ping_text is not None and raw == ping_text:
                self._answer_ping(raw)
                return
            fast = self._fast
            if fast is not None and fast(raw):
                return
            general(raw)

        def general(raw: str | bytes) -> None:
            try:
                msg = loads(raw)
            except decode_error as exc:
                self.session.stats.not_json += 1
                for st in self._streams:
                    st._not_json(raw, exc)
                return
            if ping is not None and ping(msg):
                self._answer_ping(msg)
                return
            self._dispatch(msg, raw)

        def on_texts(texts: list[bytes]) -> None:
            # the same steps as on_message, a batch's share of the list at a time
            i, n = 0, len(texts)
            while i < n and gen == self._gen:
                first = self._count + 1
                if not self._batch_open:
                    open_batch(first)
                elif first >= self._batch_full_at:
                    next_batch()
                    if gen != self._gen:  # the batch's callbacks closed the feed
                        return
                    open_batch(first)
                take = min(n - i, self._batch_full_at - first)
                chunk = texts if take == n else texts[i:i + take]
                i += take
                self._count += take
                fast = self._fast_batch
                at = 0
                if fast is not None and (ping_bytes is None or ping_bytes not in chunk):
                    at = runs(fast, chunk)
                for t in itertools.islice(chunk, at, None):
                    handle(t.decode("utf-8"))

        def runs(fast: FastBatch, chunk: list[bytes]) -> int:
            """Runs of ``chunk`` through the struct batch handler, each refused message
            between them the per-message way; returns where the rest of ``chunk`` goes
            one at a time (refusals close together: the runs would be too short to pay)."""
            at, m = 0, len(chunk)
            while at < m:
                others, taken = fast(chunk, at)
                for t in others:
                    general(t.decode("utf-8"))
                at += taken
                if at < m:  # chunk[at] is a message the Struct refused
                    handle(chunk[at].decode("utf-8"))
                    at += 1
                    if taken < MIN_STRUCT_RUN:
                        break
            return at

        return on_message, on_texts

    def _reroute(self) -> None:
        """Recompute where decoded messages go (after a change of streams, callbacks,
        acknowledgement wait, or a stream's handler): straight to the one stream's
        handler when there is nothing else to do, which saves a loop per message."""
        with self._route_lock:
            streams = self._streams
            one = len(streams) == 1 and not self._raw_cbs and self._ack_fut is None
            for st in streams:
                st._unselected = self._is_feed_error if one else _ignore
            if one:
                st = streams[0]
                self._dispatch = self._one_stream(st)
                # the struct fast path when the decoded message has nothing else to go
                # to: no ping detector, and no feed-error check before the stream
                fast = st._fast
                if self.options.ping is not None or (
                        self.options.ack_error is not None and st._select is None):
                    fast = None
                self._fast = fast
                self._fast_batch = None if fast is None else st._fast_batch
            else:
                self._dispatch = self._dispatch_all
                self._fast = self._fast_batch = None

    def _one_stream(self, st: FeedStream) -> Callable[[Any, str | bytes], None]:
        """The dispatch to one stream: its handler, which hands what it does not select to
        the feed's error check; a stream without a selector gets the check first."""
        feed = st._feed
        if self.options.ack_error is None or st._select is not None:
            return feed
        check = self._is_feed_error

        def dispatch(msg: Any, raw: str | bytes) -> None:
            if check(msg):
                return
            feed(msg, raw)

        return dispatch

    def _is_feed_error(self, msg: Any) -> bool:
        """Whether ``msg`` is an error message of the feed (``ack_error``): recorded in
        ``stats.last_feed_error``, logged as a warning, kept from the streams."""
        is_error = self.options.ack_error
        try:
            if is_error is None or not is_error(msg):
                return False
        except Exception as exc:
            self._conn_error(f"ack_error raised {exc!r}")
            return False
        text = self.session.feed_error(msg)
        log.warning("livestream: feed %s sent an error: %s", self.url, text)
        return True

    def _stream_stale(self, st: FeedStream, reason: str) -> None:
        """A stream with ``stale_after`` got no data for that long while live: the
        session is dropped (and resubscribed after the backoff)."""
        if self.session.closing or self._ws is None:
            return
        self.session.stats.stale += 1
        self._drop(reason, abort=True)

    def _dispatch_all(self, msg: Any, raw: str | bytes) -> None:
        if self._ack_fut is not None and self._check_ack(msg):
            return
        is_error = self._is_feed_error(msg)
        if not is_error:
            if not self._streams:
                self.session.data()
            for st in self._streams:
                st._feed(msg, raw)
        if self._raw_cbs:  # on_message sees the feed's error messages too
            for cb in self._raw_cbs:
                try:
                    cb(msg)
                except Exception as exc:
                    self._conn_error(f"on_message callback failed: {exc!r}")
                    log.exception("livestream: on_message callback failed")

    def _end_batch(self) -> None:
        self._batch_open = False
        self.session.seen()
        got = 0
        for st in self._streams:
            got += st._flush()
        if got:
            self.session.data()

    def _answer_ping(self, msg: Any) -> None:
        try:
            reply = self.session.pong(msg)
            if reply is not None:
                self._send_now(reply)
            self.session.stats.pings_answered += 1
        except Exception as exc:
            self._conn_error(f"answering a ping failed: {exc!r}")

    def _check_ack(self, msg: Any) -> bool:
        fut = self._ack_fut
        assert fut is not None
        if fut.done():
            return False
        result = self.session.check_ack(msg)
        if result is None:
            return False
        if result == "refused":
            fut.set_exception(self.session.refusal(msg))
        elif result == "acked":
            fut.set_result(True)
        return True

    def _on_socket_closed(self, gen: int) -> None:
        ws = self._ws
        code = getattr(ws, "close_code", None)
        why = getattr(ws, "close_reason", None)
        if code is not None:
            reason = f"closed by the feed (code {code}{': ' + why if why else ''})"
        else:
            reason = "connection lost"
        self._drop(reason)


def open_feed(url: str, **options: Any) -> FeedConnection:
    """Open an outside JSON feed; returns at once, connecting in the background.

    This is what ``livestream.connect(url, protocol="json", **options)`` calls; the
    options are those of :class:`FeedConnection`.
    """
    return FeedConnection(url, **options)

