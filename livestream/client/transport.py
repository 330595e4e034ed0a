"""The client WebSocket transport: one small adapter over picows, for livestream
connections and outside feeds alike.

:func:`connect` opens a ws:// or wss:// connection and returns a
:class:`WebSocket`; every complete message is handed to ``on_message(data)`` (``str``
for a text message, ``bytes`` for a binary one) from picows' frame callback, on the
loop, with nothing awaited per message. ``on_close(ws)`` is called once when the
connection is gone, whoever ended it.

With ``on_texts``, whole text messages are handed on in lists instead (a consumer
that does its work per batch, such as a feed stream's decoder, pays no Python call
per message): every text message that one read from the socket brought,
``on_texts([payload, ...])`` once the read is done, as ``bytes`` whose UTF-8 has
been checked for the whole list at once. The order of messages holds across the
two callbacks: pending texts are handed on before any other message and before the
close.

picows delivers frames, not messages, and has no subprotocol parameter; this module
closes those gaps (see docs/decisions.md, "Client transport"):

* continuation frames are joined into one message; ``max_message_size`` bounds the
  whole message (picows' own limit is per frame): a bigger one closes the connection
  with 1009, like Tornado's client did;
* subprotocols are offered in a ``Sec-WebSocket-Protocol`` header and the server's
  choice is checked (one it was not offered fails the handshake; none is allowed:
  :attr:`WebSocket.subprotocol` is then ``None``, as with Tornado);
* no permessage-deflate: the client never offered it (Tornado's client did not
  either), so a server never compresses;
* errors keep the types and words users saw with Tornado's client: an HTTP status
  other than 101 raises :class:`tornado.httpclient.HTTPClientError` (``HTTP 403:
  Forbidden``), a refused connection ``ConnectionRefusedError`` with the system's
  words, TLS failures the :mod:`ssl` errors, a slow connect :class:`TimeoutError`.

Automatic WebSocket pings (``ping_interval``/``ping_timeout``) are picows': a ping
after ``ping_interval`` seconds without incoming data, and the connection is dropped
when no pong comes within ``ping_timeout`` (at most ``ping_interval``, as Tornado
clamps it). Incoming pings are answered by picows. HTTP redirects are not followed
(a redirect would carry the ``Authorization`` header elsewhere): a 3xx is a refused
handshake, as it was with Tornado.

Everything here runs on one loop: picows checks that its transport is only used from
the thread that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl as _ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import picows
from picows import WSMsgType
from tornado.httpclient import HTTPClientError

__all__ = ["DEFAULT_CLOSE_TIMEOUT", "HandshakeError", "WebSocket", "connect"]

log = logging.getLogger("livestream.client")

#: seconds a closing connection waits for the peer's close frame before dropping the socket
DEFAULT_CLOSE_TIMEOUT = 5.0

_TEXT, _BINARY, _CONT = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
_CLOSE, _PONG = WSMsgType.CLOSE, WSMsgType.PONG
_TOO_BIG = picows.WSCloseCode.MESSAGE_TOO_BIG


class HandshakeError(ConnectionError):
    """The server's upgrade response was a 101 the client cannot accept (a subprotocol
    it was not offered, a malformed response)."""


class WebSocket(picows.WSListener):
    """One open client WebSocket (made by :func:`connect`; used on its loop only).

    ``close_code``/``close_reason`` are the peer's close frame's (None when the
    connection ended without one); ``too_big`` says a message over
    ``max_message_size`` ended it (closed 1009); ``ping_timed_out`` that the peer
    did not answer a ping in time.
    """

    def __init__(self, url: str, on_message: Callable[[str | bytes], Any],
                 on_close: Callable[[WebSocket], Any] | None, max_message_size: int,
                 close_timeout: float,
                 on_texts: Callable[[list[bytes]], Any] | None = None) -> None:
        super().__init__()
        self.url = url
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.too_big = False
        self.ping_timed_out = False
        self.max_message_size = max_message_size
        self._held: list[str | bytes] = []
        # messages that arrive with the 101 response are held until connect() has
        # returned to its caller (see _release): the caller sets up first
        self._user_on_message = on_message
        self._on_message: Callable[[str | bytes], Any] = self._held.append
        self._on_close = on_close
        # on_texts: whole text messages are collected here (None: not batching, or not
        # yet released) and handed on once the read that brought them is done
        self._on_texts = on_texts
        self._texts: list[bytes] | None = None
        self._close_timeout = close_timeout
        self._transport: picows.WSTransport | None = None
        self._connecting = True
        self._abandoned = False
        # closed by the peer right after the 101, not yet reported: sends are dropped, as
        # a socket's would be, until the messages that came first and the close are handed on
        self._early_close = False
        self._parts: list[bytes] | None = None  # a fragmented message being joined
        self._parts_text = False
        self._parts_size = 0
        self._pinging = False
        self._closing = False
        self._user_closed = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._done: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the picows callbacks (on the loop) ------------------------------------------------

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self._transport = transport
        if self._abandoned:  # connect() was cancelled or timed out before the 101 came
            transport.disconnect(graceful=False)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        texts = self._texts
        # the hot path with on_texts: a whole text message in one frame, collected
        if kind is _TEXT and texts is not None and frame.fin and self._parts is None \
                and not transport.is_close_frame_sent:
            if not texts:  # the first of this read: hand them on after it
                self._loop.call_soon(self._flush_texts)  # type: ignore[union-attr]
            texts.append(frame.get_payload_as_bytes())
            return
        # the hot path without: a whole message in one frame, handed on at once
        if (kind is _TEXT or kind is _BINARY) and frame.fin and self._parts is None \
                and not transport.is_close_frame_sent:
            if texts:  # a binary message: the texts before it first
                self._flush_texts()
            try:
                data = frame.get_payload_as_utf8_text() if kind is _TEXT \
                    else frame.get_payload_as_bytes()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text message")
                return
            try:
                self._on_message(data)
            except Exception:
                self._handler_failed()
            return
        self._other_frame(transport, frame, kind)

    def _other_frame(self, transport: picows.WSTransport, frame: picows.WSFrame,
                     kind: WSMsgType) -> None:
        """Fragments, close frames, and anything that arrives while closing."""
        if self._texts:  # what came first is handed on first
            self._flush_texts()
        if kind is _TEXT or kind is _BINARY:
            if transport.is_close_frame_sent:
                # closing: nothing more is delivered. This also stops the frame picows
                # refused as over max_frame_size (it closed 1009) from being handed on
                # once its payload has arrived anyway.
                return
            if self._parts is not None:
                self._fail(1002, "a new message began inside a fragmented one")
                return
            self._parts = [frame.get_payload_as_bytes()]
            self._parts_text = kind is _TEXT
            self._parts_size = frame.payload_size
            self._check_size()
        elif kind is _CONT:
            if transport.is_close_frame_sent:
                return
            if self._parts is None:
                self._fail(1002, "a continuation frame without a message to continue")
                return
            self._parts_size += frame.payload_size
            if not self._check_size():
                return
            self._parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                joined = b"".join(self._parts)
                text = self._parts_text
                self._parts = None
                if text and self._texts is not None:
                    self._texts.append(joined)
                    self._flush_texts()
                elif text:
                    try:
                        self._deliver(joined.decode("utf-8"))
                    except UnicodeDecodeError:
                        self._fail(1007, "invalid UTF-8 in a text message")
                else:
                    self._deliver(joined)
        elif kind is _CLOSE:
            if transport.is_close_frame_sent and not self._user_closed:
                # the peer's answer to a close we sent on a failure (1009, a ping
                # timeout...): the connection was lost on our side, as with Tornado
                transport.disconnect()
                return
            self.close_code = frame.get_close_code().value if frame.payload_size >= 2 else None
            self.close_reason = frame.get_close_reason() if frame.payload_size > 2 else None
            if not transport.is_close_frame_sent:  # echo the code (RFC 6455 5.5.1)
                code = self.close_code
                with contextlib.suppress(Exception):
                    transport.send_close(_close_code(code) if code else picows.WSCloseCode.OK)
            transport.disconnect()
        # pings are answered by picows; a pong outside an auto-ping wait is ignored

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if not self._connecting:
            self._release()
            if self._texts:
                self._flush_texts()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._parts = None
        hs = transport.close_handshake
        if hs is not None and hs.sent is not None and hs.sent.code is _TOO_BIG:
            self.too_big = True  # one frame over the limit: picows closed (and logged) it
        if self._pinging and not self._closing and self.close_code is None:
            self.ping_timed_out = True  # a ping went unanswered and no one else closed
        # picows keeps a local failure's exception for wait_disconnected(); fetch it so that
        # asyncio never reports it as never retrieved (the task ends at once)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon(_fetch_exception, transport)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
        if not self._connecting:  # else connect() reports it after handing over messages
            self._closed_callback()

    def _closed_callback(self) -> None:
        cb, self._on_close = self._on_close, None
        if cb is not None:
            try:
                cb(self)
            except Exception:
                log.exception("livestream: on_close callback failed")

    def send_user_specific_ping(self, transport: picows.WSTransport) -> None:
        self._pinging = True
        transport.send_ping()

    def is_user_specific_pong(self, frame: picows.WSFrame) -> bool:
        if frame.msg_type is _PONG:
            self._pinging = False
            return True
        return False

    # -- helpers ---------------------------------------------------------------------------

    def _release(self) -> None:
        """Hand the held messages over; from now on messages go straight through."""
        if self._on_message is self._user_on_message:
            return
        self._on_message = self._user_on_message
        held, self._held = self._held, []
        for data in held:
            self._deliver(data)
        if self._on_texts is not None:
            self._texts = []

    def _flush_texts(self) -> None:
        """Hand the collected text messages on (their UTF-8 checked at once); a message
        that is not UTF-8 ends the connection (1007) after the ones before it."""
        texts = self._texts
        if not texts:
            return
        self._texts = []
        bad = -1
        if not all(map(bytes.isascii, texts)):  # most feeds send ASCII: no decode then
            # one check for the list: an ASCII separator keeps a broken sequence at the
            # end of one message from joining a continuation at the start of the next
            try:
                b"\n".join(texts).decode("utf-8")
            except UnicodeDecodeError:
                bad = next(i for i, t in enumerate(texts) if not _is_utf8(t))
                del texts[bad:]
        if texts:
            try:
                self._on_texts(texts)  # type: ignore[misc]
            except Exception:
                self._handler_failed()
                return
        if bad >= 0:
            self._texts = None  # nothing more is handed on
            self._fail(1007, "invalid UTF-8 in a text message")

    def _deliver(self, data: str | bytes) -> None:
        try:
            self._on_message(data)
        except Exception:
            self._handler_failed()

    def _handler_failed(self) -> None:
        # as Tornado did: log it and drop the connection
        log.exception("livestream: a message handler failed on %s", self.url)
        self._fail(1011, "message handler failed")

    def _check_size(self) -> bool:
        if self._parts_size <= self.max_message_size:
            return True
        self.too_big = True
        self._parts = None
        log.warning("livestream: a message from %s is over max_message_size (%d bytes): "
                    "closing with 1009", self.url, self.max_message_size)
        self._fail(1009, "message too big")
        return False

    def _fail(self, code: int, reason: str) -> None:
        self._send_close(code, reason)
        self.abort_soon()

    def abort_soon(self, delay: float = 0.01) -> None:
        """Drop the socket shortly (after a queued close frame had a chance to go)."""
        loop = self._loop
        if loop is not None and self._transport is not None:
            loop.call_later(delay, self.abort)

    # -- the API the connections use --------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the socket is gone (or a close was started)."""
        t = self._transport
        return t is None or self._closing or t.is_disconnected

    @property
    def socket(self) -> Any:
        """The TCP socket (asyncio's wrapper of it), None once gone: for diagnostics and tests."""
        t = self._transport
        if t is None or t.is_disconnected:
            return None
        return t.underlying_transport.get_extra_info("socket")

    def send(self, data: str | bytes) -> None:
        """Send ``data``: text for ``str``, binary for bytes. Raises ``ConnectionError``
        when the connection is closed or closing."""
        t = self._transport
        if self._early_close:
            return  # the peer has closed; the caller learns it with the messages it sent
        if t is None or self._closing or t.is_disconnected:
            raise ConnectionResetError("the WebSocket is closed")
        t.send(_TEXT if isinstance(data, str) else _BINARY, data)

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Start a close handshake: send a close frame with ``code`` and ``reason``; the
        socket is dropped when the peer answers, or after the close timeout. The peer's
        answer sets :attr:`close_code` (its echo of ``code``)."""
        t = self._transport
        if t is None or t.is_disconnected or t.is_close_frame_sent:
            return
        self._user_closed = True
        self._send_close(code, reason)

    def _send_close(self, code: int, reason: str | None) -> None:
        t = self._transport
        if t is None or t.is_disconnected:
            return
        if not self._closing:
            self._closing = True
            reason_b = (reason or "").encode("utf-8")[:123]  # a control frame holds 125 bytes
            if not t.is_close_frame_sent:
                with contextlib.suppress(Exception):
                    t.send_close(_close_code(code), reason_b)
            if self._loop is not None and self._close_timer is None:
                self._close_timer = self._loop.call_later(self._close_timeout, self.abort)

    def abort(self) -> None:
        """Drop the socket now (nothing more is sent)."""
        self._closing = True
        t = self._transport
        if t is not None and not t.is_disconnected:
            with contextlib.suppress(Exception):
                t.disconnect(graceful=False)

    def abort_offloop(self) -> None:
        """Close the socket without its loop (the loop has stopped: interpreter exit)."""
        self._closing = True
        t = self._transport
        if t is None:
            return
        with contextlib.suppress(Exception):
            sock = t.underlying_transport.get_extra_info("socket")
            getattr(sock, "_sock", sock).close()

    async def wait_closed(self) -> None:
        """Await until the socket is gone (``on_close`` has run)."""
        if self._done is not None:
            await asyncio.shield(self._done)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fetch_exception(transport: picows.WSTransport) -> None:
    """Read (and drop) the failure picows keeps for ``wait_disconnected()``, without a
    task: once disconnected its future is done, so the coroutine finishes in one step."""
    coro = transport.wait_disconnected()
    try:
        coro.send(None)
    except BaseException:  # StopIteration, or the failure itself (already logged by picows)
        return
    coro.close()  # not done yet (cannot happen after on_ws_disconnected): give up quietly


PROXY_SCHEMES = ("http://", "https://", "socks4://", "socks5://")


def check_proxy(proxy: str | None) -> str | None:
    """``proxy`` if it is a proxy URL the transport can tunnel through, else ValueError."""
    if proxy is None:
        return None
    if not isinstance(proxy, str) or not proxy.startswith(PROXY_SCHEMES):
        raise ValueError(f"proxy must be a URL starting with {', '.join(PROXY_SCHEMES)}; "
                         f"got {proxy!r}")
    return proxy


def _close_code(code: int) -> picows.WSCloseCode:
    # picows' enum takes any close code, application codes (3000-4999) included
    return picows.WSCloseCode(code)


async def _connect_or_abandon(ws: WebSocket, opening: Any, timeout: float | None) -> Any:
    """Await picows' connect, bounded by ``timeout``; if it is cancelled or times out,
    a handshake that still completes later is dropped at once (see on_ws_connected)."""
    try:
        return await asyncio.wait_for(opening, timeout)
    except BaseException:
        ws._abandoned = True
        raise


async def connect(
    url: str,
    on_message: Callable[[str | bytes], Any],
    on_close: Callable[[WebSocket], Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] | None = None,
    ssl: _ssl.SSLContext | None = None,
    connect_timeout: float | None = 10.0,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    max_message_size: int = 64 * 1024 * 1024,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    proxy: str | None = None,
    on_texts: Callable[[list[bytes]], Any] | None = None,
) -> WebSocket:
    """Open a client WebSocket to ``url`` (ws:// or wss://) on the running loop.

    ``on_message(data)`` gets every message (``str`` text, ``bytes`` binary) and
    ``on_close(ws)`` the end of the connection, both on the loop. ``headers`` are
    added to the upgrade request; ``subprotocols`` offered; ``ssl`` is the context
    for wss:// (default: the system's CAs). ``connect_timeout`` bounds the TCP
    connect, TLS and upgrade together. ``proxy``: an ``http://[user:pass@]host:port``
    proxy to tunnel through (HTTP CONNECT; picows also takes https://, socks4:// and
    socks5:// URLs). ``on_texts``: text messages in lists, as the module docstring
    describes (``on_message`` then gets binary messages, and as ``str`` the text
    messages that came with the upgrade response). Raises what the module docstring lists.
    """
    extra = dict(headers or {})
    offered = list(subprotocols or ())
    if offered:
        extra["Sec-WebSocket-Protocol"] = ", ".join(offered)
    if ping_interval is not None and ping_interval > 0:
        reply = ping_interval if not ping_timeout else min(ping_timeout, ping_interval)
        pings: dict[str, Any] = {"enable_auto_ping": True,
                                 "auto_ping_idle_timeout": ping_interval,
                                 "auto_ping_reply_timeout": reply,
                                 "auto_ping_strategy": picows.WSAutoPingStrategy.PING_WHEN_IDLE}
    else:
        pings = {"enable_auto_ping": False}
    ws = WebSocket(url, on_message, on_close, max_message_size, close_timeout, on_texts)
    loop = asyncio.get_running_loop()
    ws._loop = loop
    ws._done = loop.create_future()
    try:
        transport, listener = await _connect_or_abandon(ws, picows.ws_connect(
            lambda: ws, url, ssl_context=ssl if url.startswith("wss://") else None,
            websocket_handshake_timeout=connect_timeout, extra_headers=extra,
            max_frame_size=max_message_size, max_redirects=0, use_aiofastnet=False,
            logger_name="livestream.client.transport", proxy=proxy, **pings,
        ), connect_timeout)
    except picows.WSHandshakeError as exc:  # also a 3xx: redirects are not followed
        resp = exc.response
        if resp is not None and int(resp.status) != 101:
            raise HTTPClientError(int(resp.status), resp.status.phrase or None) from None
        raise HandshakeError(str(exc)) from None
    except (asyncio.TimeoutError, TimeoutError):
        raise TimeoutError("Timeout while connecting") from None
    except OSError as exc:
        if exc.errno and type(exc) is not OSError and "Connect call failed" in str(exc):
            # asyncio's words for a refused connect; Tornado's client said the system's
            raise type(exc)(exc.errno, os.strerror(exc.errno)) from None
        raise
    if listener is None:
        raise ConnectionResetError("Stream closed")
    chosen = transport.response.headers.get("Sec-WebSocket-Protocol")
    if chosen is not None:
        chosen = chosen.strip()
        if chosen not in offered:
            if not transport.is_disconnected:
                transport.send_close(picows.WSCloseCode.PROTOCOL_ERROR)
                transport.disconnect()
            raise HandshakeError(f"the server chose subprotocol {chosen!r}, which was not "
                                 f"offered ({offered})")
        ws.subprotocol = chosen
    ws._connecting = False
    if transport.is_disconnected:
        # the peer sent what it had (a feed's refusal, say) and closed right after the
        # 101: hand its messages over, then report the close with its code and reason
        def closed_early() -> None:
            ws._release()
            ws._early_close = False
            ws._closed_callback()

        ws._early_close = True
        loop.call_soon(closed_early)
        return ws
    loop.call_soon(ws._release)
    return ws
