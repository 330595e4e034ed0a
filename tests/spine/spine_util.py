"""Helpers for the streaming-spine tests: run a scenario on one asyncio loop, poll with deadlines."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import orjson
import pandas as pd
from testutil import raw_websocket
from testutil import until as shared_until
from tornado.websocket import websocket_connect

import livestream as ls
from livestream.protocol import dumps, loads, unpack_binary

SYMBOLS = [f"S{i:02d}" for i in range(50)]


def async_test(timeout: float = 60.0) -> Callable:
    """Run an ``async def`` test on a fresh event loop, bounded by ``timeout``."""

    def deco(fn: Callable[..., Coroutine]) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout))

        return wrapper

    return deco


async def until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``pred`` on the loop until true; fail with ``what`` after ``timeout`` seconds."""
    await shared_until(pred, timeout, what, step=0.005)


def trades(n: int, start: int = 0, seed: int = 0) -> pd.DataFrame:
    """A trades batch whose ``seq`` column numbers rows globally from ``start``."""
    rng = np.random.default_rng(seed + start)
    return pd.DataFrame({
        "seq": np.arange(start, start + n, dtype=np.int64),
        "ts": pd.Timestamp("2024-01-02", tz="UTC") + pd.to_timedelta(np.arange(start, start + n),
                                                                     "ms"),
        "symbol": rng.choice(SYMBOLS, n),
        "price": rng.normal(100, 1, n),
        "size": rng.integers(1, 1000, n, dtype=np.int64),
    })


class RawClient:
    """A bare WebSocket client speaking the protocol by hand (for bad-input tests)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, **kw: Any) -> RawClient:
        return cls(await websocket_connect(url, **kw))

    async def send(self, msg: Any) -> None:
        if isinstance(msg, dict | list):
            msg = dumps(msg).decode()
        await self.ws.write_message(msg, binary=isinstance(msg, bytes))

    async def recv(self, timeout: float = 5.0) -> dict | None:
        raw = await asyncio.wait_for(self.ws.read_message(), timeout)
        if raw is None:
            return None
        if isinstance(raw, bytes):
            header, payload = unpack_binary(raw)
            header["_payload"] = bytes(payload)
            return header
        return loads(raw)

    async def recv_type(self, mtype: str, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"connection closed while waiting for {mtype}")
            if msg.get("type") == mtype:
                return msg

    def close(self) -> None:
        self.ws.close()


def masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final, masked client-to-server WebSocket frame (RFC 6455 §5.2) of any length."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
    key = np.frombuffer((mask * (n // 4 + 1))[:n], dtype=np.uint8)
    body = (np.frombuffer(payload, dtype=np.uint8) ^ key).tobytes()
    return head + mask + body


class StalledSocket:
    """A raw WebSocket client on a blocking socket with a tiny receive buffer.

    It subscribes (when given a topic), then reads only when told to, so the server
    sees real TCP backpressure.
    """

    def __init__(self, port: int, topic: str | None = None, rcvbuf: int = 4096,
                 encoding: str | None = None) -> None:
        self.sock, self.buf = raw_websocket(port, rcvbuf=rcvbuf)
        self.sock.settimeout(None)  # blocking; read_frames sets its own timeout
        if encoding is not None:
            self.send_text(orjson.dumps({"type": "hello", "v": 1, "encoding": encoding}))
        if topic is not None:
            self.send_text(orjson.dumps({"type": "subscribe", "topic": topic}))

    def send_text(self, payload: bytes) -> None:
        self.sock.sendall(masked_frame(payload))

    def read_frames(self, timeout: float = 5.0) -> list[tuple[int, bytes]]:
        """Drain the socket; return complete (opcode, payload) frames read so far."""
        self.sock.settimeout(timeout)
        frames = []
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                self.buf += chunk
                while True:
                    f = self._frame()
                    if f is None:
                        break
                    frames.append(f)
                    if f[0] == 0x8:
                        return frames
                self.sock.settimeout(0.5)
        except (TimeoutError, ConnectionResetError):
            pass
        return frames

    def _frame(self) -> tuple[int, bytes] | None:
        b = self.buf
        if len(b) < 2:
            return None
        op, n, pos = b[0] & 0x0F, b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < pos + n:
            return None
        self.buf = b[pos + n:]
        return op, b[pos:pos + n]

    def close(self) -> None:
        self.sock.close()


def cut(conn: ls.Connection) -> bool:
    """Abruptly kill a client's TCP connection (no close frame). False if not connected."""
    ws = conn._ws
    sock = ws.socket if ws is not None else None
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True
