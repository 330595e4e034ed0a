"""WebSocket framing rules (RFC 6455) the server enforces, checked with raw bytes on a
plain socket: an unmasked client frame, invalid close codes and payloads, invalid
UTF-8. Each fails the connection with a close frame carrying the RFC's code."""

from __future__ import annotations

import json
import os
import socket
import struct

import pytest
from testutil import raw_websocket

from livestream.protocol import CloseCode


def connect(port: int) -> socket.socket:
    """A WebSocket connection to ``/ws`` after a hand-written handshake."""
    sock, rest = raw_websocket(port)
    assert rest == b"", rest  # nothing is sent before the client speaks
    return sock


def frame(opcode: int, payload: bytes, *, mask: bool = True) -> bytes:
    """One final client frame (masked unless ``mask=False``)."""
    n = len(payload)
    bit = 0x80 if mask else 0
    head = struct.pack("!BB", 0x80 | opcode, bit | n) if n < 126 else struct.pack(
        "!BBH", 0x80 | opcode, bit | 126, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frames(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Every frame the server sends until it closes the TCP connection."""
    out = []
    while True:
        head = recv_exact(sock, 2)
        if head is None:
            return out
        opcode, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", recv_exact(sock, 2) or b"\0\0")[0]
        elif n == 127:
            n = struct.unpack("!Q", recv_exact(sock, 8) or b"\0" * 8)[0]
        out.append((opcode, recv_exact(sock, n) or b""))


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    closes = [p for op, p in frames if op == 0x8]
    assert len(closes) == 1, frames
    return struct.unpack("!H", closes[0][:2])[0] if len(closes[0]) >= 2 else None


def still_serves(port: int) -> None:
    sock = connect(port)
    sock.sendall(frame(0x1, json.dumps({"type": "ping", "id": "after"}).encode()))
    head = recv_exact(sock, 2)
    assert head is not None
    reply = json.loads(recv_exact(sock, head[1] & 0x7F) or b"{}")
    assert reply["type"] == "pong" and reply["id"] == "after"
    sock.close()


def test_an_unmasked_client_frame_fails_the_connection_with_1002(server, poll) -> None:
    sock = connect(server.port)
    sock.sendall(frame(0x1, b'{"type": "ping", "id": 1}', mask=False))
    frames = read_frames(sock)
    sock.close()
    assert [op for op, _ in frames] == [0x8], "the unmasked frame was handled"
    assert close_code(frames) == CloseCode.PROTOCOL_ERROR == 1002
    poll(lambda: server.metrics.disconnects["protocol_error"] == 1, what="the disconnect counted")
    still_serves(server.port)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_a_close_frame_with_an_invalid_code_is_answered_1002(server, code: int) -> None:
    sock = connect(server.port)
    sock.sendall(frame(0x8, struct.pack("!H", code) + b"bye"))
    frames = read_frames(sock)
    sock.close()
    assert close_code(frames) == 1002
    still_serves(server.port)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4002, 4999])
def test_a_close_frame_with_a_valid_code_is_echoed(server, code: int) -> None:
    sock = connect(server.port)
    sock.sendall(frame(0x8, struct.pack("!H", code) + "fin ☃".encode()))
    frames = read_frames(sock)
    sock.close()
    assert close_code(frames) == code


def test_an_empty_close_frame_is_answered_without_a_code(server) -> None:
    sock = connect(server.port)
    sock.sendall(frame(0x8, b""))
    frames = read_frames(sock)
    sock.close()
    assert close_code(frames) is None


def test_a_one_byte_close_payload_is_answered_1002(server) -> None:
    sock = connect(server.port)
    sock.sendall(frame(0x8, b"\x03"))
    frames = read_frames(sock)
    sock.close()
    assert close_code(frames) == 1002


@pytest.mark.parametrize("opcode, payload", [(0x8, struct.pack("!H", 1000) + b"\xff\xfe"),
                                             (0x1, b'{"type": "ping", "t": "\xc3("}')],
                         ids=["close reason", "text frame"])
def test_invalid_utf8_fails_the_connection_with_1007(server, opcode: int, payload: bytes) -> None:
    sock = connect(server.port)
    sock.sendall(frame(opcode, payload))
    frames = read_frames(sock)
    sock.close()
    assert [op for op, _ in frames] == [0x8]
    assert close_code(frames) == CloseCode.INVALID_PAYLOAD == 1007
    still_serves(server.port)
