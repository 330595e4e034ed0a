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
import inspect
import logging
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ..errors import ConnectionClosed, LivestreamError
from . import registry
from .backoff import Backoff
from .feeds.parse import Column, RowParser, Selector, compile_selector
from .feeds.stream import DeadLetter, FeedStream, Relay
from .loop import call_in_loop, get_loop, on_loop_thread, run_in_loop
from .subscription import DEFAULT_WINDOW

__all__ = [
    "Backoff",
    "Column",
    "DeadLetter",
    "FeedConnection",
    "FeedError",
    "FeedStats",
    "FeedStream",
    "Relay",
    "open_feed",
]

log = logging.getLogger("livestream.feeds")

Message = Mapping[str, Any] | Sequence[Any] | str | bytes
OnOpen = Sequence[Message] | Message | Callable[..., Any] | None
Reply = Message | Callable[[Any], Any]


class FeedError(LivestreamError):
    """An outside feed refused or broke the session (no ack, an error ack, bad options)."""

    code = "feed_error"


#: Feeds' default reconnect delays: 0.5 s doubling up to 30 s, with jitter.
DEFAULT_BACKOFF = Backoff()


@dataclass
class FeedStats:
    """Counters of a feed connection (``feed.stats``)."""

    url: str
    state: str = "connecting"
    attempts: int = 0  #: connection attempts made, successful or not
    connects: int = 0  #: handshakes that succeeded
    reconnects: int = 0  #: successful handshakes after the first
    failures: int = 0  #: consecutive failed attempts (0 while live)
    last_failure: str | None = None  #: why the last attempt failed or the last session ended
    last_failure_at: float | None = None  #: ``time.time()`` of ``last_failure``
    next_retry_in: float | None = None  #: the backoff delay chosen after the last failure
    messages: int = 0  #: messages received, all sessions
    last_message_age: float | None = None  #: seconds since a message last arrived
    rows: int = 0  #: rows appended, all streams
    rows_per_s: float = 0.0
    stale: int = 0  #: sessions dropped because the feed went silent
    subscribes: int = 0  #: times the on_open messages were sent
    acks: int = 0  #: acknowledgements received
    pings_answered: int = 0
    pings_sent: int = 0
    not_json: int = 0
    dead_letters: int = 0  #: all streams
    errors: int = 0  #: dead letters, failed callbacks, failed sends
    last_error: str | None = None
    subscriptions: int = 0  #: open streams


def _match(spec: Any, what: str) -> Callable[[Any], bool] | None:
    try:
        return compile_selector(spec)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None


def _encode(msg: Any) -> str | bytes:
    if isinstance(msg, (bytes, bytearray)):
        return bytes(msg)
    if isinstance(msg, str):
        return msg
    try:
        return orjson.dumps(msg, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as exc:
        raise TypeError(f"cannot send {msg!r} as JSON: {exc}") from None


def _with_params(url: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(str(k), str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _describe(exc: BaseException) -> str:
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
        matching messages (default: one per on_open message) arrive within
        ``ack_timeout`` seconds; a message matching ``ack_error`` fails the
        session (reason in ``stats.last_failure``) and it is retried with backoff.

    Heartbeats:
        ``ping_match`` (dict, predicate, or an exact text such as ``"ping"``) with
        ``pong`` (a message, or a function of the ping returning one) answers
        app-level pings; those messages do not reach streams. ``app_ping`` (a
        message or a function of the connection) is sent every
        ``app_ping_interval`` seconds while live. ``ws_ping_interval`` /
        ``ws_ping_timeout`` run WebSocket-level pings. ``stale_after``: a feed
        silent that long is treated as dropped and reconnected.

    Batching:
        rows parsed from the messages that arrive within ``batch_interval``
        seconds (default 0.02: views redraw at most ~20 times a second anyway) are appended to a stream as one typed batch: one
        window update and one ``on_update`` call per batch, not per message.
        ``0`` appends after every read from the socket.

    Reconnecting:
        ``backoff``: a :class:`Backoff` or ``(initial, maximum)`` seconds;
        ``max_retries``: consecutive failed attempts before giving up (state
        ``"failed"``; default: never give up); ``reconnect=False`` to end at the
        first drop.

    States: ``connecting``, ``subscribing`` (waiting for acks), ``live``,
    ``reconnecting``, ``failed``, ``closed``.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        subprotocols: Sequence[str] | None = None,
        ca: str | os.PathLike | None = None,
        verify: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        on_open: OnOpen = None,
        ack: Selector = None,
        ack_error: Selector = None,
        ack_count: int | None = None,
        ack_timeout: float = 10.0,
        ping_match: Selector | str = None,
        pong: Reply | None = None,
        app_ping: Message | Callable[[FeedConnection], Any] | None = None,
        app_ping_interval: float | None = None,
        ws_ping_interval: float | None = None,
        ws_ping_timeout: float | None = None,
        stale_after: float | None = None,
        backoff: Backoff | tuple[float, float] = DEFAULT_BACKOFF,
        max_retries: int | None = None,
        reconnect: bool = True,
        max_message_size: int = 64 * 1024 * 1024,
        dead_letter_limit: int = 1000,
        batch_interval: float = 0.02,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"an outside feed URL starts with ws:// or wss://, got {url!r}")
        self.url = url
        self._request_url = _with_params(url, params)
        hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
        if cookies:
            cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
            hdrs["Cookie"] = f"{hdrs['Cookie']}; {cookie}" if "Cookie" in hdrs else cookie
        self.headers = hdrs
        if subprotocols is not None and (
            isinstance(subprotocols, str) or not all(isinstance(p, str) for p in subprotocols)
        ):
            raise TypeError(f"subprotocols must be a list of strings, got {subprotocols!r}")
        self.subprotocols = list(subprotocols) if subprotocols is not None else None
        self._ssl = self._make_ssl(url, ca, verify, ssl_context)
        for name, val in (("connect_timeout", connect_timeout), ("ack_timeout", ack_timeout),
                          ("app_ping_interval", app_ping_interval),
                          ("ws_ping_interval", ws_ping_interval),
                          ("ws_ping_timeout", ws_ping_timeout), ("stale_after", stale_after)):
            if val is not None and not (isinstance(val, (int, float)) and val > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {val!r}")
        self.connect_timeout = float(connect_timeout)
        if on_open is not None and not callable(on_open):
            self._on_open_msgs: list = self._as_messages(on_open, "on_open")
        self.on_open = on_open
        self._ack = _match(ack, "ack")
        self._ack_error = _match(ack_error, "ack_error")
        if ack_count is not None and (ack_count < 1 or self._ack is None):
            raise ValueError("ack_count needs ack= and must be at least 1")
        self.ack_count = ack_count
        self.ack_timeout = float(ack_timeout)
        if isinstance(ping_match, str):
            self._ping_text: str | None = ping_match
            self._ping: Callable[[Any], bool] | None = None
        else:
            self._ping_text = None
            self._ping = _match(ping_match, "ping_match")
        if ping_match is not None and pong is None:
            raise ValueError("ping_match needs pong= (the reply to send, or a function of the ping)")
        if pong is not None and ping_match is None:
            raise ValueError("pong= needs ping_match= (which messages are pings)")
        self._pong = pong
        if (app_ping is None) != (app_ping_interval is None):
            raise ValueError("app_ping and app_ping_interval go together")
        self._app_ping = app_ping
        self.app_ping_interval = app_ping_interval
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.stale_after = stale_after
        if isinstance(backoff, tuple):
            backoff = Backoff(*backoff)
        if not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff or (initial, maximum), got {backoff!r}")
        self.backoff = backoff
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0 (or None to retry forever)")
        self.max_retries = max_retries
        self.reconnect = reconnect
        self.max_message_size = max_message_size
        self.dead_letter_limit = dead_letter_limit
        if not (isinstance(batch_interval, (int, float)) and 0 <= batch_interval <= 1):
            raise ValueError(f"batch_interval must be between 0 and 1 s, got {batch_interval!r}")
        self.batch_interval = float(batch_interval)

        if loop is None:
            loop, _owned = get_loop()
        self.loop = loop
        self.stats_data = FeedStats(url)
        self.subscriptions: dict[str, FeedStream] = {}
        self._streams: tuple[FeedStream, ...] = ()
        self._raw_cbs: tuple[Callable[[Any], Any], ...] = ()
        # what a decoded message goes to: the one stream's handler when that is all
        # there is to do, else _dispatch_all (see _reroute)
        self._dispatch: Callable[[Any, str | bytes], None] = self._dispatch_all
        self._route_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ws: WebSocketClientConnection | None = None
        self._gen = 0
        self._count = 0
        self._batch_open = False
        self._last_msg: float | None = None
        self._closed_fut: asyncio.Future | None = None
        self._ack_fut: asyncio.Future | None = None
        self._acks_left = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._closing = False
        self._wake: asyncio.Event | None = None
        self._live_flag = threading.Event()
        self._ended = threading.Event()
        self._task: asyncio.Task | None = None
        self._conn_errors = 0
        self._conn_last_error: str | None = None
        registry.register(self)
        call_in_loop(loop, self._start)

    # -- setup helpers --------------------------------------------------------------------

    @staticmethod
    def _make_ssl(url: str, ca: Any, verify: bool,
                  ctx: ssl.SSLContext | None) -> ssl.SSLContext | None:
        if not url.startswith("wss://"):
            if ca is not None or ctx is not None:
                raise ValueError("ca= and ssl_context= apply to wss:// URLs only")
            return None
        if ctx is not None:
            if ca is not None:
                raise ValueError("pass either ca= or ssl_context=, not both")
            return ctx
        if ca is not None and not os.path.isfile(ca):
            raise FileNotFoundError(f"ca bundle {os.fspath(ca)!r} does not exist")
        ctx = ssl.create_default_context(cafile=os.fspath(ca) if ca is not None else None)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    @staticmethod
    def _as_messages(value: Any, what: str) -> list:
        if value is None:
            return []
        if isinstance(value, (Mapping, str, bytes, bytearray)):
            msgs = [value]
        elif isinstance(value, (list, tuple)):
            msgs = list(value)
        else:
            raise TypeError(
                f"{what} must be a message (dict, str, bytes), a list of them, or a function "
                f"of the connection; got {type(value).__name__}"
            )
        for m in msgs:
            _encode(m)  # fail early on what cannot be sent
        return msgs

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<FeedConnection {self.url} {s.state} streams={len(self.subscriptions)} "
            f"attempts={s.attempts} last_failure={s.last_failure!r}>"
        )

    # -- public API -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        """connecting, subscribing, live, reconnecting, failed or closed."""
        return self.stats_data.state

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def stats(self) -> FeedStats:
        """Counters, with attempts and the reason of the last failure."""
        s = self.stats_data
        streams = self._streams
        s.messages = self._count
        s.last_message_age = None if self._last_msg is None else time.monotonic() - self._last_msg
        s.rows = sum(st.stats_data.rows for st in streams)
        s.rows_per_s = sum(st._meter.rate() for st in streams)
        s.dead_letters = sum(st.stats_data.extra.get("dead_letters", 0) for st in streams)
        s.errors = self._conn_errors + sum(st.stats_data.errors for st in streams)
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
    ) -> FeedStream:
        """A live window of rows parsed from this feed's messages (a Subscription).

        ``select``: which messages (a predicate, or a field match such as
        ``{"type": "ticker"}``; default: all). ``path``: where the records sit in a
        message (``"data"``, ``"data.trades"``, ``["data", 0]`` or a function); the
        value there may be one record or a list of them; records may be objects or
        arrays. ``columns``: output name → type, ``(source, type)`` or
        :class:`Column` (see :mod:`livestream.client.feeds.parse` for the types and
        coercions); a list of names, or None for every scalar field, infers types.
        ``required``: columns whose absence dead-letters a record. ``window``:
        rows kept. Messages that do not fit are counted and dead-lettered.
        """
        if self._closing:
            raise ConnectionClosed(f"feed {self.url} is closed")
        parser = RowParser(select=select, path=path, columns=columns, required=required)
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
                            dead_letter_limit=self.dead_letter_limit)
            st._set_state(self.state)
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
        data = _encode(message)
        if on_loop_thread(self.loop):
            self._send_now(data)
        else:
            run_in_loop(self.loop, self._send_now, data, timeout=10.0)

    def _send_now(self, data: str | bytes) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionClosed(f"feed {self.url} is not connected ({self.state})")
        ws.write_message(data, binary=isinstance(data, bytes))

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
        if self._closing or self.state in ("failed", "closed"):
            raise ConnectionClosed(
                f"feed {self.url} is {self.state} (last failure: {self.stats_data.last_failure})"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"feed {self.url} not live after {timeout}s ({self.state}, "
                f"{self.stats_data.attempts} attempts; last failure: "
                f"{self.stats_data.last_failure})"
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
        if self._closing:
            return
        self._closing = True
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
            f"<tr><td>{k}</td><td>{v}</td></tr>"
            for k, v in (("state", s.state), ("attempts", s.attempts),
                         ("reconnects", s.reconnects), ("last failure", s.last_failure),
                         ("messages", s.messages), ("rows", s.rows),
                         ("rows/s", f"{s.rows_per_s:.0f}"),
                         ("dead letters", s.dead_letters), ("streams", s.subscriptions))
        )
        import html

        return (f"<b>livestream feed</b> <code>{html.escape(self.url)}</code>"
                f"<table>{rows}</table>")

    def status(self) -> Any:
        """The status widget of this feed (see :func:`livestream.subscriptions`)."""
        return registry.subscriptions(self).widget()

    # -- the session loop (on the loop) ---------------------------------------------------

    def _start(self) -> None:
        if self._closing:
            return
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def _set_state(self, state: str) -> None:
        if self.stats_data.state == state:
            return
        self.stats_data.state = state
        if state == "live":
            self._live_flag.set()
        else:
            self._live_flag.clear()
        for st in self._streams:
            if not st.paused and not st.closed:
                st._set_state(state)

    def _fail(self, reason: str) -> None:
        s = self.stats_data
        s.failures += 1
        s.last_failure = reason
        s.last_failure_at = time.time()
        log.info("livestream: feed %s: %s", self.url, reason)

    async def _run(self) -> None:
        try:
            while not self._closing:
                self.stats_data.attempts += 1
                was_live = False
                try:
                    was_live = await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reason = _describe(exc)
                    self._drop(None)
                    self._fail(reason)
                if self._closing:
                    break
                if was_live:
                    self.stats_data.failures = 1
                if not self.reconnect:
                    self._end("closed")
                    break
                if self.max_retries is not None and self.stats_data.failures > self.max_retries:
                    self._end("failed")
                    break
                delay = self.backoff.delay(self.stats_data.failures)
                self.stats_data.next_retry_in = delay
                self._set_state("reconnecting")
                assert self._wake is not None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
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
        self._gen += 1
        gen = self._gen
        closed: asyncio.Future = loop.create_future()
        self._closed_fut = closed
        self._set_state("connecting" if self.stats_data.connects == 0 else "reconnecting")
        req = HTTPRequest(
            self._request_url,
            headers=dict(self.headers),
            connect_timeout=self.connect_timeout,
            request_timeout=self.connect_timeout,
            ssl_options=self._ssl,
        )
        ws = await websocket_connect(
            req,
            on_message_callback=self._make_callback(gen),
            ping_interval=self.ws_ping_interval,
            ping_timeout=self.ws_ping_timeout,
            max_message_size=self.max_message_size,
            subprotocols=self.subprotocols,
        )
        if self._closing or gen != self._gen:
            ws.close(1000, "client closed")
            return False
        self._ws = ws
        s = self.stats_data
        s.connects += 1
        if s.connects > 1:
            s.reconnects += 1
            for st in self._streams:
                st.stats_data.reconnects += 1
        self._last_msg = time.monotonic()
        if self.stale_after is not None:
            self._schedule(self.stale_after / 4, self._stale_tick, gen)

        # subscribe
        msgs = await self._open_messages()
        if self._ack is not None:
            self._acks_left = self.ack_count or max(1, len(msgs))
            self._ack_fut = loop.create_future()
            self._reroute()
            self._set_state("subscribing")
        for m in msgs:
            ws.write_message(_encode(m), binary=isinstance(m, (bytes, bytearray)))
        s.subscribes += 1
        if self._ack_fut is not None:
            ack_fut = self._ack_fut
            done, _ = await asyncio.wait({ack_fut, closed}, timeout=self.ack_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            self._ack_fut = None
            self._reroute()
            if ack_fut not in done:
                if closed.done():
                    raise FeedError(f"connection ended before the acknowledgement: {closed.result()}")
                raise FeedError(f"no acknowledgement within {self.ack_timeout:g}s")
            ack_fut.result()  # raises FeedError for an error ack
        s.failures = 0
        s.next_retry_in = None
        self._set_state("live")
        if self._app_ping is not None and self.app_ping_interval is not None:
            self._schedule(self.app_ping_interval, self._app_ping_tick, gen)
        reason = await closed
        self._cancel_timers()
        if not self._closing:
            self._fail(reason)
        return True

    async def _open_messages(self) -> list:
        on_open = self.on_open
        if on_open is None:
            return []
        if not callable(on_open):
            return self._on_open_msgs
        result = on_open(self)
        if inspect.isawaitable(result):
            result = await result
        return self._as_messages(result, "on_open(conn)")

    # -- timers ---------------------------------------------------------------------------

    def _schedule(self, delay: float, fn: Callable[[int], None], gen: int) -> None:
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(self.loop.call_later(delay, fn, gen))

    def _cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers = []

    def _stale_tick(self, gen: int) -> None:
        if gen != self._gen or self._closing or self.stale_after is None:
            return
        last = self._last_msg or 0.0
        if time.monotonic() - last > self.stale_after:
            self.stats_data.stale += 1
            self._drop(f"stale: no message for {self.stale_after:g}s", abort=True)
            return
        self._schedule(self.stale_after / 4, self._stale_tick, gen)

    def _app_ping_tick(self, gen: int) -> None:
        if gen != self._gen or self._closing or self._ws is None:
            return
        ping = self._app_ping
        try:
            msg = ping(self) if callable(ping) else ping
            if msg is not None:
                self._send_now(_encode(msg))
                self.stats_data.pings_sent += 1
        except Exception as exc:
            self._conn_error(f"app ping failed: {exc!r}")
        assert self.app_ping_interval is not None
        self._schedule(self.app_ping_interval, self._app_ping_tick, gen)

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
            if not self._closing:
                self._set_state("reconnecting")
        if ws is not None:
            proto = ws.protocol
            with contextlib.suppress(Exception):
                ws.close(code, reason[:100] if reason else None)
            if abort and proto is not None and proto.stream is not None:
                proto.stream.close()  # a stalled peer may never answer the close frame

    def _end(self, state: str) -> None:
        self._set_state(state)
        if state == "closed":
            for st in list(self._streams):
                st._mark_closed()

    def _shutdown(self, code: int, reason: str) -> None:
        self._closing = True
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
        self._closing = True
        ws, self._ws = self._ws, None
        if ws is not None and ws.protocol is not None and ws.protocol.stream is not None:
            with contextlib.suppress(Exception):
                ws.protocol.stream.socket.close()  # type: ignore[union-attr]
        self.stats_data.state = "closed"
        self._live_flag.clear()
        for st in list(self._streams):
            st._mark_closed()
        registry.unregister(self)

    # -- streams (called by Subscription) --------------------------------------------------

    def _unsubscribe(self, st: FeedStream) -> None:
        with self._lock:
            if self.subscriptions.get(st.name) is st:
                del self.subscriptions[st.name]
            self._streams = tuple(x for x in self._streams if x is not st)
        self._reroute()

    def _pause(self, st: FeedStream) -> None:
        pass  # the stream ignores its messages while paused

    def _resume(self, st: FeedStream) -> None:
        st._set_state(self.state)

    # -- the hot path ---------------------------------------------------------------------

    def _make_callback(self, gen: int) -> Callable[[str | bytes | None], None]:
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        ping_text = self._ping_text
        ping = self._ping
        loop = self.loop
        batch_interval = self.batch_interval

        def on_message(raw: str | bytes | None) -> None:
            if gen != self._gen:
                return
            if raw is None:
                self._on_socket_closed(gen)
                return
            self._count += 1
            if not self._batch_open:
                self._batch_open = True
                if batch_interval:
                    loop.call_later(batch_interval, self._end_batch)
                else:
                    loop.call_soon(self._end_batch)
            if ping_text is not None and raw == ping_text:
                self._answer_ping(raw)
                return
            try:
                msg = loads(raw)
            except decode_error as exc:
                self.stats_data.not_json += 1
                for st in self._streams:
                    st._not_json(raw, exc)
                return
            if ping is not None and ping(msg):
                self._answer_ping(msg)
                return
            self._dispatch(msg, raw)

        return on_message

    def _reroute(self) -> None:
        """Recompute where decoded messages go (after a change of streams, callbacks,
        acknowledgement wait, or a stream's handler): straight to the one stream's
        handler when there is nothing else to do, which saves a loop per message."""
        with self._route_lock:
            streams = self._streams
            if len(streams) == 1 and not self._raw_cbs and self._ack_fut is None:
                self._dispatch = streams[0]._feed
            else:
                self._dispatch = self._dispatch_all

    def _dispatch_all(self, msg: Any, raw: str | bytes) -> None:
        if self._ack_fut is not None and self._check_ack(msg):
            return
        for st in self._streams:
            st._feed(msg, raw)
        if self._raw_cbs:
            for cb in self._raw_cbs:
                try:
                    cb(msg)
                except Exception as exc:
                    self._conn_error(f"on_message callback failed: {exc!r}")
                    log.exception("livestream: on_message callback failed")

    def _end_batch(self) -> None:
        self._batch_open = False
        self._last_msg = time.monotonic()
        for st in self._streams:
            st._flush()

    def _answer_ping(self, msg: Any) -> None:
        pong = self._pong
        try:
            reply = pong(msg) if callable(pong) else pong
            if reply is not None:
                self._send_now(_encode(reply))
            self.stats_data.pings_answered += 1
        except Exception as exc:
            self._conn_error(f"answering a ping failed: {exc!r}")

    def _check_ack(self, msg: Any) -> bool:
        fut = self._ack_fut
        assert fut is not None
        if fut.done():
            return False
        if self._ack_error is not None and self._ack_error(msg):
            fut.set_exception(FeedError(f"subscription refused: {orjson.dumps(msg).decode()[:300]}"))
            return True
        assert self._ack is not None
        if self._ack(msg):
            self.stats_data.acks += 1
            self._acks_left -= 1
            if self._acks_left <= 0:
                fut.set_result(True)
            return True
        return False

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


# keep type names importable for annotations in user code
_ = (Awaitable, Column)
