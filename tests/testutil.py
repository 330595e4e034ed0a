"""Helpers shared by the test suite (importable: tests/conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any


def poll(fn: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
         step: float = 0.05, ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Call ``fn()`` until it returns something truthy and return that; fail after
    ``timeout`` seconds. ``step`` is a poll interval, not synchronisation: the
    condition decides. Exceptions of the ``ignore`` types count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except ignore:
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(step)


async def until(fn: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
                step: float = 0.002) -> Any:
    """:func:`poll` for code on an event loop: awaits between calls, so the loop (the
    server or client under test) runs while we wait."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(step)


def wait_for_output(proc: subprocess.Popen, pattern: str, timeout: float = 60.0) -> Any:
    """Read ``proc``'s stdout (a pipe) until ``pattern`` (a regex) matches what it printed;
    returns the match. Reads the file descriptor itself, so no line can sit unseen in a
    Python buffer while ``select`` waits for more; fails after ``timeout`` seconds or at
    end of output, quoting what was printed."""
    import re
    import select

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, seen.decode(errors="replace"))
        if m:
            return m
        left = deadline - time.monotonic()
        ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"no {pattern!r} in the output after {timeout}s: {seen[-2000:]!r}")
        seen += chunk


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Terminate ``proc`` (SIGTERM, so it can shut down cleanly); kill it if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def raw_websocket(port: int, host: str = "127.0.0.1", *, rcvbuf: int | None = None,
                  ) -> tuple[socket.socket, bytes]:
    """A connection to ``/ws`` opened with a hand-written RFC 6455 handshake (no WebSocket
    library): the socket (10 s timeout), and whatever the server sent after its ``101``
    response. ``rcvbuf`` sets a small receive buffer before connecting (real backpressure)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        assert chunk, "connection closed during the handshake"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest
