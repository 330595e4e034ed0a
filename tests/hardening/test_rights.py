"""Per-topic rights on a real server: signed tokens over WebSocket and HTTP, refresh and
close 4003 at expiry, who may create a topic, max_topics, rejected publishes that leave
nothing behind, and DELETE /topics/{name}."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from spine_util import RawClient, async_test, trades, until
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

import livestream as ls
from livestream.errors import LimitError
from livestream.protocol import dumps, loads, pack_binary
from livestream.server.auth import mint_token

SECRET = b"s" * 48


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "jwt.secret"
    path.write_bytes(SECRET + b"\n")
    return str(path)


def mint(**kw) -> str:
    kw.setdefault("ttl", 600)
    return mint_token(SECRET, **kw)


async def fetch(url: str, **kw):
    """An HTTP request; a POST body is JSON unless the caller says otherwise."""
    if kw.get("method") == "POST":
        kw["headers"] = {"Content-Type": "application/json", **(kw.get("headers") or {})}
    try:
        return await AsyncHTTPClient().fetch(HTTPRequest(url, **kw))
    except HTTPClientError as exc:
        return exc.response


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def topic_names(srv, token: str | None = None) -> list[str]:
    r = await fetch(srv.http_url + "/topics", headers=bearer(token) if token else {})
    assert r.code == 200, r.body
    return [t["name"] for t in loads(r.body)["topics"]]


async def recv_until_closed(c: RawClient, timeout: float = 20.0) -> list[dict]:
    """Everything the server sends until it closes the connection (fails after ``timeout``)."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the server did not close the connection; got {got}"
        msg = await c.recv(left)
        if msg is None:
            return got
        got.append(msg)


def rows_json(df: pd.DataFrame) -> bytes:
    return dumps({"rows": df.astype({"ts": str}).to_dict("records")})


# -- rejected publishes leave nothing behind --------------------------------------------------


@async_test()
async def test_rejected_publishes_create_no_topic_over_websocket_http_and_in_process():
    srv = ls.serve(port=0, max_rows_per_publish=5)
    c = await RawClient.open(srv.url)
    # a column pandas holds as Python objects: refused by the schema (today: the topic stays)
    await c.send({"type": "publish", "topic": "ws_mixed", "id": 1,
                  "columns": {"x": [1, "a"]}})
    assert (await c.recv_type("error"))["code"] == "schema_mismatch"
    nested = pa.table({"x": pa.array([[1, 2], [3]])})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, nested.schema) as w:
        w.write_table(nested)
    await c.send(pack_binary({"type": "publish", "topic": "ws_nested", "id": 2},
                             sink.getvalue().to_pybytes()))
    assert (await c.recv_type("error"))["id"] == 2
    await c.send({"type": "publish", "topic": "ws_big", "id": 3,
                  "columns": {"x": list(range(6))}})
    assert (await c.recv_type("error"))["code"] == "too_many_rows"
    c.close()
    url = srv.http_url + "/topics/"
    r = await fetch(url + "http_mixed", method="POST", body=dumps([{"x": 1}, {"x": "a"}]))
    assert r.code == 422
    r = await fetch(url + "http_broken", method="POST", body=b"{broken")
    assert r.code == 400
    r = await fetch(url + "http_big", method="POST", body=dumps([{"x": i} for i in range(6)]))
    assert r.code == 413
    with pytest.raises(ls.SchemaError):
        srv.publish("py_mixed", pd.DataFrame({"x": [1, "a"]}))
    assert await topic_names(srv) == []
    # and the name is free for the right batch
    srv.publish("ws_mixed", pd.DataFrame({"x": [1, 2]}))
    assert await topic_names(srv) == ["ws_mixed"]
    await srv.aclose()


# -- signed tokens over the WebSocket ---------------------------------------------------------


@async_test()
async def test_signed_tokens_scope_subscribe_and_publish_per_topic(secret_file):
    srv = ls.serve(port=0, jwt_secret_file=secret_file)
    srv.publish("prices.AAPL", trades(3))
    srv.publish("orders", trades(2))
    tok = mint(sub=["prices.*"], pub=["orders"])
    c = await RawClient.open(srv.url + "?token=" + tok)
    await c.send({"type": "subscribe", "topic": "prices.AAPL", "id": 1})
    assert (await c.recv_type("subscribed"))["id"] == 1
    await c.send({"type": "subscribe", "topic": "orders", "id": 2})
    err = await c.recv_type("error")
    assert (err["code"], err["id"], err["topic"]) == ("unauthorized", 2, "orders")
    await c.send({"type": "publish", "topic": "orders", "id": 3,
                  "rows": trades(1, start=2).astype({"ts": str}).to_dict("records")})
    assert (await c.recv_type("ack"))["id"] == 3
    await c.send({"type": "publish", "topic": "prices.AAPL", "id": 4,
                  "rows": trades(1, start=3).astype({"ts": str}).to_dict("records")})
    err = await c.recv_type("error")
    assert (err["code"], err["id"]) == ("unauthorized", 4)
    c.close()
    # no token: nothing; a token in the message itself: that message
    anon = await RawClient.open(srv.url)
    await anon.send({"type": "subscribe", "topic": "orders", "id": 1})
    assert (await anon.recv_type("error"))["code"] == "unauthorized"
    await anon.send({"type": "subscribe", "topic": "orders", "id": 2,
                     "token": mint(sub="orders")})
    assert (await anon.recv_type("subscribed"))["id"] == 2
    anon.close()
    await srv.aclose()


@async_test()
async def test_creating_a_topic_needs_admin_or_a_publish_right_naming_it(secret_file):
    srv = ls.serve(port=0, jwt_secret_file=secret_file)
    feed = mint(pub=["orders", "prices.*"])
    c = await RawClient.open(srv.url + "?token=" + feed)
    await c.send({"type": "publish", "topic": "orders", "id": 1, "columns": {"x": [1]}})
    assert (await c.recv_type("ack"))["id"] == 1  # allowed orders: creates orders
    await c.send({"type": "publish", "topic": "prices.NEW", "id": 2, "columns": {"x": [1.5]}})
    err = await c.recv_type("error")
    assert err["code"] == "unauthorized" and "admin" in err["message"]
    r = await fetch(srv.http_url + "/topics/prices.HTTP", method="POST",
                    body=dumps([{"x": 1.5}]), headers=bearer(feed))
    assert r.code == 401 and loads(r.body)["code"] == "unauthorized"
    assert await topic_names(srv, mint(sub="*")) == ["orders"]
    # an admin of prices.* defines the topic; then the wildcard publisher may write to it
    r = await fetch(srv.http_url + "/topics/prices.NEW", method="POST",
                    body=dumps([{"x": 1.0}]), headers=bearer(mint(admin="prices.*")))
    assert r.code == 200, r.body
    await c.send({"type": "publish", "topic": "prices.NEW", "id": 3, "columns": {"x": [2.5]}})
    assert (await c.recv_type("ack"))["offset"] == 1
    c.close()
    await srv.aclose()


@async_test()
async def test_http_endpoints_follow_the_grant(secret_file):
    srv = ls.serve(port=0, jwt_secret_file=secret_file)
    for name in ("prices.AAPL", "prices.MSFT", "orders"):
        srv.publish(name, trades(2))
    viewer = mint(sub=["prices.*"])
    assert await topic_names(srv, viewer) == ["prices.AAPL", "prices.MSFT"]
    assert (await fetch(srv.http_url + "/topics")).code == 401
    r = await fetch(srv.http_url + "/topics/orders", headers=bearer(viewer))
    assert r.code == 401
    r = await fetch(srv.http_url + "/topics/prices.AAPL?format=csv", headers=bearer(viewer))
    assert r.code == 200 and len(pd.read_csv(pd.io.common.BytesIO(r.body))) == 2
    r = await fetch(srv.http_url + "/topics/orders", method="POST", body=rows_json(trades(1)),
                    headers=bearer(viewer))
    assert r.code == 401
    r = await fetch(srv.http_url + "/topics/orders", method="POST",
                    body=rows_json(trades(1, start=2)), headers=bearer(mint(pub="orders")))
    assert r.code == 200 and loads(r.body)["offset"] == 2
    expired = mint_token(SECRET, sub="*", ttl=10, now=time.time() - 100)
    r = await fetch(srv.http_url + "/topics", headers=bearer(expired))
    assert r.code == 401 and "expired" in loads(r.body)["message"]
    await srv.aclose()


# -- refresh and 4003 -------------------------------------------------------------------------


@async_test()
async def test_token_expiry_closes_the_connection_with_4003(secret_file):
    srv = ls.serve(port=0, jwt_secret_file=secret_file)
    srv.publish("prices.AAPL", trades(2))
    c = await RawClient.open(srv.url + "?token=" + mint(sub="prices.*", ttl=2))
    await c.send({"type": "subscribe", "topic": "prices.AAPL", "id": 1})
    assert (await c.recv_type("subscribed"))["id"] == 1
    await recv_until_closed(c)
    assert c.ws.close_code == 4003 and "expired" in (c.ws.close_reason or "")
    await until(lambda: srv.metrics.disconnects["token_expired"] == 1, what="the metric")
    # a connection whose token has already expired is closed at once
    stale = mint_token(SECRET, sub="*", ttl=10, now=time.time() - 100)
    c2 = await RawClient.open(srv.url + "?token=" + stale)
    assert await recv_until_closed(c2) == []
    assert c2.ws.close_code == 4003
    # ... and so is one that sends an expired token in hello
    c3 = await RawClient.open(srv.url)
    await c3.send({"type": "hello", "v": 1, "token": stale})
    await recv_until_closed(c3)
    assert c3.ws.close_code == 4003
    await srv.aclose()


@async_test()
async def test_refresh_replaces_the_grant_and_keeps_the_connection(secret_file):
    srv = ls.serve(port=0, jwt_secret_file=secret_file)
    srv.publish("prices.AAPL", trades(2))
    srv.publish("orders", trades(2))
    first = mint(sub=["prices.*", "orders"], ttl=3)
    first_exp = srv.core.auth.verify(first).exp
    c = await RawClient.open(srv.url + "?token=" + first)
    for i, name in enumerate(("prices.AAPL", "orders")):
        await c.send({"type": "subscribe", "topic": name, "id": i})
        await c.recv_type("snapshot")
    second = mint(sub=["prices.*"], ttl=600)
    await c.send({"type": "refresh", "token": second, "id": 7})
    ok = await c.recv_type("refreshed")
    assert ok["id"] == 7 and ok["exp"] == srv.core.auth.verify(second).exp
    # the subscription the new token does not allow is dropped, with a reason
    err = await c.recv_type("error")
    assert (err["code"], err["topic"]) == ("unauthorized", "orders")
    gone = await c.recv_type("unsubscribed")
    assert (gone["topic"], gone["reason"]) == ("orders", "unauthorized")
    # past the first token's expiry the connection lives on, on the second token
    await until(lambda: time.time() > first_exp + 1, 10, "the first token's expiry")
    await c.send({"type": "ping", "id": 9})
    assert (await c.recv_type("pong"))["id"] == 9
    srv.publish("prices.AAPL", trades(1, start=2))
    assert (await c.recv_type("append"))["topic"] == "prices.AAPL"
    # a bad refresh is an error and changes nothing
    await c.send({"type": "refresh", "token": "garbage", "id": 10})
    err = await c.recv_type("error")
    assert (err["code"], err["id"]) == ("unauthorized", 10)
    await c.send({"type": "refresh", "id": 11})
    err = await c.recv_type("error")
    assert (err["code"], err["id"]) == ("bad_message", 11)
    srv.publish("prices.AAPL", trades(1, start=3))
    assert (await c.recv_type("append"))["offset"] == 3
    c.close()
    await srv.aclose()


@async_test()
async def test_a_subscription_made_with_its_own_token_ends_with_that_token(secret_file):
    srv = ls.serve(port=0, jwt_secret_file=secret_file)
    srv.publish("prices.AAPL", trades(2))
    srv.publish("orders", trades(2))
    c = await RawClient.open(srv.url + "?token=" + mint(sub="orders", ttl=600))
    await c.send({"type": "subscribe", "topic": "orders", "id": 1})
    await c.recv_type("snapshot")
    await c.send({"type": "subscribe", "topic": "prices.AAPL", "id": 2,
                  "token": mint(sub="prices.*", ttl=2)})
    await c.recv_type("snapshot")
    err = await c.recv_type("error", timeout=15)
    assert (err["code"], err["topic"]) == ("unauthorized", "prices.AAPL")
    assert (await c.recv_type("unsubscribed"))["reason"] == "token_expired"
    await c.send({"type": "ping", "id": 3})
    assert (await c.recv_type("pong"))["id"] == 3  # the connection itself lives on
    srv.publish("orders", trades(1, start=2))
    assert (await c.recv_type("append"))["topic"] == "orders"
    c.close()
    await srv.aclose()


# -- max_topics -------------------------------------------------------------------------------


@async_test()
async def test_max_topics_refuses_creation_and_creates_nothing():
    srv = ls.serve(port=0, max_topics=2)
    srv.publish("a", pd.DataFrame({"x": [1]}))
    srv.topic("b", key="k")
    c = await RawClient.open(srv.url)
    await c.send({"type": "hello", "v": 1})
    assert (await c.recv_type("welcome"))["limits"]["max_topics"] == 2
    await c.send({"type": "publish", "topic": "c", "id": 1, "columns": {"x": [1]}})
    err = await c.recv_type("error")
    assert (err["code"], err["id"]) == ("too_many_topics", 1) and "2" in err["message"]
    r = await fetch(srv.http_url + "/topics/d", method="POST", body=dumps([{"x": 1}]))
    assert r.code == 409 and loads(r.body)["code"] == "too_many_topics"
    with pytest.raises(LimitError):
        srv.topic("e")
    with pytest.raises(LimitError):
        srv.derive("f", "a", lambda w: w)
    await c.send({"type": "publish", "topic": "a", "id": 2, "columns": {"x": [2]}})
    assert (await c.recv_type("ack"))["offset"] == 1  # existing topics take rows
    assert await topic_names(srv) == ["a", "b"]
    r = await fetch(srv.http_url + "/topics/b", method="DELETE")
    assert r.code == 200
    await c.send({"type": "publish", "topic": "c", "id": 3, "columns": {"x": [1]}})
    assert (await c.recv_type("ack"))["id"] == 3
    c.close()
    await srv.aclose()


# -- DELETE /topics/{name} --------------------------------------------------------------------


@async_test()
async def test_a_squatted_topic_is_deleted_by_an_admin_and_recreated_by_its_publisher():
    srv = ls.serve(port=0, publish_token="pub", admin_token="adm")
    url = srv.http_url + "/topics/orders"
    watcher = await RawClient.open(srv.url)
    await watcher.send({"type": "subscribe", "topic": "orders", "id": 1})
    await watcher.recv_type("subscribed")
    # anyone with the publish token fixes the schema with junk...
    r = await fetch(url, method="POST", body=dumps([{"junk": "x"}]), headers=bearer("pub"))
    assert r.code == 200
    junk = await watcher.recv_type("snapshot")
    real = trades(3)
    r = await fetch(url, method="POST", body=rows_json(real), headers=bearer("pub"))
    assert r.code == 422  # ... and the real publisher is refused
    # deleting needs the admin right
    assert (await fetch(url, method="DELETE")).code == 401
    assert (await fetch(url, method="DELETE", headers=bearer("pub"))).code == 401
    r = await fetch(url, method="DELETE", headers=bearer("adm"))
    assert r.code == 200 and loads(r.body) == {"type": "deleted", "topic": "orders"}
    assert await watcher.recv_type("deleted") == {"type": "deleted", "topic": "orders"}
    assert (await fetch(url)).code == 404
    assert (await fetch(url, method="DELETE", headers=bearer("adm"))).code == 404
    assert await topic_names(srv) == []
    # the real publisher creates it afresh: a new epoch, offsets from 0; the waiting
    # subscriber is told of the gap and gets the new snapshot, never stale offsets
    r = await fetch(url, method="POST", body=rows_json(real), headers=bearer("pub"))
    assert r.code == 200 and loads(r.body)["offset"] == 0
    again = await watcher.recv_type("subscribed")
    assert again["exists"] and again["epoch"] != junk["epoch"]
    gap = await watcher.recv_type("gap")
    assert (gap["epoch"], gap["new_epoch"], gap["reason"]) == (junk["epoch"], again["epoch"],
                                                              "epoch")
    snap = await watcher.recv_type("snapshot")
    assert snap["offset"] == 0 and snap["next"] == 3 and "seq" in snap["columns"]
    watcher.close()
    await srv.aclose()


@async_test()
async def test_delete_needs_the_admin_right_of_a_signed_token(secret_file):
    srv = ls.serve(port=0, jwt_secret_file=secret_file)
    srv.publish("scratch.a", trades(1))
    srv.publish("orders", trades(1))
    tok = mint(admin="scratch.*")
    r = await fetch(srv.http_url + "/topics/orders", method="DELETE", headers=bearer(tok))
    assert r.code == 401 and "admin" in loads(r.body)["message"]
    r = await fetch(srv.http_url + "/topics/scratch.a", method="DELETE", headers=bearer(tok))
    assert r.code == 200
    assert await topic_names(srv, mint(sub="*")) == ["orders"]
    await srv.aclose()


@async_test()
async def test_without_auth_delete_works_from_loopback_only():
    srv = ls.serve(port=0)
    srv.publish("t", trades(1))
    srv.publish("u", trades(1))
    r = await fetch(srv.http_url + "/topics/t", method="DELETE",
                    headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.code == 401 and "loopback" in loads(r.body)["message"]
    r = await fetch(srv.http_url + "/topics/t", method="DELETE")
    assert r.code == 200
    assert await topic_names(srv) == ["u"]
    await srv.aclose()


@async_test()
async def test_deleting_a_source_or_a_derived_topic_keeps_derivations_safe():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(5))
    srv.derive("count", "trades", lambda w: pd.DataFrame({"n": [len(w)]}))
    await until(lambda: len(srv.snapshot("count")) == 1, what="the derived topic")
    watcher = await RawClient.open(srv.url)
    await watcher.send({"type": "subscribe", "topic": "count", "id": 1})
    await watcher.recv_type("snapshot")
    # the source goes: the derived topic keeps its last table
    r = await fetch(srv.http_url + "/topics/trades", method="DELETE")
    assert r.code == 200
    srv.publish("trades", trades(2))  # re-created: the derivation follows the new source
    await until(lambda: srv.snapshot("count")["n"].tolist() == [2], what="a recomputation")
    # the derived topic goes: its derivation stops, the name becomes an ordinary topic
    r = await fetch(srv.http_url + "/topics/count", method="DELETE")
    assert r.code == 200
    assert await watcher.recv_type("deleted") == {"type": "deleted", "topic": "count"}
    srv.publish("trades", trades(3, start=2))
    r = await fetch(srv.http_url + "/topics/count", method="POST", body=dumps([{"n": 99}]))
    assert r.code == 200, r.body
    await watcher.recv_type("snapshot")
    assert srv.core.derivations == {} and not srv.core._by_source.get("trades")
    srv.publish("trades", trades(1, start=5))
    assert srv.snapshot("count")["n"].tolist() == [99]
    assert srv.metrics.errors["internal"] == 0 and srv.metrics.errors["derive_failed"] == 0
    watcher.close()
    await srv.aclose()
