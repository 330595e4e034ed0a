"""Malformed input on a live server: error frames or documented close codes, never a crash."""

from __future__ import annotations

import pytest
from spine_util import RawClient, async_test, trades, until

import livestream as ls
from livestream.protocol import CloseCode, pack_binary


@async_test()
async def test_each_kind_of_bad_message_gets_its_error_frame_and_others_keep_receiving():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(5))
    good = ls.connect(srv.url)
    sub = good.subscribe("trades")
    await sub.wait_async(rows=5)
    bad = await RawClient.open(srv.url)
    cases = [
        ("not json at all", "bad_json"),
        ("[1, 2, 3]", "bad_message"),
        ({"type": "subscribe", "topic": 5, "id": 1}, "bad_message"),
        ({"type": "launch_missiles"}, "unknown_type"),
        ({"type": "subscribe", "topic": "../etc/passwd"}, "bad_topic_name"),
        ({"type": "subscribe", "topic": "x" * 500}, "bad_topic_name"),
        ({"type": "unsubscribe", "topic": "never"}, "not_subscribed"),
        (b"\x00\x01garbage", "bad_frame"),
        (pack_binary({"type": "publish", "topic": "trades"}, b"not arrow"), "bad_frame"),
        (pack_binary({"type": "subscribe", "topic": "trades"}), "bad_frame"),
        ({"type": "publish", "topic": "trades", "columns": {"seq": [1]}}, "schema_mismatch"),
        ({"type": "publish", "topic": "trades"}, "bad_message"),
        ({"type": "hello", "encoding": "xml"}, "unsupported_encoding"),
    ]
    for msg, code in cases:
        await bad.send(msg)
        reply = await bad.recv_type("error")
        assert reply["code"] == code, (msg, reply)
        assert reply["message"]
    # a wrong-schema publish names the column
    await bad.send({"type": "publish", "topic": "trades", "id": 9,
                    "columns": {c: [1] for c in trades(1).columns} | {"symbol": [3]}})
    reply = await bad.recv_type("error")
    assert reply["code"] == "schema_mismatch" and reply["id"] == 9 and reply["column"] == "symbol"
    # the server still serves everybody
    srv.publish("trades", trades(5, 5))
    await sub.wait_async(rows=10)
    await bad.send({"type": "ping", "id": "p1"})
    assert (await bad.recv_type("pong"))["id"] == "p1"
    assert srv.metrics.errors["bad_json"] == 1
    good.close()
    bad.close()
    await srv.aclose()


@async_test()
async def test_oversized_frame_closes_with_1009_and_server_keeps_serving():
    srv = ls.serve(port=0, max_message_size=64 * 1024)
    big = await RawClient.open(srv.url)
    await big.send("x" * (200 * 1024))
    assert await big.recv() is None
    assert big.ws.close_code == CloseCode.MESSAGE_TOO_BIG
    other = await RawClient.open(srv.url)
    await other.send({"type": "ping", "id": 1})
    assert (await other.recv_type("pong"))["id"] == 1
    other.close()
    await srv.aclose()


@async_test()
async def test_unsupported_version_closes_with_4001():
    srv = ls.serve(port=0)
    c = await RawClient.open(srv.url)
    await c.send({"type": "hello", "v": 99})
    err = await c.recv_type("error")
    assert err["code"] == "unsupported_version"
    assert await c.recv() is None and c.ws.close_code == CloseCode.UNSUPPORTED_VERSION
    await srv.aclose()


@async_test()
async def test_too_many_errors_in_a_row_closes_with_4002():
    srv = ls.serve(port=0, max_errors=5)
    c = await RawClient.open(srv.url)
    for _ in range(5):
        await c.send("{")
    for _ in range(5):
        assert (await c.recv())["code"] == "bad_json"
    assert await c.recv() is None and c.ws.close_code == CloseCode.TOO_MANY_ERRORS
    await until(lambda: srv.metrics.disconnects["too_many_errors"] == 1, what="counted")
    await srv.aclose()


@async_test()
async def test_subscription_and_publish_limits():
    srv = ls.serve(port=0, max_subscriptions=2, max_rows_per_publish=10)
    c = await RawClient.open(srv.url)
    for name in ("a", "b"):
        await c.send({"type": "subscribe", "topic": name})
        await c.recv_type("subscribed")
    await c.send({"type": "subscribe", "topic": "c", "id": 3})
    err = await c.recv_type("error")
    assert err["code"] == "too_many_subscriptions" and err["id"] == 3
    await c.send({"type": "publish", "topic": "t", "rows": [{"x": i} for i in range(11)]})
    assert (await c.recv_type("error"))["code"] == "too_many_rows"
    with pytest.raises(ls.LimitError):
        srv.publish("t", trades(11))
    c.close()
    await srv.aclose()


@async_test()
async def test_publish_over_websocket_json_and_arrow():
    srv = ls.serve(port=0)
    conn = ls.connect(srv.url, encoding="json")
    await conn.wait_live()
    ack = await conn.publish("trades", trades(4))
    assert (ack["offset"], ack["next"]) == (0, 4)
    conn2 = ls.connect(srv.url, encoding="arrow")
    await conn2.wait_live()
    ack = await conn2.publish("trades", trades(3, 4))
    assert (ack["offset"], ack["next"]) == (4, 7)
    with pytest.raises(ls.RemoteError) as e:
        await conn2.publish("trades", trades(3).assign(price="x"))
    assert e.value.code == "schema_mismatch"
    assert srv.snapshot("trades")["seq"].tolist() == list(range(7))
    conn.close()
    conn2.close()
    await srv.aclose()


@async_test()
async def test_frames_just_under_the_limit_sent_back_to_back_are_all_served():
    # two frames each just under max_message_size, pipelined: the server's read buffer
    # must hold a whole frame plus what the socket already read of the next one
    limit = 256 * 1024
    srv = ls.serve(port=0, max_message_size=limit)
    client = await RawClient.open(srv.url)
    pad = "x" * (limit - 200)
    for i in range(3):
        await client.send({"type": "ping", "id": f"p{i}", "t": pad})
    for i in range(3):
        assert (await client.recv_type("pong"))["id"] == f"p{i}"
    client.close()
    await srv.aclose()
