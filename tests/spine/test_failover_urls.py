"""``ls.connect([url1, url2, ...])``: the client tries the URLs in turn, with the same backoff.

These use independent in-memory servers (each its own epoch), so moving to another
server is seen as a new epoch; tests/cluster/ checks resume without a gap across the
nodes of a Redis cluster.
"""

from __future__ import annotations

import socket

import pytest
from spine_util import async_test, trades, until

import livestream as ls


def dead_url() -> str:
    """A ws:// URL on a loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


@async_test()
async def test_first_url_refused_so_the_second_is_used():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(10))
    dead = dead_url()
    conn = ls.connect([dead, srv.url], backoff=(0.01, 0.05))
    sub = conn.subscribe("trades")
    await sub.wait_async(rows=10)
    assert conn.url == srv.url and conn.stats.url == srv.url
    assert conn.urls == (dead, srv.url) and conn.stats.urls == (dead, srv.url)
    assert "ConnectionRefused" in (conn.stats.last_error or "")
    assert "(1 of 2 URLs)" in repr(conn)
    assert sub.df["seq"].tolist() == list(range(10))
    conn.close()
    await srv.aclose()


@async_test()
async def test_lost_server_moves_to_the_next_url_and_resubscribes():
    a, b = ls.serve(port=0), ls.serve(port=0)
    a.publish("trades", trades(10))
    b.publish("trades", trades(5, 100))
    conn = ls.connect([a.url, b.url], backoff=(0.01, 0.05))
    sub = conn.subscribe("trades")
    gaps: list[dict] = []
    sub.on_gap(lambda s, g: gaps.append(g))
    await sub.wait_async(rows=10)
    assert conn.url == a.url
    await a.aclose()
    # b is an unrelated server (its own epoch): the subscription gets a gap, then b's rows
    await until(lambda: conn.url == b.url and conn.state == "live" and len(sub) == 5,
                what="moved to b")
    assert [g["reason"] for g in gaps] == ["epoch"]
    assert sub.df["seq"].tolist() == list(range(100, 105))
    b.publish("trades", trades(3, 105))
    await until(lambda: len(sub) == 8, what="live on b")
    assert conn.stats.reconnects == 1
    conn.close()
    await b.aclose()


@async_test()
async def test_after_the_last_url_it_goes_back_to_the_first():
    a = ls.serve(port=0)
    port = a.port
    a.publish("trades", trades(4))
    dead = dead_url()
    conn = ls.connect([a.url, dead], backoff=(0.01, 0.05))
    sub = conn.subscribe("trades")
    await sub.wait_async(rows=4)
    await a.aclose()
    await until(lambda: conn.url == dead and conn.stats.last_error
                and "ConnectionRefused" in conn.stats.last_error, what="tried the dead URL")
    a2 = ls.serve(port=port)
    a2.publish("trades", trades(6, 50))
    await until(lambda: conn.url == a2.url and conn.state == "live" and len(sub) == 6,
                timeout=20, what="back on the first URL")
    conn.close()
    await a2.aclose()


@async_test()
async def test_without_reconnect_each_url_is_tried_once():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(3))
    conn = ls.connect([dead_url(), srv.url], reconnect=False)
    sub = conn.subscribe("trades")
    await sub.wait_async(rows=3)
    assert conn.url == srv.url
    conn.close()
    await srv.aclose()
    lone = ls.connect([dead_url(), dead_url()], reconnect=False)
    await until(lambda: lone.state == "closed", what="gave up after both URLs")
    assert lone.url == lone.urls[1] and lone.stats.connects == 0


@pytest.mark.parametrize("urls, message", [
    ([], "at least one"),
    (["http://127.0.0.1:1/ws"], "ws:// or wss://"),
    (["ws://127.0.0.1:1/ws", "ws://127.0.0.1:1/ws"], "twice"),
])
def test_bad_url_lists_are_refused(urls, message):
    with pytest.raises(ValueError, match=message):
        ls.connect(urls)


@async_test()
async def test_a_view_spec_keeps_every_url_so_dashboard_sessions_fail_over_too():
    from livestream.views.spec import ViewSpec

    srv = ls.serve(port=0)
    srv.publish("trades", trades(3))
    other = dead_url()
    conn = ls.connect([srv.url, other], backoff=(0.01, 0.05))
    sub = conn.subscribe("trades")
    await sub.wait_async(rows=3)
    spec = ViewSpec.of(sub, "table")
    assert spec.url == srv.url and spec.urls == (srv.url, other)
    single = ls.connect(srv.url)
    assert ViewSpec.of(single.subscribe("trades"), "table").urls == ()
    conn.close()
    single.close()
    await srv.aclose()
