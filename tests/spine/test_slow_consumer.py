"""A client that stops reading is handled by the policy; others are not slowed; memory stays bounded."""

from __future__ import annotations

import asyncio
import struct

import orjson
from spine_util import StalledSocket, async_test, trades, until

import livestream as ls
from livestream.protocol import CloseCode
from livestream.server.websocket import unflushed


def _queued(srv: ls.Server) -> int:
    return max((unflushed(h.ws_connection.stream)
                for h in srv.core.clients if h.ws_connection is not None), default=0)


@async_test(timeout=120)
async def test_slow_client_is_closed_with_4000_while_others_get_everything():
    limit = 256 * 1024
    srv = ls.serve(port=0, send_queue_bytes=limit)
    srv.publish("trades", trades(10))
    good = ls.connect(srv.url)
    sub = good.subscribe("trades", window=None)
    await sub.wait_async(rows=10)
    slow = await asyncio.to_thread(StalledSocket, srv.port, "trades")
    await until(lambda: len(srv.core.subscribers["trades"]) == 2, what="slow subscribed")
    total, peak, frame_size = 10, 0, 0
    for _ in range(400):
        u = srv.publish("trades", trades(1000, total))
        total += u.rows
        frame_size = max(frame_size, len(srv.core.encode(u, srv.core.backplane.get("trades").schema,
                                                          "json")))
        peak = max(peak, _queued(srv))
        await asyncio.sleep(0)  # let the loop flush to the good client
        if any(h.close_reason_tag == "slow_consumer" for h in srv.core.clients):
            break
    assert peak <= limit + frame_size  # bounded: never more than the limit plus one frame
    # the client reads again: behind its backlog it finds the close frame with 4000
    frames = await asyncio.to_thread(slow.read_frames)
    await until(lambda: srv.metrics.disconnects["slow_consumer"] == 1, what="slow client dropped")
    close = [p for op, p in frames if op == 0x8]
    assert close and struct.unpack("!H", close[0][:2])[0] == CloseCode.SLOW_CONSUMER
    await sub.wait_async(rows=total, timeout=30)
    assert sub.df["seq"].tolist() == list(range(total))
    slow.close()
    good.close()
    await srv.aclose()


@async_test(timeout=120)
async def test_conflate_policy_drops_then_resyncs_with_gap_and_snapshot():
    limit = 128 * 1024
    srv = ls.serve(port=0, send_queue_bytes=limit, slow_consumer="conflate", retention_rows=500)
    srv.publish("trades", trades(10))
    slow = await asyncio.to_thread(StalledSocket, srv.port, "trades")
    await until(lambda: len(srv.core.subscribers.get("trades", ())) == 1, what="subscribed")
    total = 10
    for _ in range(300):
        u = srv.publish("trades", trades(1000, total))
        total += u.rows
        await asyncio.sleep(0)
        if srv.metrics.queue_drops > 3:
            break
    assert srv.metrics.queue_drops > 3
    assert srv.metrics.disconnects["slow_consumer"] == 0
    # the client reads again: once drained it gets a gap and a fresh snapshot
    frames = await asyncio.to_thread(slow.read_frames, 5.0)
    texts = [orjson.loads(p) for op, p in frames if op == 0x1]
    kinds = [m["type"] for m in texts]
    assert "gap" in kinds
    gap = texts[kinds.index("gap")]
    assert gap["reason"] == "slow_consumer"
    snap = texts[kinds.index("gap") + 1]
    assert snap["type"] == "snapshot" and snap["next"] == total
    assert snap["columns"]["seq"] == list(range(total - 500, total))
    slow.close()
    await srv.aclose()


@async_test()
async def test_client_that_never_answers_pings_is_disconnected():
    srv = ls.serve(port=0, ping_interval=0.1, ping_timeout=0.3)
    srv.publish("trades", trades(1))
    slow = await asyncio.to_thread(StalledSocket, srv.port, "trades")
    await until(lambda: srv.metrics.connections == 1, what="connected")
    await until(lambda: srv.metrics.connections == 0, what="ping timeout")
    slow.close()
    await srv.aclose()


@async_test()
async def test_shutdown_sends_going_away_1001():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(1))
    conn = ls.connect(srv.url, reconnect=False)
    sub = conn.subscribe("trades")
    await sub.wait_async(rows=1)
    await srv.aclose()
    await until(lambda: conn.state == "closed", what="client closed")
    assert "1001" in conn.stats.last_error
    assert srv.metrics.disconnects["shutdown"] == 1
