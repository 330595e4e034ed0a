"""The ``/ws`` endpoint: one :class:`ClientHandler` per WebSocket connection.

The handler is thin: it parses frames with :mod:`livestream.protocol`, asks the
:class:`~livestream.server.app.LivestreamServer` to act, and writes frames. All
of it runs on the server's loop. Bytes written but not yet flushed are counted
per client (``queued``) so that a client that stops reading is dealt with by the
slow-consumer policy instead of growing the server's memory without end.
"""

from __future__ import annotations

import logging
import secrets
import struct
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
from .auth import Grant
from .security import origin_allowed

if TYPE_CHECKING:
    from .app import LivestreamServer

log = logging.getLogger("livestream.server")


#: Close codes a peer may send (RFC 6455 §7.4 and the IANA registry): others get 1002.
_VALID_CLOSE_CODES = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])


class _Violation(Exception):
    """A frame that breaks RFC 6455; fail the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class StrictProtocol(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, plus the checks its server side leaves out.

    Tornado 6.6 handles an unmasked client frame as a masked one, echoes any close
    code (999 included), silently drops the connection (no close frame) on a frame
    with reserved bits or opcodes and on invalid UTF-8, and raises from its read
    loop on a close reason that is not UTF-8. Here each of these *fails the
    connection* (RFC 6455 §7.1.7): a close frame with 1002 (protocol error) or 1007
    (invalid payload), then the TCP connection is closed; nothing of the offending
    frame reaches ``on_message``. The frame header is checked as Tornado reads it
    (the first read of each frame); see docs/decisions.md.
    """

    _at_header = False

    async def _receive_frame(self) -> None:
        self._at_header = True
        try:
            await super()._receive_frame()
        except _Violation as v:
            self._fail(v.code, v.reason)

    async def _read_bytes(self, n: int) -> bytes:
        data = await super()._read_bytes(n)
        if self._at_header:
            self._at_header = False
            opcode = data[0] & 0x0F
            if data[0] & 0x70:
                raise _Violation(CloseCode.PROTOCOL_ERROR, "reserved bits set")
            if opcode in (3, 4, 5, 6, 7) or opcode > 0xA:
                raise _Violation(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if opcode & 0x8 and (not data[0] & 0x80 or (data[1] & 0x7F) > 125):
                raise _Violation(CloseCode.PROTOCOL_ERROR, "bad control frame")
            if not data[1] & 0x80:
                raise _Violation(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
        return data

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if self.client_terminated or self._frame_compressed:
            return super()._handle_message(opcode, data)
        if opcode == 0x1:  # as Tornado does, but a bad text frame is a 1007, not a drop
            self._message_bytes_in += len(data)
            try:
                decoded = data.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_PAYLOAD, "text frame is not UTF-8")
                return None
            return self._run_callback(self.handler.on_message, decoded)
        if opcode == 0x8:
            if len(data) == 1:
                self._fail(CloseCode.PROTOCOL_ERROR, "close frame of one byte")
                return None
            if len(data) >= 2 and struct.unpack(">H", data[:2])[0] not in _VALID_CLOSE_CODES:
                self._fail(CloseCode.PROTOCOL_ERROR, "invalid close code")
                return None
            try:
                data[2:].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_PAYLOAD, "close reason is not UTF-8")
                return None
        return super()._handle_message(opcode, data)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: a close frame with ``code``, then close the TCP stream."""
        log.info("livestream: closing a client that broke RFC 6455 (%s): %s", code, reason)
        handler = self.handler
        if isinstance(handler, ClientHandler):
            handler.close_reason_tag = "protocol_error"
        self.client_terminated = True  # read no more frames; close() then closes the stream
        self.close(code, reason)


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
        self.queued = 0  # bytes written, not yet flushed
        self.stalled = False  # conflating: updates dropped until the queue drains
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
        self.server._client_opened(self)

    def on_close(self) -> None:
        reason = self.close_reason_tag
        if reason == "client" and self.close_code is None:
            reason = "dropped"
        self.server._client_closed(self, reason)

    def on_message(self, message: str | bytes) -> None:
        try:
            if isinstance(message, bytes):
                header, payload = unpack_binary(message)
                if header.get("type") != "publish":
                    raise ProtocolError(
                        "bad_frame", "binary frames from clients must be publish frames"
                    )
                msg = parse_client_message(header)
                assert isinstance(msg, Publish)
                self._publish(msg, payload)
            else:
                msg = parse_client_message(loads(message))
                self._dispatch(msg)
            self.errors_in_row = 0
        except ProtocolError as exc:
            self._fail(exc.code, str(exc), exc.id, exc.topic)
        except SchemaError as exc:
            self._fail(exc.code, str(exc), getattr(exc, "id", None), getattr(exc, "topic", None),
                       column=exc.column)
        except LivestreamError as exc:
            self._fail(exc.code, str(exc), getattr(exc, "id", None), getattr(exc, "topic", None))
        except Exception:
            log.exception("livestream: internal error handling a client message")
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
        to the socket with one ``send()``; only what the kernel does not take is
        handed to the Tornado stream, whose unflushed byte count is the client's
        send queue for the slow-consumer check. No Future, task or callback per
        frame per client (see docs/decisions.md).
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return False
        stream = conn.stream
        n = len(data)
        queued = self.queued = unflushed(stream)
        if queued + n > self.server.config.send_queue_bytes and queued > 0:
            return self._over_limit()
        frame = _frame_header(0x2 if binary else 0x1, n) + data
        try:
            sent = 0
            if queued == 0 and type(stream) is IOStream:  # plain TCP; TLS goes through write()
                try:
                    sent = stream.socket.send(frame)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:  # reset by the peer: closing runs on_close's bookkeeping
                    stream.close()
                    return False
            if sent < len(frame):
                stream.write(memoryview(frame)[sent:] if sent else frame)
        except StreamClosedError:
            return False
        m = self.server.metrics
        m.messages_sent += 1
        m.bytes_sent += n
        m.rows_sent += rows
        return True

    def queue_drained(self) -> bool:
        """Whether a stalled (conflating) client has flushed below half its limit."""
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return False
        queued = self.queued = unflushed(conn.stream)
        return queued <= self.server.config.send_queue_bytes // 2

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

    def send_update(self, update: Update, frame: bytes, binary: bool) -> None:
        """Send an already encoded update (the same bytes go to every subscriber)."""
        if self.stalled:
            self.server.metrics.queue_drops += 1
            return
        # bytes with binary=False go out as a text frame without re-encoding
        self.send_frame(frame, binary=binary, size=len(frame), rows=update.rows)

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


def unflushed(stream: Any) -> int:
    """Bytes written to a Tornado IOStream and not yet accepted by the socket."""
    buf = getattr(stream, "_write_buffer", None)
    return len(buf) if buf is not None else 0


def _frame_header(opcode: int, n: int) -> bytes:
    """An unmasked, final WebSocket frame header (RFC 6455 §5.2) for ``n`` payload bytes."""
    first = 0x80 | opcode
    if n < 126:
        return struct.pack("BB", first, n)
    if n <= 0xFFFF:
        return struct.pack("!BBH", first, 126, n)
    return struct.pack("!BBQ", first, 127, n)
