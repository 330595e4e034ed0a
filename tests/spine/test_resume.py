"""Resume after abrupt disconnects: exactly the missed rows, or a gap and a fresh snapshot."""

from __future__ import annotations

import asyncio

import pytest
from spine_util import async_test, cut, trades, until

import livestream as ls


@pytest.mark.parametrize("encoding", ["arrow", "json"])
@async_test(timeout=120)
async def test_fifty_abrupt_cuts_while_publishing_lose_and_duplicate_nothing(encoding):
    srv = ls.serve(port=0, retention_rows=100_000)
    conn = ls.connect(srv.url, encoding=encoding, backoff=(0.005, 0.05))
    sub = conn.subscribe("trades", window=None)
    seen: list[int] = []
    sub.on_update(lambda s, frame, kind: seen.extend(frame["seq"].tolist()))
    total = 0
    stop = asyncio.Event()

    async def publisher() -> None:
        nonlocal total
        while not stop.is_set():
            srv.publish("trades", trades(7, total))
            total += 7
            await asyncio.sleep(0.001)  # pacing the publisher, not synchronisation

    task = asyncio.ensure_future(publisher())
    cuts = 0
    while cuts < 50:
        await until(lambda: conn.state == "live" and sub.offset is not None
                    and sub.offset > 0 and conn._ws is not None, what="live again")
        before = conn.stats.connects
        if cut(conn):
            cuts += 1
            await until(lambda b=before: conn.stats.connects > b, what="reconnect")
    stop.set()
    await task
    topic = srv.core.backplane.get("trades")
    await until(lambda: sub.offset == topic.next_offset == total, timeout=20, what="caught up")
    assert sub.df["seq"].tolist() == list(range(total))
    assert seen == list(range(total))  # every row delivered once, in order, across all cuts
    assert sub.stats.gaps == 0
    assert conn.stats.reconnects >= 50
    conn.close()
    await srv.aclose()


@async_test()
async def test_resume_beyond_retention_gives_gap_then_snapshot():
    srv = ls.serve(port=0, retention_rows=100)
    srv.publish("trades", trades(50))
    conn = ls.connect(srv.url, backoff=(0.01, 0.05))
    sub = conn.subscribe("trades", window=1000)
    gaps: list[dict] = []
    sub.on_gap(lambda s, g: gaps.append(g))
    await sub.wait_async(rows=50)
    assert cut(conn)
    srv.publish("trades", trades(500, 50))  # while the client is away: more than retained
    await until(lambda: sub.offset == 550, what="resynced")
    assert len(gaps) == 1 and gaps[0]["reason"] == "retention"
    assert gaps[0]["offset"] == 50 and gaps[0]["until"] == 450
    assert sub.df["seq"].tolist() == list(range(450, 550))  # the fresh snapshot
    assert sub.stats.gaps == 1
    conn.close()
    await srv.aclose()


@async_test()
async def test_server_restart_changes_epoch_and_client_gets_a_gap():
    srv = ls.serve(port=0)
    port = srv.port
    srv.publish("trades", trades(20))
    conn = ls.connect(srv.url, backoff=(0.01, 0.05))
    sub = conn.subscribe("trades")
    await sub.wait_async(rows=20)
    old_epoch = sub.epoch
    await srv.aclose()
    await until(lambda: conn.state == "reconnecting", what="client noticed")
    srv2 = ls.serve(port=port)
    srv2.publish("trades", trades(5, 1000))
    await until(lambda: sub.epoch != old_epoch and len(sub) == 5, what="new epoch")
    assert sub.gaps[-1]["reason"] == "epoch"
    assert sub.df["seq"].tolist() == list(range(1000, 1005))
    conn.close()
    await srv2.aclose()


@async_test()
async def test_pause_unsubscribes_and_resume_catches_up_without_loss():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(10))
    conn = ls.connect(srv.url)
    sub = conn.subscribe("trades")
    await sub.wait_async(rows=10)
    sub.pause()
    await until(lambda: not srv.core.subscribers.get("trades"), what="unsubscribed")
    srv.publish("trades", trades(10, 10))
    assert len(sub) == 10
    sub.resume()
    await sub.wait_async(rows=20)
    assert sub.df["seq"].tolist() == list(range(20)) and sub.stats.gaps == 0
    conn.close()
    await srv.aclose()
