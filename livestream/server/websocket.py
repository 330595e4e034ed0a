"""The ``/ws`` endpoint: one :class:`ClientHandler` per WebSocket connection.

The handler is thin: it parses frames with :mod:`livestream.protocol`, asks the
:class:`~livestream.server.app.LivestreamServer` to act, and writes frames. All
of it runs on the server's loop. Bytes written but not yet flushed are counted
per client (``queued``) and for the whole process
(:class:`~livestream.server.budget.SendBudget`) so that a client that stops reading
is dealt with by the slow-consumer policy instead of growing the server's memory
without end. Frames are written by :mod:`._tornado_compat`, the one module that
relies on Tornado internals.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import sys
from typing import TYPE_CHECKING, Any

from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

from ..core.topic import Gap, Update
from ..errors import LimitError, LivestreamError, ProtocolError, SchemaError, TopicError
from ..protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    Hello,
    Ping,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    dumps,
    error_message,
    loads,
    parse_client_message,
    unpack_binary,
)
from ..protocol.codec import STREAM_END, data_header, pack_binary
from ._tornado_compat import (
    StrictProtocol,
    closing,
    frame_header,
    on_flushed,
    unflushed,
    write_frame,
)
from .auth import Grant
from .security import origin_allowed

if TYPE_CHECKING:
    from ..core.delivery import Delivery
    from .app import LivestreamServer

log = logging.getLogger("livestream.server")

#: TCP_NOTSENT_LOWAT where it means what ServerConfig.kernel_unsent_bytes needs: Linux's
#: (25; Python's socket module names it only in newer versions), None elsewhere
_TCP_NOTSENT_LOWAT: int | None = (getattr(socket, "TCP_NOTSENT_LOWAT", 25)
                                  if sys.platform.startswith("linux") else None)


class _Held:
    """Binary appends of one topic held for a client while its socket is busy: they
    continue each other and go out as one frame (docs/protocol.md §3.3)."""

    __slots__ = ("bodies", "epoch", "frames", "head", "next", "offset", "rows", "size",
                 "topic", "ts", "wire")

    def __init__(self, update: Update, frame: bytes, body: memoryview, head: bytes,
                 wire: int) -> None:
        self.topic, self.epoch, self.head = update.topic, update.epoch, head
        self.offset, self.next, self.rows, self.ts = (update.offset, update.next,
                                                      update.rows, update.ts)
        self.frames = [frame]
        self.bodies = [body]
        self.size = len(frame)
        self.wire = wire  # bytes of the frames as sent one by one, WebSocket headers included

    def continues(self, update: Update, head: bytes, body: memoryview, limit: int) -> bool:
        return (update.topic == self.topic and update.offset == self.next
                and update.epoch == self.epoch and head == self.head
                and self.size + len(body) <= limit)

    def add(self, update: Update, frame: bytes, body: memoryview, wire: int) -> None:
        self.frames.append(frame)
        self.bodies.append(body)
        self.next, self.ts = update.next, update.ts
        self.rows += update.rows
        self.size += len(body)
        self.wire += wire


def _wire(n: int) -> int:
    """Bytes of a server frame of ``n`` payload bytes (its header included)."""
    return n + (2 if n < 126 else 4 if n <= 0xFFFF else 10)


class ClientHandler(WebSocketHandler):
    """One client connection."""

    server: LivestreamServer

    def initialize(self, server: LivestreamServer) -> None:
        self.server = server
        self.session = secrets.token_hex(6)
        self.encoding = "json"
        self.token: str | None = None
        self.grant = Grant()  # the connection's rights (set on open, hello and refresh)
        self.auth_timer: Any = None  # closes with 4003 / ends subscriptions at token expiry
        self.sub_exp: dict[str, float] = {}  # topic -> expiry of its own subscribe token
        self.topics: dict[str, str] = {}  # topic -> "live" | "pending"
        # pending topic -> the (epoch, offset) its subscribe resumed from
        self.pending_resume: dict[str, tuple[str | None, int | None]] = {}
        self.queued = 0  # bytes written, not yet flushed (kept by server.budget)
        self.bytes_out = 0  # bytes of frames handed to the stream (progress = this - queued)
        self.progress: tuple[int, float] = (0, 0.0)  # (bytes taken by the socket, since when)
        self.out_stream: IOStream | None = None
        self.stalled = False  # conflating: updates dropped until the queue drains
        # binary appends held while the socket is busy, merged when it has taken its queue
        self.held: list[_Held] = []
        self.held_bytes = 0
        self.held_armed = False
        # topic -> snapshot (or missed rows) still being sent, in order (server.pacer)
        self.deliveries: dict[str, Delivery] = {}
        self.pacing_queued = False
        self.drain_waiting = False
        self.errors_in_row = 0
        self.close_reason_tag = "client"

    # -- tornado hooks ------------------------------------------------------------------

    def prepare(self) -> None:
        """Before the upgrade: trusted-proxy headers, then the Host allowlist (DNS rebinding)."""
        guard = self.server.guard
        guard.apply_proxy(self.request)
        why = guard.host_refusal(self.request)
        if why is None:
            return
        log.warning("livestream: refused WebSocket from %s: %s", self.request.remote_ip, why)
        m = self.server.metrics
        m.errors["host_not_allowed"] += 1
        m.disconnects["host_refused"] += 1
        self.set_status(403)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(error_message("host_not_allowed", why)))

    def check_origin(self, origin: str) -> bool:
        ok = origin_allowed(origin, self.request.host, self.server.config.allowed_origins)
        if not ok:
            log.warning("livestream: refused WebSocket origin %s from %s", origin,
                        self.request.remote_ip)
            self.server.metrics.disconnects["origin_refused"] += 1
        return ok

    def get_compression_options(self) -> None:
        return None  # frames are encoded once; per-client compression would re-encode

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        proto = super().get_websocket_protocol()
        if type(proto) is WebSocketProtocol13:
            return StrictProtocol(self, False, proto.params)
        return proto

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.token = self.get_query_argument("token", None) or _bearer(self.request)
        enc = self.get_query_argument("encoding", None)
        if enc in ("json", "arrow"):
            self.encoding = enc
        self.set_nodelay(True)
        conn = self.ws_connection
        self.out_stream = conn.stream if conn is not None else None
        lowat = self.server.config.kernel_unsent_bytes
        if lowat and _TCP_NOTSENT_LOWAT is not None and self.out_stream is not None:
            sock = getattr(self.out_stream, "socket", None)
            if sock is not None:
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, lowat)
        self.server._client_opened(self)

    def on_close(self) -> None:
        self.held.clear()
        self.held_bytes = 0
        reason = self.close_reason_tag
        if reason == "client" and self.close_code is None:
            reason = "dropped"
        self.server._client_closed(self, reason)

    def on_message(self, message: str | bytes) -> Any:
        if closing(self):
            return None  # closing (4002, 4000, ...): frames already received are not acted on
        if self.server.shared:
            # a shared backplane's reads and writes are awaited; Tornado reads this
            # connection's next message only when this one is done (order is kept)
            return self._on_message_shared(message)
        try:
            if isinstance(message, bytes):
                self._publish(*self._binary_publish(message))
            else:
                msg = parse_client_message(loads(message))
                self._dispatch(msg)
            self.errors_in_row = 0
        except Exception as exc:
            self._message_failed(exc)
        return None

    @staticmethod
    def _binary_publish(message: bytes) -> tuple[Publish, Any]:
        header, payload = unpack_binary(message)
        if header.get("type") != "publish":
            raise ProtocolError("bad_frame", "binary frames from clients must be publish frames")
        msg = parse_client_message(header)
        assert isinstance(msg, Publish)
        return msg, payload

    async def _on_message_shared(self, message: str | bytes) -> None:
        try:
            if isinstance(message, bytes):
                msg, payload = self._binary_publish(message)
            else:
                msg, payload = parse_client_message(loads(message)), None
            if isinstance(msg, Publish):
                await self._publish_shared(msg, payload)
            else:
                if isinstance(msg, Subscribe):
                    with contextlib.suppress(LivestreamError):  # a bad name fails below
                        await self.server.ensure(msg.topic)
                if closing(self):
                    return
                self._dispatch(msg)
            self.errors_in_row = 0
        except Exception as exc:
            self._message_failed(exc)

    def _message_failed(self, exc: Exception) -> None:
        """Answer a message that failed with an ``error`` frame (naming the column of a
        ``SchemaError``); anything not a livestream error is logged as internal."""
        if isinstance(exc, ProtocolError):
            self._fail(exc.code, str(exc), exc.id, exc.topic)
        elif isinstance(exc, SchemaError):
            self._fail(exc.code, str(exc), getattr(exc, "id", None), getattr(exc, "topic", None),
                       column=exc.column)
        elif isinstance(exc, LivestreamError):
            self._fail(exc.code, str(exc), getattr(exc, "id", None), getattr(exc, "topic", None))
        else:
            log.error("livestream: internal error handling a client message", exc_info=exc)
            self._fail("internal", "the server failed while handling this message", None, None)

    # -- dispatch -----------------------------------------------------------------------

    def _dispatch(self, msg: Any) -> None:
        if isinstance(msg, Hello):
            if msg.v != PROTOCOL_VERSION:
                self.send_json(error_message(
                    "unsupported_version",
                    f"protocol version {msg.v} unsupported; this server speaks {PROTOCOL_VERSION}",
                ))
                self.close_reason_tag = "unsupported_version"
                self.close(CloseCode.UNSUPPORTED_VERSION, "unsupported protocol version")
                return
            if msg.encoding is not None:
                self.encoding = msg.encoding
            if msg.token is not None:
                self.server.set_connection_token(self, msg.token)
                if self.close_reason_tag == "token_expired":
                    return
            self.send_json(self.server.welcome(self))
        elif isinstance(msg, Subscribe):
            self.server.subscribe(self, msg)
        elif isinstance(msg, Unsubscribe):
            self.server.unsubscribe(self, msg)
        elif isinstance(msg, Publish):
            self._publish(msg, None)
        elif isinstance(msg, Refresh):
            self.server.refresh(self, msg)
        elif isinstance(msg, Ping):
            out: dict[str, Any] = {"type": "pong", "server_t": self.server.now_ms()}
            if msg.id is not None:
                out["id"] = msg.id
            if msg.t is not None:
                out["t"] = msg.t
            self.send_json(out)

    def _publish(self, msg: Publish, payload: Any) -> None:
        try:
            update = self.server.publish_message(self, msg, payload)
        except (SchemaError, TopicError, LimitError, ProtocolError) as exc:
            exc.id = msg.id  # type: ignore[attr-defined]
            exc.topic = msg.topic  # type: ignore[attr-defined]
            raise
        self._ack(msg, update)

    async def _publish_shared(self, msg: Publish, payload: Any) -> None:
        try:
            with contextlib.suppress(LivestreamError):  # a bad name fails below
                await self.server.ensure(msg.topic)
            update = await self.server.publish_message_async(self, msg, payload)
        except LivestreamError as exc:
            exc.id = msg.id  # type: ignore[attr-defined]
            exc.topic = msg.topic  # type: ignore[attr-defined]
            raise
        if not closing(self):
            self._ack(msg, update)

    def _ack(self, msg: Publish, update: Any) -> None:
        ack: dict[str, Any] = {"type": "ack", "topic": msg.topic, "offset": update.offset,
                               "next": update.next, "rows": update.rows}
        if msg.id is not None:
            ack["id"] = msg.id
        self.send_json(ack)

    def _fail(self, code: str, message: str, id: Any, topic: str | None, column: str | None = None
              ) -> None:
        self.server.metrics.errors[code] += 1
        frame = error_message(code, message, id=id, topic=topic)
        if column is not None:
            frame["column"] = column
        self.send_json(frame)
        self.errors_in_row += 1
        if self.errors_in_row >= self.server.config.max_errors:
            self.close_reason_tag = "too_many_errors"
            self.close(CloseCode.TOO_MANY_ERRORS, "too many malformed messages")

    # -- sending ------------------------------------------------------------------------

    def send_json(self, obj: dict) -> None:
        """Send a control frame (always JSON text)."""
        self.send_frame(dumps(obj), binary=False, size=None)

    def send_frame(self, data: bytes, *, binary: bool, size: int | None,
                   rows: int = 0) -> bool:
        """Write one frame; False if the client is gone or was just dropped as slow.

        When nothing is queued for this client (the common case) the frame goes
        to the socket with one ``sendmsg()``; only what the kernel does not take is
        handed to the Tornado stream, whose unflushed byte count is the client's
        send queue for the slow-consumer check. ``data`` is never copied: it may be
        the same bytes for every client. No Future, task or callback per frame per
        client (see docs/decisions.md).
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return False
        if self.held:  # appends held before this frame go first
            self._release()
        stream = conn.stream
        n = len(data)
        queued = unflushed(stream)
        if queued != self.queued:
            self.server.budget.changed(self, queued)
        if queued + n > self.server.config.send_queue_bytes and queued > 0:
            return self._over_limit()
        try:
            added = write_frame(stream, 0x2 if binary else 0x1, data, queued == 0)
        except StreamClosedError:
            return False
        self.bytes_out += _wire(n)
        if added or queued:
            self.server.budget.changed(self, unflushed(stream))
        m = self.server.metrics
        m.messages_sent += 1
        m.bytes_sent += n
        m.rows_sent += rows
        return True

    def unsent(self) -> int:
        """Bytes queued for this client: written to its stream and not yet taken by the
        socket, and the appends held for it."""
        stream = self.out_stream
        return (unflushed(stream) if stream is not None else 0) + self.held_bytes

    def queue_now(self) -> int:
        """Bytes queued for this client now (also updates the server's accounting)."""
        queued = self.unsent()
        if queued != self.queued:
            self.server.budget.changed(self, queued)
        return queued

    def drop_slow(self, tag: str, reason: str) -> None:
        """Disconnect now: close code 4000, then abort the connection, so what is
        queued for it is freed at once (a client that does not read would never see
        the close frame anyway)."""
        log.warning("livestream: dropping client %s (%d bytes queued): %s", self.session,
                    self.queued, reason)
        self.close_reason_tag = tag
        self.close(CloseCode.SLOW_CONSUMER, reason)
        self.held.clear()
        self.held_bytes = 0
        if self.out_stream is not None:
            self.out_stream.close()
        self.server.budget.forget(self)

    def _over_limit(self) -> bool:
        cfg = self.server.config
        if cfg.slow_consumer == "conflate":
            if not self.stalled:
                log.info("livestream: client %s is slow; conflating", self.session)
            self.stalled = True
            self.server.metrics.queue_drops += 1
            return False
        log.warning("livestream: closing slow client %s (%d bytes queued)", self.session,
                    self.queued)
        self.close_reason_tag = "slow_consumer"
        self.close(CloseCode.SLOW_CONSUMER, f"slow consumer: send queue over {cfg.send_queue_bytes} bytes")
        # Nothing more is queued for it (is_closing() is now true): its memory stays
        # bounded by the limit plus one frame, and Tornado aborts the TCP connection if
        # the close handshake does not complete within 5 seconds.
        return False

    def send_update(self, update: Update, frame: bytes, binary: bool,
                    merge: tuple[bytes, memoryview] | None = None) -> None:
        """Send an already encoded update (the same bytes go to every subscriber).

        ``merge``: for a binary ``append``, its stream's schema message
        (:func:`~livestream.protocol.codec.stream_head`) and record batch messages
        (:func:`~livestream.protocol.codec.stream_batches`), found once per update: while
        the client's socket is busy the append is held, merged with the appends that
        continue it, and sent as one frame once the socket has taken what was queued
        before it (``ServerConfig.merge_bytes``; docs/protocol.md §3.3).
        """
        if self.stalled:
            self.server.metrics.queue_drops += 1
            return
        busy = merge is not None and (self.held or (
            self.out_stream is not None and unflushed(self.out_stream) > 0))
        if busy and self._hold(update, frame, *merge):  # type: ignore[misc]
            return
        # bytes with binary=False go out as a text frame without re-encoding
        self.send_frame(frame, binary=binary, size=len(frame), rows=update.rows)

    def _hold(self, update: Update, frame: bytes, head: bytes, body: memoryview) -> bool:
        """Hold a binary append for merging; False if it cannot be (send it as it is)."""
        cfg = self.server.config
        if cfg.merge_bytes <= 0:
            return False
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return True  # gone: nothing more is sent to it
        n = len(frame)
        queued = self.unsent()
        if queued + n > cfg.send_queue_bytes:
            self._over_limit()
            return True
        wire = _wire(n)
        last = self.held[-1] if self.held else None
        if last is not None and last.continues(update, head, body, cfg.merge_bytes):
            last.add(update, frame, body, wire)
        else:
            self.held.append(_Held(update, frame, body, head, wire))
        self.held_bytes += wire
        self.bytes_out += wire
        self.server.budget.changed(self, queued + wire)
        if not self.held_armed and self.out_stream is not None:
            self.held_armed = True
            on_flushed(self.out_stream, self._flushed)
        return True

    def _flushed(self) -> None:
        """The socket took everything queued before the held appends: send them."""
        self.held_armed = False
        if closing(self):
            self.held.clear()
            self.held_bytes = 0
        elif self.held:
            self._release()

    def _release(self) -> None:
        """Write the held appends to the stream, each run of them as one frame."""
        held, self.held = self.held, []
        self.held_bytes = 0
        stream = self.out_stream
        if stream is None or stream.closed():
            return
        m = self.server.metrics
        try:
            for run in held:
                if len(run.frames) == 1:
                    data = run.frames[0]
                    write_frame(stream, 0x2, data, False)
                    n = len(data)
                else:
                    prefix = pack_binary(data_header("append", run.topic, run.epoch, run.offset,
                                                     run.next, run.rows, run.ts), run.head)
                    n = len(prefix) + sum(len(b) for b in run.bodies) + len(STREAM_END)
                    stream.write(frame_header(0x2, n) + prefix)
                    for body in run.bodies:  # views of the encoded frames: not copied
                        stream.write(body)
                    stream.write(STREAM_END)
                    m.appends_merged += len(run.frames) - 1
                    self.bytes_out += _wire(n) - run.wire
                m.messages_sent += 1
                m.bytes_sent += n
                m.rows_sent += run.rows
        except StreamClosedError:
            return
        self.server.budget.changed(self, unflushed(stream))

    def send_gap(self, gap: Gap) -> None:
        self.send_json({
            "type": "gap",
            "topic": gap.topic,
            "epoch": gap.epoch,
            "offset": gap.offset,
            "new_epoch": gap.new_epoch,
            "until": gap.until,
            "reason": gap.reason,
        })


def _bearer(request: Any) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None
