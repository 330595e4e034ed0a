"""Appends held for a client whose socket is busy go out merged into one frame (one Arrow
stream of several record batches), in order, with nothing lost; other frames keep their
place; keyed upserts and JSON frames are never merged (docs/protocol.md §3.3). What a
client has not taken waits in the server's queue, not in the kernel (kernel_unsent_bytes)."""

from __future__ import annotations

import asyncio
import socket
import sys

import orjson
import pyarrow as pa
import pytest
from spine_util import StalledSocket, async_test, trades, until

import livestream as ls
from livestream.protocol import unpack_binary


def _messages(frames: list[tuple[int, bytes]]) -> list[dict]:
    """The data messages of raw frames: headers, with the Arrow table as ``_table``."""
    out = []
    for op, payload in frames:
        if op == 0x2:
            header, body = unpack_binary(payload)
            header["_table"] = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
            out.append(header)
        elif op == 0x1:
            out.append(orjson.loads(payload))
    return out


async def _stalled(srv: ls.Server, topic: str, encoding: str = "arrow") -> StalledSocket:
    slow = await asyncio.to_thread(StalledSocket, srv.port, topic, encoding=encoding)
    await until(lambda: any(h.topics.get(topic) == "live" for h in srv.core.clients),
                what="the stalled client live")
    return slow


def _held(srv: ls.Server) -> int:
    """Appends held for the server's clients now (waiting for a busy socket)."""
    return sum(len(run.frames) for h in srv.core.clients for run in h.held)


def _check_contiguous(appends: list[dict], first: int, last: int) -> None:
    """Every row from ``first`` to ``last`` once, in order, offsets agreeing with rows."""
    seqs: list[int] = []
    at = first
    for m in appends:
        t = m["_table"]
        assert (m["offset"], m["rows"], m["next"]) == (at, t.num_rows, at + t.num_rows)
        seqs += t.column("seq").to_pylist()
        at = m["next"]
    assert seqs == list(range(first, last))


@async_test(timeout=120)
async def test_appends_held_for_a_busy_socket_arrive_merged_in_order_with_nothing_lost():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(10))
    slow = await _stalled(srv, "trades")
    total, published = 10, 0
    while _held(srv) < 50 and published < 5000:
        u = srv.publish("trades", trades(100, total))
        total, published = total + u.rows, published + 1
        await asyncio.sleep(0)
    assert _held(srv) >= 50  # the socket filled; appends wait
    frames = await asyncio.to_thread(slow.read_frames, 5.0)
    assert srv.metrics.appends_merged >= 49
    appends = [m for m in _messages(frames) if m.get("type") == "append"]
    assert len(appends) < published  # fewer messages than batches ...
    assert max(m["_table"].num_rows for m in appends) > 100
    _check_contiguous(appends, 10, total)  # ... and every row, once, in order
    assert all(len(orjson.dumps({k: v for k, v in m.items() if k != "_table"})) < 300
               and set(m) == {"type", "topic", "epoch", "offset", "next", "rows", "ts",
                              "_table"} for m in appends)
    slow.close()
    await srv.aclose()


@async_test(timeout=120)
async def test_a_reply_sent_while_appends_are_held_comes_after_them():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(10))
    srv.publish("other", trades(3))
    slow = await _stalled(srv, "trades")
    total = 10
    while _held(srv) < 5:
        u = srv.publish("trades", trades(100, total))
        total += u.rows
        await asyncio.sleep(0)
    before = total
    await asyncio.to_thread(slow.send_text, orjson.dumps({"type": "subscribe", "topic": "other"}))
    await until(lambda: any("other" in h.topics for h in srv.core.clients), what="subscribed")
    for _ in range(20):
        u = srv.publish("trades", trades(100, total))
        total += u.rows
        await asyncio.sleep(0)
    frames = await asyncio.to_thread(slow.read_frames, 5.0)
    msgs = _messages(frames)
    at = next(i for i, m in enumerate(msgs)
              if m.get("type") == "subscribed" and m["topic"] == "other")
    trades_msgs = [m for m in msgs if m.get("type") == "append" and m["topic"] == "trades"]
    _check_contiguous(trades_msgs, 10, total)
    # rows published before the subscribe arrive before its reply, later rows after it
    assert max(m["next"] for m in msgs[:at] if m.get("topic") == "trades") == before
    assert all(m["offset"] >= before for m in msgs[at:]
               if m.get("type") == "append" and m["topic"] == "trades")
    slow.close()
    await srv.aclose()


@async_test(timeout=120)
async def test_keyed_upserts_and_json_frames_are_never_merged():
    srv = ls.serve(port=0, send_queue_bytes=64 * 1024 * 1024)
    srv.topic("book", key="seq")
    srv.publish("book", trades(5))
    srv.publish("trades", trades(10))
    keyed = await _stalled(srv, "book")
    text = await _stalled(srv, "trades", encoding="json")
    published = 0
    for i in range(600):
        srv.publish("book", trades(200, 10 + i * 200))
        srv.publish("trades", trades(200, 10 + i * 200))
        published += 1
        await asyncio.sleep(0)
    assert all(h.queue_now() > 0 for h in srv.core.clients)  # both were backed up
    book = [m for m in _messages(await asyncio.to_thread(keyed.read_frames, 5.0))
            if m.get("type") == "upsert"]
    rows = [m for m in _messages(await asyncio.to_thread(text.read_frames, 5.0))
            if m.get("type") == "append"]
    assert len(book) == published and len(rows) == published
    assert srv.metrics.appends_merged == 0
    keyed.close()
    text.close()
    await srv.aclose()


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_the_python_client_applies_merged_appends(tls, tls_files):
    options = ({"certfile": str(tls_files / "cert.pem"), "keyfile": str(tls_files / "key.pem")}
               if tls else {})
    client = {"ca": str(tls_files / "ca.pem")} if tls else {}
    _client_applies_merged_appends(options, client)


@async_test(timeout=120)
async def _client_applies_merged_appends(options: dict, client: dict) -> None:
    # the client shares this loop: publishing without yielding fills its socket, and the
    # appends held meanwhile reach it merged once it reads again
    srv = ls.serve(port=0, send_queue_bytes=128 * 1024 * 1024, **options)
    srv.publish("trades", trades(10))
    conn = ls.connect(srv.url, encoding="arrow", **client)
    sub = conn.subscribe("trades", window=None)
    await sub.wait_async(rows=10)
    total = 10
    for _ in range(300):
        u = srv.publish("trades", trades(1000, total))
        total += u.rows
    assert _held(srv) > 1
    await sub.wait_async(rows=total, timeout=60)
    assert srv.metrics.appends_merged > 0
    assert sub.df["seq"].tolist() == list(range(total))
    assert sub.stats.messages < 300
    conn.close()
    await srv.aclose()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_NOTSENT_LOWAT is Linux's")
@async_test(timeout=60)
async def test_what_a_client_has_not_taken_waits_in_the_servers_queue_not_the_kernels():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(10))
    slow = await _stalled(srv, "trades")
    (h,) = srv.core.clients
    assert h.out_stream.socket.getsockopt(socket.IPPROTO_TCP, _NOTSENT_LOWAT) == 64 * 1024
    published, total = 0, 10
    while h.queue_now() == 0 and published < 8 * 1024 * 1024:
        u = srv.publish("trades", trades(100, total))
        total += u.rows
        published += len(srv.core.encode(u, srv.core.backplane.get("trades").schema, "arrow"))
        await asyncio.sleep(0)
    # the kernel took its 64 KiB and what the client's small window holds; the rest is
    # in the server's queue, where send_queue_bytes sees it (not in a 4 MiB kernel buffer)
    assert h.queue_now() > 0 and published < 1024 * 1024
    slow.close()
    await srv.aclose()

    off = ls.serve(port=0, kernel_unsent_bytes=0)
    off.publish("trades", trades(10))
    other = await _stalled(off, "trades")
    (h,) = off.core.clients
    assert h.out_stream.socket.getsockopt(socket.IPPROTO_TCP, _NOTSENT_LOWAT) != 64 * 1024
    other.close()
    await off.aclose()


_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
