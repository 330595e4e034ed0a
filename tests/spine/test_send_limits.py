"""Limits that hold for the whole process: bytes queued for all clients, snapshots paced by each
client's queue, stalled clients dropped, frames after a 4002 close ignored, HTTP idle timeouts.

Every client here is a real socket; queued bytes are read on the server side.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import tracemalloc

import orjson
import pytest
from spine_util import RawClient, StalledSocket, async_test, masked_frame, trades, until
from testutil import poll

import livestream as ls
from livestream.protocol import CloseCode
from livestream.server.websocket import unflushed

KiB = 1024
MiB = 1024 * KiB


def _queues(srv: ls.Server) -> dict[object, int]:
    """Bytes queued for each open connection: written and not yet taken by its socket, and
    the appends held for it to merge."""
    return {h: unflushed(h.ws_connection.stream) + h.held_bytes
            for h in srv.core.clients if h.ws_connection is not None}


# -- one budget for the whole process ---------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "arrow"])  # arrow: appends held to merge
@async_test(timeout=240)
async def test_process_send_budget_bounds_the_bytes_queued_for_all_clients(encoding):
    limit, budget = 1 * MiB, 4 * MiB
    srv = ls.serve(port=0, send_queue_bytes=limit, max_send_bytes_total=budget)
    srv.publish("trades", trades(10))
    good = ls.connect(srv.url)
    sub = good.subscribe("trades", window=None)
    await sub.wait_async(rows=10)
    slow = [await asyncio.to_thread(StalledSocket, srv.port, "trades", encoding=encoding)
            for _ in range(20)]
    await until(lambda: len(srv.core.subscribers["trades"]) == 21, what="20 stalled subscribers")
    schema = srv.core.backplane.get("trades").schema
    total, peak, frame = 10, 0, 0
    for _ in range(400):
        u = srv.publish("trades", trades(2000, total))
        total += u.rows
        frame = max(frame, len(srv.core.encode(u, schema, encoding)))
        peak = max(peak, sum(_queues(srv).values()))
        await sub.wait_async(rows=total, timeout=60)  # the reader keeps up
        if sum(srv.metrics.disconnects.values()) >= 20:
            break
    # 20 clients at 1 MiB each would queue 20 MiB: the process budget holds instead
    assert peak <= budget + frame
    assert srv.metrics.send_queue_bytes_peak <= budget + frame
    assert srv.metrics.disconnects["send_budget"] >= 1, srv.metrics.disconnects
    # the reader was never slowed or dropped
    await sub.wait_async(rows=total, timeout=60)
    assert sub.df["seq"].tolist() == list(range(total))
    assert good.stats.reconnects == 0
    # once the stalled clients are gone nothing stays queued
    for s in slow:
        s.close()
    await until(lambda: srv.metrics.connections == 1, timeout=30, what="stalled clients gone")
    await until(lambda: srv.metrics.send_queue_bytes == 0, what="queued bytes released")
    assert sum(_queues(srv).values()) == 0
    text = srv.metrics.render(1)
    assert "livestream_send_queue_bytes 0\n" in text
    good.close()
    await srv.aclose()


# -- snapshots count against the client's queue and are paced --------------------------------


@async_test(timeout=240)
async def test_non_readers_of_a_big_snapshot_hold_at_most_their_queue_and_are_dropped():
    limit = 512 * KiB
    srv = ls.serve(port=0, send_queue_bytes=limit, send_timeout=1.0, ping_interval=120,
                   ping_timeout=120)
    srv.publish("big", trades(100_000))  # a JSON snapshot of ~5.5 MB
    slow = [await asyncio.to_thread(StalledSocket, srv.port, "big") for _ in range(10)]
    peaks: dict[object, int] = {}

    def sample() -> bool:
        for h, q in _queues(srv).items():
            peaks[h] = max(peaks.get(h, 0), q)
        return srv.metrics.connections == 0

    # dropped for not reading, long before a ping could time out
    await until(sample, timeout=60, what="stalled readers dropped")
    assert len(peaks) == 10 and min(peaks.values()) > 0  # each had bytes queued
    assert max(peaks.values()) <= limit  # ... never the whole snapshot
    assert srv.metrics.disconnects["send_timeout"] == 10
    assert srv.metrics.snapshot_waits >= 10
    for s in slow:
        s.close()
    await srv.aclose()


@pytest.mark.parametrize("encoding", ["json", "arrow"])
@async_test(timeout=240)
async def test_fast_client_subscribing_to_eight_big_topics_at_once_is_not_closed(encoding):
    limit = 1 * MiB
    srv = ls.serve(port=0, send_queue_bytes=limit)
    n = 40_000
    for i in range(8):
        srv.publish(f"big{i}", trades(n))  # each snapshot is bigger than the client's queue limit
    conn = ls.connect(srv.url, encoding=encoding, reconnect=False)
    subs = [conn.subscribe(f"big{i}", window=None) for i in range(8)]
    # rows keep arriving while the snapshots go out
    for _ in range(30):
        for i in range(8):
            srv.publish(f"big{i}", trades(100, n))
        n += 100
        await asyncio.sleep(0)
    for s in subs:
        await s.wait_async(rows=n, timeout=120)
    for s in subs:
        assert s.df["seq"].tolist() == list(range(n))
        assert s.stats.gaps == 0
    assert conn.state == "live"
    assert srv.metrics.disconnects["slow_consumer"] == 0
    assert srv.metrics.connections_total == 1
    assert srv.metrics.snapshot_slices > 8  # paced in slices, not 8 whole snapshots
    conn.close()
    await srv.aclose()


async def _read_subscription(c: RawClient, topic: str) -> tuple[list[dict], list[int], int]:
    """Read one subscription's data messages until its rows reach the topic's ``next``:
    returns (headers, raw frame sizes, rows held)."""
    headers: list[dict] = []
    sizes: list[int] = []
    target = None
    held = None
    while target is None or held is None or held < target:
        raw = await asyncio.wait_for(c.ws.read_message(), 30)
        assert raw is not None, "connection closed"
        msg = orjson.loads(raw)
        if msg["type"] == "subscribed":
            target = msg["next"]
        elif msg["type"] in ("snapshot", "append") and msg["topic"] == topic:
            headers.append({k: v for k, v in msg.items() if k != "columns"})
            sizes.append(len(raw))
            assert msg["columns"]["seq"] == list(range(msg["offset"], msg["next"]))
            held = msg["next"]
    return headers, sizes, held


@async_test(timeout=240)
async def test_burst_of_40_subscribes_is_encoded_once_and_sent_in_bounded_slices():
    slice_bytes = 32 * KiB
    srv = ls.serve(port=0, snapshot_slice_bytes=slice_bytes)
    srv.publish("big", trades(20_000))  # ~1.1 MB of JSON
    clients = [await RawClient.open(srv.url) for _ in range(40)]
    encodes = srv.metrics.encodes
    await asyncio.gather(*(c.send({"type": "subscribe", "topic": "big"}) for c in clients))
    results = await asyncio.gather(*(_read_subscription(c, "big") for c in clients))
    slices = []
    for headers, sizes, held in results:
        assert held == 20_000
        # a snapshot, then appends with contiguous offsets (docs/protocol.md §4.4)
        assert headers[0]["type"] == "snapshot" and headers[0]["offset"] == 0
        assert all(h["type"] == "append" for h in headers[1:])
        assert [h["offset"] for h in headers[1:]] == [h["next"] for h in headers[:-1]]
        assert max(sizes) <= slice_bytes
        slices.append(len(headers))
    assert min(slices) >= 20
    # the same slices went to every client: encoded about once, not 40 times
    assert srv.metrics.encodes - encodes <= 2 * max(slices)
    # no loop turn sent more than the pacer's turn budget
    assert srv.core.pacer.max_turn_bytes <= srv.core.pacer.turn_bytes + slice_bytes
    for c in clients:
        c.close()
    await srv.aclose()


@async_test(timeout=120)
async def test_updates_during_a_paced_snapshot_arrive_after_it_in_offset_order():
    srv = ls.serve(port=0, snapshot_slice_bytes=64 * KiB, send_queue_bytes=256 * KiB)
    n = 100_000  # ~5.5 MB of JSON: more than the kernel's socket buffers take
    srv.publish("t", trades(n))
    client = await asyncio.to_thread(StalledSocket, srv.port, "t")  # not reading yet
    await until(lambda: srv.metrics.snapshot_waits > 0, what="snapshot paused")
    assert srv.metrics.snapshots_pending == 1
    for _ in range(20):  # published while the snapshot waits for the client
        srv.publish("t", trades(50, n))
        n += 50
    seqs: list[int] = []
    kinds: list[str] = []
    while len(seqs) < n:
        frames = await asyncio.to_thread(client.read_frames, 5.0)
        assert frames, "no more frames"
        for _op, payload in frames:
            msg = orjson.loads(payload)
            if msg["type"] in ("snapshot", "append"):
                assert msg["offset"] == len(seqs) and msg["next"] == len(seqs) + msg["rows"]
                kinds.append(msg["type"])
                seqs.extend(msg["columns"]["seq"])
    # snapshot, then appends: every row once, in offset order, the updates after the snapshot
    assert seqs == list(range(n))
    assert kinds[0] == "snapshot" and set(kinds[1:]) == {"append"} and len(kinds) > 10
    assert srv.metrics.snapshots_pending == 0
    client.close()
    await srv.aclose()


@pytest.mark.parametrize("policy", ["close", "conflate"])
@async_test(timeout=120)
async def test_a_client_the_topic_outruns_during_its_snapshot_is_a_slow_consumer(policy):
    srv = ls.serve(port=0, snapshot_slice_bytes=64 * KiB, send_queue_bytes=256 * KiB,
                   slow_consumer=policy)
    n = 100_000
    srv.publish("t", trades(n))
    client = await asyncio.to_thread(StalledSocket, srv.port, "t")  # not reading yet
    await until(lambda: srv.metrics.snapshot_waits > 0, what="snapshot paused")
    srv.publish("t", trades(n, n))  # the rows not sent yet leave the retention window
    n *= 2
    frames: list[tuple[int, bytes]] = []
    while not frames or frames[-1][0] != 0x8:
        more = await asyncio.to_thread(client.read_frames, 5.0)
        if not more:
            break
        frames += more
    texts = [orjson.loads(p) for op, p in frames if op == 0x1]
    if policy == "close":
        assert frames[-1][0] == 0x8
        assert struct.unpack("!H", frames[-1][1][:2])[0] == CloseCode.SLOW_CONSUMER
        assert not any(m["type"] == "gap" for m in texts)
    else:  # a gap, then the delivery starts over with a fresh snapshot: every row once
        kinds = [m["type"] for m in texts]
        gap = texts[kinds.index("gap")]
        assert gap["reason"] == "retention" and gap["until"] == n // 2
        after = texts[kinds.index("gap") + 1:]
        assert after[0]["type"] == "snapshot" and after[0]["offset"] == n // 2
        seqs = [s for m in after for s in m["columns"]["seq"]]
        assert seqs == list(range(n // 2, n))
    client.close()
    await srv.aclose()


@async_test(timeout=120)
async def test_a_topic_deleted_while_its_snapshot_is_paced_stops_it_and_restarts_with_a_gap():
    srv = ls.serve(port=0, snapshot_slice_bytes=64 * KiB, send_queue_bytes=256 * KiB)
    srv.publish("t", trades(100_000))
    client = await asyncio.to_thread(StalledSocket, srv.port, "t")  # not reading yet
    await until(lambda: srv.metrics.snapshot_waits > 0, what="snapshot paused")
    assert srv.core.delete_topic("t")
    assert srv.metrics.snapshots_pending == 0
    srv.publish("t", trades(5))  # created again: a new epoch
    msgs: list[dict] = []
    while not msgs or msgs[-1].get("type") != "snapshot" or msgs[-1]["next"] != 5:
        frames = await asyncio.to_thread(client.read_frames, 5.0)
        assert frames, f"no more frames after {[m['type'] for m in msgs][-5:]}"
        msgs += [orjson.loads(p) for op, p in frames if op == 0x1]
    kinds = [m["type"] for m in msgs]
    cut = kinds.index("deleted")
    before, after = msgs[:cut], msgs[cut + 1:]
    held = max(m["next"] for m in before if m["type"] in ("snapshot", "append"))
    assert held < 100_000  # part of the snapshot had been sent
    assert [m["type"] for m in after] == ["subscribed", "gap", "snapshot"]
    gap = after[1]
    assert gap["reason"] == "epoch" and gap["offset"] == held and gap["until"] == 0
    assert after[2]["epoch"] != before[1]["epoch"] and after[2]["columns"]["seq"] == list(range(5))
    client.close()
    await srv.aclose()


# -- the payload is shared, not copied per client ---------------------------------------------


@async_test(timeout=120)
async def test_a_frame_queued_for_many_clients_is_not_copied_per_client():
    srv = ls.serve(port=0, send_queue_bytes=64 * MiB)
    slow = [await asyncio.to_thread(StalledSocket, srv.port) for _ in range(10)]
    await until(lambda: len(srv.core.clients) == 10, what="10 connections")
    payload = bytes(8 * MiB)
    handlers = list(srv.core.clients)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for h in handlers:
            assert h.send_frame(payload, binary=True, size=None)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(q > MiB for q in _queues(srv).values())  # most of it is queued...
    assert grown < len(payload) // 4  # ... by reference: not ten copies
    for s in slow:
        s.close()
    await srv.aclose()


# -- after a 4002 close, frames already received are ignored ----------------------------------


@async_test()
async def test_frames_received_after_the_4002_close_are_not_processed():
    srv = ls.serve(port=0, max_errors=3)
    raw = await asyncio.to_thread(StalledSocket, srv.port, None, 1 << 20)
    publish = orjson.dumps({"type": "publish", "topic": "late", "id": 1,
                            "columns": {"x": [1, 2, 3]}})
    # three malformed messages and a valid publish, in one TCP write
    await asyncio.to_thread(raw.sock.sendall,
                            masked_frame(b"not json") * 3 + masked_frame(publish))
    frames = await asyncio.to_thread(raw.read_frames)
    texts = [orjson.loads(p) for op, p in frames if op == 0x1]
    close = [p for op, p in frames if op == 0x8]
    assert [m["code"] for m in texts] == ["bad_json"] * 3
    assert close and struct.unpack("!H", close[0][:2])[0] == CloseCode.TOO_MANY_ERRORS
    raw.close()  # the server reads everything before the end of the stream, then closes
    await until(lambda: srv.metrics.disconnects["too_many_errors"] == 1, what="closed")
    assert srv.core.backplane.get("late") is None
    assert srv.metrics.publishes == 0
    await srv.aclose()


# -- HTTP requests cannot hold connections open -----------------------------------------------


def _closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_half_sent_http_requests_are_closed_after_the_idle_timeouts():
    srv = ls.serve(port=0, http_idle_timeout=0.5, http_body_timeout=0.5)
    try:
        ws = StalledSocket(srv.port, None, 1 << 20)
        socks = []
        host = f"Host: 127.0.0.1:{srv.port}\r\n".encode()
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", srv.port))
            if i % 4 == 0:  # headers never finished
                s.sendall(b"GET /health HTTP/1.1\r\n" + host + b"X-Slow: ")
            elif i % 4 == 1:  # a body that never arrives
                s.sendall(b"POST /topics/t HTTP/1.1\r\n" + host +
                          b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"r")
            elif i % 4 == 2:  # nothing at all
                pass
            else:  # a finished request, then an idle keep-alive connection
                s.sendall(b"GET /health HTTP/1.1\r\n" + host + b"\r\n")
                s.settimeout(5)
                assert b" 200 " in s.recv(65536).split(b"\r\n", 1)[0]
            socks.append(s)
        for s in socks:
            s.setblocking(False)
        poll(lambda: all(_closed_by_peer(s) for s in socks), timeout=30,
             what="half-sent requests closed")
        # a WebSocket idle for longer than those timeouts is not an HTTP request: still open
        ws.send_text(orjson.dumps({"type": "ping", "id": "p"}))
        frames = ws.read_frames(timeout=5)
        assert any(op == 0x1 and orjson.loads(p)["type"] == "pong" for op, p in frames)
        for s in socks:
            s.close()
        ws.close()
    finally:
        srv.close()


# -- documented ------------------------------------------------------------------------------


def test_these_limits_have_documented_defaults():
    from pathlib import Path

    from livestream.server.config import ServerConfig

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    table = doc.split("## 8. Limits and defaults", 1)[1].split("\n## ", 1)[0]
    for name in ("send_queue_bytes", "snapshot_slice_bytes", "max_send_bytes_total",
                 "send_timeout", "http_idle_timeout", "http_body_timeout", "merge_bytes",
                 "kernel_unsent_bytes"):
        assert f"| `{name}` |" in table, name
        assert f"``{name}``" in (ServerConfig.__doc__ or ""), name
    limits = ServerConfig().limits()
    assert limits["snapshot_slice_bytes"] == 1 * MiB and limits["send_timeout"] == 20.0
