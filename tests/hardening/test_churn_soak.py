"""Churn soak: thousands of connect/subscribe/disconnect cycles leave the server as it was.

The server runs in a subprocess (its memory and descriptors are measured alone, and a
crash fails the test instead of killing pytest) with a publisher feeding two topics.
Clients connect, subscribe (fresh or resuming), take their first data message, and
leave: half with a clean close handshake, half abruptly (a TCP reset, no close frame).
Afterwards the server's connections, subscriptions and open descriptors return to
their baseline, and its RSS stays within a fixed allowance of the warmed-up baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from testutil import poll, stop_process
from tornado.websocket import websocket_connect

CYCLES = 2_000
WARMUP = 200
PARALLEL = 8
#: RSS growth allowed over the warmed-up baseline after all cycles (allocator slack,
#: not leaks: a leak of even 10 KiB per cycle would be 20 MiB over 2,000 cycles).
RSS_ALLOWANCE = 16 * 1024 * 1024

SERVER_SCRIPT = r"""
import time
import numpy as np, pandas as pd
import livestream as ls

srv = ls.serve(port=0, retention_rows=5_000)
srv.publish("churn.a", pd.DataFrame({"i": np.arange(1000), "x": np.random.rand(1000)}))
srv.publish("churn.b", pd.DataFrame({"i": np.arange(100), "s": ["abc"] * 100}))
print(srv.port, flush=True)
n = 1000
while True:  # a live topic while clients churn; the test stops this process
    srv.publish("churn.a", pd.DataFrame({"i": np.arange(n, n + 50), "x": np.random.rand(50)}))
    n += 50
    time.sleep(0.01)
"""


def _abort(conn: Any) -> None:
    """Drop a client connection with a TCP reset: no close frame, no FIN handshake."""
    stream = conn.protocol.stream
    sock = stream.socket
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.close()


async def _cycle(url: str, i: int, resume: dict[str, tuple[str, int]]) -> None:
    conn = await websocket_connect(url)
    try:
        topic = "churn.a" if i % 3 else "churn.b"
        sub: dict[str, Any] = {"type": "subscribe", "topic": topic, "id": i}
        if i % 4 == 0 and topic == "churn.a" and topic in resume:  # resume by offset (live topic)
            sub["epoch"], sub["offset"] = resume[topic]
        await conn.write_message(json.dumps(sub))
        got_data = False
        while not got_data:
            msg = await asyncio.wait_for(conn.read_message(), 30)
            assert msg is not None, "server closed the connection"
            m = json.loads(msg)
            assert m.get("type") != "error", m
            if m["type"] in ("snapshot", "append"):
                resume[topic] = (m["epoch"], m["next"])
                got_data = True
    finally:
        if i % 2:
            _abort(conn)
        else:
            conn.close(1000)


async def _churn(url: str, start: int, count: int) -> None:
    resume: dict[str, tuple[str, int]] = {}
    todo = iter(range(start, start + count))

    async def worker() -> None:
        for i in todo:
            await _cycle(url, i, resume)

    await asyncio.gather(*(worker() for _ in range(PARALLEL)))


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        body = r.read().decode()
    return json.loads(body) if path != "/metrics" else body


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not found")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.soak
def test_churn_returns_connections_fds_and_memory_to_baseline(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=(tmp_path / "server.log").open("wb"), text=True,
    )
    assert proc.stdout is not None

    try:
        port = int(proc.stdout.readline())
        url = f"ws://127.0.0.1:{port}/ws"
        pid = proc.pid
        ps = psutil.Process(pid)

        def idle() -> bool:
            m = _get(port, "/metrics")
            return (_get(port, "/health")["connections"] == 0
                    and _metric(m, "livestream_subscriptions") == 0)

        asyncio.run(asyncio.wait_for(_churn(url, 0, WARMUP), 300))
        poll(idle, timeout=60, what="no connections after warm-up")
        fds0, rss0 = _fds(pid), ps.memory_info().rss

        asyncio.run(asyncio.wait_for(_churn(url, WARMUP, CYCLES), 900))
        assert proc.poll() is None, "the server process died during the churn"
        poll(idle, timeout=60, what="every connection and subscription released")
        poll(lambda: _fds(pid) <= fds0, timeout=60,
             what=f"open descriptors back to {fds0} (now {_fds(pid)})")
        rss1 = ps.memory_info().rss
        assert rss1 - rss0 <= RSS_ALLOWANCE, (
            f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB over {CYCLES} cycles "
            f"(allowed {RSS_ALLOWANCE / 2**20:.0f} MiB)")
        m = _get(port, "/metrics")
        assert _metric(m, "livestream_connections_total") >= WARMUP + CYCLES
    finally:
        stop_process(proc)
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "Traceback" not in log and "internal" not in log, log[-4000:]
