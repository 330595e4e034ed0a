"""Every place the server relies on Tornado beyond its documented API, checked in one spot.

livestream writes WebSocket frames itself and bounds each client's send queue by
reading Tornado's write buffer (see docs/decisions.md, "The per-client send queue is
Tornado's own write buffer"). Those reliances are:

- ``IOStream._write_buffer``: a private buffer whose ``len()`` is the number of bytes
  written and not yet accepted by the socket (``None`` once the stream is closed);
  large writes are kept in it by reference (a ``memoryview``), not copied;
- ``IOStream.write(b"")`` returns a Future that resolves once everything written
  before it has been flushed (public, but we rely on the ordering);
- ``WebSocketProtocol.stream`` / ``is_closing()`` and ``WebSocketHandler.ws_connection``;
- the handshake negotiates no extension when ``get_compression_options()`` returns
  ``None``, so frames we write ourselves need no RSV bits;
- :class:`StrictProtocol`, the RFC 6455 checks Tornado's server side leaves out, hooks
  ``WebSocketProtocol13``'s frame reader (``_receive_frame``, ``_read_bytes``,
  ``_handle_message``, ``_run_callback``, ``_frame_compressed``, ``_message_bytes_in``)
  and is installed through ``WebSocketHandler.get_websocket_protocol``;
- Tornado's keepalive (``WebSocketProtocol13.periodic_ping``) closes a connection whose
  pong is late by calling ``self.close(reason="ping timed out")`` without a code (so 1000,
  a normal closure); :meth:`StrictProtocol.close` recognises that call by its reason and
  sends 1011 instead (docs/protocol.md §7.2).

:func:`check` verifies them on a real socket pair and raises :class:`RuntimeError`
naming what changed; ``livestream.serve()`` calls it before it listens, and the test
suite calls it, so a Tornado upgrade that breaks one fails loudly instead of quietly
disabling the send-queue bound.
"""

from __future__ import annotations

import inspect
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import tornado
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

from ..protocol import CloseCode

__all__ = ["StrictProtocol", "check", "closing", "frame_header", "on_flushed", "unflushed",
           "write_frame"]

log = logging.getLogger("livestream.server")

_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")
_checked = False


def unflushed(stream: Any) -> int:
    """Bytes written to a Tornado ``IOStream`` and not yet accepted by its socket.

    0 for a closed stream. Raises ``AttributeError`` if Tornado no longer has the
    buffer (:func:`check` reports that at start rather than here).
    """
    buf = stream._write_buffer
    return len(buf) if buf is not None else 0


def frame_header(opcode: int, n: int) -> bytes:
    """An unmasked, final WebSocket frame header (RFC 6455 §5.2) for ``n`` payload bytes."""
    first = 0x80 | opcode
    if n < 126:
        return struct.pack("BB", first, n)
    if n <= 0xFFFF:
        return struct.pack("!BBH", first, 126, n)
    return struct.pack("!BBQ", first, 127, n)


def write_frame(stream: IOStream, opcode: int, payload: bytes, direct: bool) -> int:
    """Write one frame; return the bytes it added to the stream's queue (0: all sent).

    ``payload`` is never copied: with ``direct`` (nothing queued before it, plain
    TCP) header and payload go to the socket in one ``sendmsg`` (scatter/gather);
    whatever the kernel does not take is queued as a view of ``payload``. Raises
    ``StreamClosedError`` if the connection is gone.
    """
    header = frame_header(opcode, len(payload))
    h = len(header)
    total = h + len(payload)
    sent = 0
    if direct and type(stream) is IOStream:  # plain TCP; TLS goes through write()
        sock = stream.socket
        if sock is None:
            raise StreamClosedError()
        try:
            if _HAS_SENDMSG:
                sent = sock.sendmsg([header, payload])
            else:  # pragma: no cover - Windows
                sent = sock.send(header)
                if sent == h and payload:
                    sent += sock.send(payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # reset by the peer: closing runs on_close's bookkeeping
            stream.close()
            raise StreamClosedError() from None
    if sent >= total:
        return 0
    if sent < h:
        if len(payload) <= 2048:  # Tornado copies small writes anyway: one write
            stream.write(header[sent:] + payload)
        else:
            stream.write(header[sent:])
            stream.write(payload)
    else:
        stream.write(memoryview(payload)[sent - h:])
    return total - sent


def on_flushed(stream: IOStream, callback: Callable[[], None]) -> None:
    """Call ``callback`` (on the loop) once everything queued on ``stream`` so far is
    flushed, or the stream closed."""
    try:
        fut = stream.write(b"")
    except StreamClosedError:
        callback()
        return
    fut.add_done_callback(lambda _f: callback())


def closing(handler: WebSocketHandler) -> bool:
    """Whether ``handler``'s connection is closed or closing, by either side.

    Tornado keeps handing received frames to ``on_message`` after the server has
    sent its close frame (until the client's close frame arrives); callers use this
    to ignore them.
    """
    conn = handler.ws_connection
    return conn is None or conn.is_closing()


#: Close codes a peer may send (RFC 6455 §7.4 and the IANA registry): others get 1002.
_VALID_CLOSE_CODES = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])


#: The reason Tornado's ``periodic_ping`` passes to ``close()`` when a pong is late.
PING_TIMEOUT_REASON = "ping timed out"


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

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close; Tornado's ping timeout (no code, reason :data:`PING_TIMEOUT_REASON`) gets
        1011 and the reason ``ping timeout``, not 1000: the server did not close normally,
        the client stopped answering (RFC 6455 §7.4.1: 1011, an unexpected condition)."""
        if code is None and reason == PING_TIMEOUT_REASON:
            code, reason = CloseCode.INTERNAL_ERROR, "ping timeout"
            handler = self.handler
            if getattr(handler, "close_reason_tag", None) == "client":
                handler.close_reason_tag = "ping_timeout"
        super().close(code, reason)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: a close frame with ``code``, then close the TCP stream."""
        log.info("livestream: closing a client that broke RFC 6455 (%s): %s", code, reason)
        handler = self.handler
        if hasattr(handler, "close_reason_tag"):  # a livestream ClientHandler
            handler.close_reason_tag = "protocol_error"
        self.client_terminated = True  # read no more frames; close() then closes the stream
        self.close(code, reason)


def _static_problems() -> list[str]:
    problems = []
    if tornado.version_info < (6, 0):
        problems.append(f"Tornado {tornado.version} is too old (need 6.x)")
    if "_write_buffer" not in IOStream.__mro__[1].__init__.__code__.co_names:
        problems.append("IOStream no longer creates _write_buffer")
    for cls, attr in ((WebSocketProtocol, "is_closing"), (WebSocketHandler, "close"),
                      (WebSocketHandler, "get_compression_options"), (IOStream, "write"),
                      (WebSocketHandler, "get_websocket_protocol"),
                      (WebSocketProtocol13, "_handle_message"),
                      (WebSocketProtocol13, "_run_callback")):
        if not callable(getattr(cls, attr, None)):
            problems.append(f"{cls.__name__}.{attr} is missing")
    # StrictProtocol hooks the frame reader: _receive_frame awaits _read_bytes (the header
    # first) and hands each message to _handle_message
    for attr in ("_receive_frame", "_read_bytes"):
        if not inspect.iscoroutinefunction(getattr(WebSocketProtocol13, attr, None)):
            problems.append(f"WebSocketProtocol13.{attr} is not a coroutine method any more")
    recv = getattr(WebSocketProtocol13, "_receive_frame", None)
    names = recv.__code__.co_names if recv is not None else ()
    if "_read_bytes" not in names or "_handle_message" not in names:
        problems.append("WebSocketProtocol13._receive_frame no longer reads through "
                        "_read_bytes and _handle_message")
    ping = getattr(WebSocketProtocol13, "periodic_ping", None)
    if ping is None or PING_TIMEOUT_REASON not in ping.__code__.co_consts:
        problems.append("WebSocketProtocol13.periodic_ping no longer closes with reason "
                        f"{PING_TIMEOUT_REASON!r} (the ping-timeout close would not be 1011)")
    init_names = (WebSocketProtocol13.__init__.__code__.co_names
                  + WebSocketProtocol.__init__.__code__.co_names)
    for attr in ("_frame_compressed", "_message_bytes_in", "client_terminated", "params"):
        if attr not in init_names:
            problems.append(f"WebSocketProtocol13 no longer sets {attr}")
    try:
        params = list(inspect.signature(WebSocketProtocol13.__init__).parameters)
    except (TypeError, ValueError):
        params = []
    if params[1:4] != ["handler", "mask_outgoing", "params"]:
        problems.append(f"WebSocketProtocol13(...) takes {params[1:]} now")
    return problems


def _probe() -> list[str]:
    """Exercise the write-buffer reliances on a real socket pair (on the running loop)."""
    problems = []
    a, b = socket.socketpair()
    stream = None
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a.setblocking(False)
        stream = IOStream(a)
        payload = bytes(1 << 20)
        try:
            queued = write_frame(stream, 0x2, payload, True)
            n = unflushed(stream)
        except AttributeError:
            return ["IOStream._write_buffer is missing"]
        if not isinstance(n, int) or n != queued or not 0 < n <= len(payload) + 10:
            return [f"len(IOStream._write_buffer) does not count unflushed bytes "
                    f"(got {n!r}, expected {queued})"]
        views = [v for _, v in getattr(stream._write_buffer, "_buffers", ())]
        if not any(isinstance(v, memoryview) and v.obj is payload for v in views):
            problems.append("IOStream copies large writes (the payload is not kept by reference)")
        drained = stream.write(b"")
        if drained.done():
            problems.append("IOStream.write(b'') resolves before earlier writes are flushed")
        b.settimeout(5.0)
        received = 0
        while unflushed(stream) and received <= len(payload) + 10:
            received += len(b.recv(1 << 16))
            stream.write(b"")  # flushes what the socket takes now, synchronously
        if unflushed(stream) != 0 or not drained.done():
            problems.append("IOStream.write(b'') does not resolve once the buffer is flushed")
        stream.close()
        if unflushed(stream) != 0:
            problems.append("a closed IOStream still reports queued bytes")
    finally:
        if stream is not None:
            stream.close()
        a.close()
        b.close()
    return problems


def check() -> None:
    """Verify every Tornado reliance listed in this module; raise ``RuntimeError`` if one
    broke. Runs the socket probe once per process (call it on the server's loop)."""
    global _checked
    if _checked:
        return
    problems = _static_problems() or _probe()
    if problems:
        raise RuntimeError(
            f"livestream's server does not support Tornado {tornado.version}: "
            + "; ".join(problems)
            + ". The per-client send-queue bound depends on it; see "
              "livestream/server/_tornado_compat.py.")
    _checked = True
