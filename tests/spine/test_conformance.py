"""docs/protocol.md is a contract: its examples, spoken to a real server by a plain WebSocket
library (``websockets``) and plain HTTP (``urllib``), with JSON written by hand and no
livestream client code, so that the document and the server cannot drift apart."""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from typing import Any

import pandas as pd
import pytest
from testutil import raw_websocket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

HEX = set("0123456789abcdef")


def ws(srv: Any, query: str = "") -> ClientConnection:
    return connect(f"ws://127.0.0.1:{srv.port}/ws{query}", open_timeout=10, max_size=None)


def send(conn: ClientConnection, msg: dict) -> None:
    conn.send(json.dumps(msg))


def recv(conn: ClientConnection) -> dict:
    data = conn.recv(timeout=10)
    assert isinstance(data, str), "control and JSON data messages are text frames (§3)"
    return json.loads(data)


def http(srv: Any, method: str, path: str, body: Any = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={} if body is None else {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def publish_http(srv: Any, topic: str, body: Any) -> dict:
    status, _, out = http(srv, "POST", f"/topics/{topic}", body)
    assert status == 200, out
    return json.loads(out)


# -- §4.2 hello / welcome -------------------------------------------------------------------


def test_welcome_fields_and_limits_as_documented(make_server) -> None:
    srv = make_server(max_errors=7, ping_timeout=9.0, ping_interval=11.0)
    with ws(srv) as c:
        send(c, {"type": "hello", "v": 1, "encoding": "json", "client": "conformance/1", "id": 1})
        w = recv(c)
    assert w["type"] == "welcome" and w["v"] == 1 and "id" not in w
    assert w["server"].startswith("livestream/")
    assert len(w["session"]) == 12 and set(w["session"]) <= HEX
    assert w["encoding"] == "json" and w["heartbeat"] == 11.0 and w["exp"] is None
    assert w["limits"] == {
        "max_message_size": 16 * 1024 * 1024, "max_subscriptions": 256,
        "max_rows_per_publish": 1_000_000, "max_columns": 1000,
        "send_queue_bytes": 8 * 1024 * 1024, "snapshot_slice_bytes": 1024 * 1024,
        "send_timeout": 20.0, "slow_consumer": "close", "retention_rows": 100_000,
        "max_topics": 10_000, "max_errors": 7, "ping_timeout": 9.0}


def test_hello_without_encoding_keeps_the_connections_encoding(server) -> None:
    with ws(server, "?encoding=arrow") as c:
        send(c, {"type": "hello", "v": 1})
        assert recv(c)["encoding"] == "arrow"
        send(c, {"type": "hello", "v": 1, "encoding": "json"})
        assert recv(c)["encoding"] == "json"
        send(c, {"type": "hello"})
        assert recv(c)["encoding"] == "json"
        send(c, {"type": "hello", "encoding": "csv", "id": "e"})
        err = recv(c)
        assert (err["code"], err["id"]) == ("unsupported_encoding", "e")
        send(c, {"type": "hello"})
        assert recv(c)["encoding"] == "json"


def test_unsupported_version_errors_then_closes_4001(server) -> None:
    with ws(server) as c:
        send(c, {"type": "hello", "v": 2})
        assert recv(c)["code"] == "unsupported_version"
        with pytest.raises(ConnectionClosed):
            c.recv(timeout=10)
        assert c.close_code == 4001


# -- §4.3-4.5, §5.1-5.3: subscribe, data messages, resume, gap ------------------------------


def test_fresh_subscribe_snapshot_append_and_offsets(server) -> None:
    with ws(server) as c:
        send(c, {"type": "subscribe", "topic": "trades", "id": 7})
        s = recv(c)
        assert s == {"type": "subscribed", "topic": "trades", "id": 7, "exists": False,
                     "mode": None, "key": [], "schema": None, "epoch": None, "resumed": False}
        schema = [{"name": "ts", "type": "datetime64[ms]"}, {"name": "price", "type": "float64"}]
        ack = publish_http(server, "trades", {
            "schema": schema, "columns": {"ts": [1714557600000, 1714557601000],
                                          "price": [101.5, 101.75]}})
        assert ack == {"type": "ack", "topic": "trades", "offset": 0, "next": 2, "rows": 2}
        s2 = recv(c)
        assert s2["type"] == "subscribed" and "id" not in s2 and s2["exists"] is True
        assert (s2["mode"], s2["key"], s2["schema"]) == ("append", [], schema)
        epoch = s2["epoch"]
        assert len(epoch) == 16 and set(epoch) <= HEX
        assert (s2["offset"], s2["next"], s2["resumed"]) == (0, 2, False)
        snap = recv(c)
        assert snap["type"] == "snapshot" and snap["schema"] == schema
        assert (snap["epoch"], snap["offset"], snap["next"], snap["rows"]) == (epoch, 0, 2, 2)
        assert snap["columns"] == {"ts": [1714557600000, 1714557601000], "price": [101.5, 101.75]}
        assert isinstance(snap["ts"], float | int)
        publish_http(server, "trades", {"columns": {"ts": ["2024-05-01T10:00:02"],
                                                    "price": ["Infinity"]}})
        a = recv(c)
        assert a["type"] == "append" and "schema" not in a
        assert (a["offset"], a["next"], a["rows"]) == (2, 3, 1)
        assert a["columns"] == {"ts": [1714557602000], "price": ["Infinity"]}


def test_resume_within_retention_and_gap_beyond_it(make_server) -> None:
    srv = make_server(retention_rows=4)
    publish_http(srv, "t", {"columns": {"x": [0, 1, 2]}})
    with ws(srv) as c:
        send(c, {"type": "subscribe", "topic": "t", "id": 1})
        s = recv(c)
        snap = recv(c)
        epoch, held = s["epoch"], snap["next"]
        assert held == 3
    publish_http(srv, "t", {"columns": {"x": [3, 4]}})
    with ws(srv) as c:  # §5.2: exactly the missed rows
        send(c, {"type": "subscribe", "topic": "t", "id": 2, "epoch": epoch, "offset": held})
        s = recv(c)
        assert (s["id"], s["epoch"], s["offset"], s["next"], s["resumed"]) == (2, epoch, 1, 5,
                                                                              True)
        a = recv(c)
        assert (a["type"], a["offset"], a["next"], a["columns"]) == ("append", 3, 5,
                                                                     {"x": [3, 4]})
        send(c, {"type": "subscribe", "topic": "t", "id": 3, "epoch": epoch, "offset": 5})
        s = recv(c)
        assert s["resumed"] is True
        send(c, {"type": "ping", "id": "after"})  # up to date: no data message in between
        assert recv(c)["type"] == "pong"
    publish_http(srv, "t", {"columns": {"x": [5, 6, 7, 8]}})
    with ws(srv) as c:  # §5.3: beyond retention
        send(c, {"type": "subscribe", "topic": "t", "epoch": epoch, "offset": 3})
        s = recv(c)
        assert (s["offset"], s["next"], s["resumed"]) == (5, 9, False)
        g = recv(c)
        assert g == {"type": "gap", "topic": "t", "epoch": epoch, "offset": 3,
                     "new_epoch": epoch, "until": 5, "reason": "retention"}
        snap = recv(c)
        assert (snap["type"], snap["offset"], snap["next"], snap["rows"]) == ("snapshot", 5, 9, 4)
        send(c, {"type": "subscribe", "topic": "t", "epoch": "0" * 16, "offset": 3})
        recv(c)
        g = recv(c)
        assert (g["reason"], g["new_epoch"], g["until"]) == ("epoch", epoch, 5)
        assert recv(c)["type"] == "snapshot"


def test_keyed_topic_dedup_order_and_offsets(server) -> None:
    server.topic("kv", key="k")
    with ws(server) as c:
        send(c, {"type": "subscribe", "topic": "kv", "id": 1})
        s = recv(c)
        assert (s["exists"], s["mode"], s["key"], s["schema"]) == (True, "keyed", ["k"], None)
        ack = publish_http(server, "kv", {"columns": {"k": ["b", "a", "b", "c"],
                                                      "v": [1, 2, 3, 4]}})
        # §1: deduplicated by key keeping each key's last row, in the order of those rows
        assert (ack["offset"], ack["next"], ack["rows"]) == (0, 3, 3)
        s2 = recv(c)
        assert (s2["offset"], s2["next"]) == (0, 3)  # offset: the oldest retained upsert
        snap = recv(c)
        assert (snap["offset"], snap["next"], snap["rows"]) == (3, 3, 3)  # keyed: offset = next
        assert snap["columns"] == {"k": ["a", "b", "c"], "v": [2, 3, 4]}
        publish_http(server, "kv", {"columns": {"k": ["c", "a"], "v": [5, 6]}})
        u = recv(c)
        assert (u["type"], u["offset"], u["next"], u["columns"]) == (
            "upsert", 3, 5, {"k": ["c", "a"], "v": [5, 6]})


def test_replace_topic_offsets(server) -> None:
    """§4.3: a replace topic's ``subscribed.offset`` is its ``next`` (no per-row history);
    its snapshot has ``offset = next - rows``."""
    server.publish("src", pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    server.derive("d", "src", lambda df: df.tail(2))
    with ws(server) as c:
        send(c, {"type": "subscribe", "topic": "d", "id": 1})
        s = recv(c)
        while not s["exists"] or s["schema"] is None:  # the derivation may not have run yet
            s = recv(c)
        assert s["mode"] == "replace" and s["offset"] == s["next"]
        snap = recv(c)
        assert snap["type"] == "snapshot" and snap["offset"] == snap["next"] - snap["rows"]
        assert snap["next"] == s["next"] and snap["columns"] == {"x": [2.0, 3.0]}
        send(c, {"type": "publish", "topic": "d", "id": 2, "columns": {"x": [1.0]}})
        err = recv(c)
        assert (err["code"], err["id"], err["topic"]) == ("derived_topic", 2, "d")


def test_zero_row_publish_is_acked_and_sends_an_empty_append(server) -> None:
    publish_http(server, "z", {"columns": {"x": [1]}})
    with ws(server) as c:
        send(c, {"type": "subscribe", "topic": "z"})
        recv(c)
        recv(c)
        send(c, {"type": "publish", "topic": "z", "id": 5, "columns": {"x": []}})
        a = recv(c)
        assert (a["type"], a["offset"], a["next"], a["rows"], a["columns"]) == (
            "append", 1, 1, 0, {"x": []})
        assert recv(c) == {"type": "ack", "topic": "z", "offset": 1, "next": 1, "rows": 0,
                           "id": 5}
    server.topic("kz", key="k")
    publish_http(server, "kz", {"columns": {"k": ["a"], "v": [1]}})
    with ws(server) as c:
        send(c, {"type": "subscribe", "topic": "kz"})
        recv(c)
        recv(c)
        send(c, {"type": "publish", "topic": "kz", "columns": {"k": [], "v": []}})
        u = recv(c)
        assert (u["type"], u["offset"], u["next"], u["rows"]) == ("upsert", 1, 1, 0)
        assert recv(c)["type"] == "ack"


# -- §4.7 publish example, §4.8 ping, §4.9 errors ---------------------------------------------


def test_publish_example_of_the_doc_is_acked(server) -> None:
    with ws(server) as c:
        send(c, {"type": "publish", "topic": "trades", "id": 12, "token": "pub",
                 "schema": [{"name": "ts", "type": "datetime64[ms]"},
                            {"name": "price", "type": "float64"}],
                 "columns": {"ts": [1714557600000, 1714557601000],
                             "price": [101.5, 101.75]}})
        assert recv(c) == {"type": "ack", "topic": "trades", "offset": 0, "next": 2, "rows": 2,
                           "id": 12}
        send(c, {"type": "publish", "topic": "trades", "id": 13,  # naive ISO strings: §6.2
                 "columns": {"ts": ["2024-05-01T10:00:02", None], "price": [1, 2]}})
        assert recv(c)["rows"] == 2
        # §6.2: ISO strings only if every value of the column is a string or null
        send(c, {"type": "publish", "topic": "trades", "id": 14,
                 "columns": {"ts": [1714557600000, "2024-05-01T10:00:01"], "price": [1, 2]}})
        err = recv(c)
        assert (err["code"], err["id"], err["column"]) == ("schema_mismatch", 14, "ts")


def test_ping_pong_echoes_id_and_t(server) -> None:
    with ws(server) as c:
        send(c, {"type": "ping", "id": 4, "t": 1714557600123.5})
        p = recv(c)
        assert p["type"] == "pong" and (p["id"], p["t"]) == (4, 1714557600123.5)
        assert isinstance(p["server_t"], float | int)


@pytest.mark.parametrize(("msg", "code"), [
    ("not json", "bad_json"),
    ([1, 2], "bad_message"),
    ({"type": "ping", "id": True}, "bad_message"),
    ({"type": "ping", "id": None}, "bad_message"),
    ({"type": "ping", "id": 1.5}, "bad_message"),
    ({"type": "ping", "id": [1]}, "bad_message"),
    ({"type": "ping", "t": [1]}, "bad_message"),
    ({"type": "nope"}, "unknown_type"),
    ({"type": "subscribe", "topic": ".bad"}, "bad_topic_name"),
    ({"type": "subscribe", "topic": "t", "offset": 3}, "bad_resume"),
    ({"type": "subscribe", "topic": "t", "epoch": "e", "offset": -1}, "bad_message"),
    ({"type": "unsubscribe", "topic": "t"}, "not_subscribed"),
    ({"type": "publish", "topic": "t"}, "bad_message"),
    ({"type": "refresh", "token": ""}, "bad_message"),
])
def test_bad_messages_get_the_documented_error(server, msg: Any, code: str) -> None:
    with ws(server) as c:
        c.send(msg if isinstance(msg, str) else json.dumps(msg))
        err = recv(c)
        assert err["type"] == "error" and err["code"] == code and isinstance(err["message"], str)
        send(c, {"type": "ping", "id": "still-open"})
        assert recv(c)["id"] == "still-open"


def test_id_of_a_failed_message_is_echoed_in_its_error(server) -> None:
    with ws(server) as c:
        send(c, {"type": "unsubscribe", "topic": "t", "id": "u1"})
        assert recv(c)["id"] == "u1"


def test_max_errors_in_a_row_closes_4002(make_server) -> None:
    srv = make_server(max_errors=3)
    with ws(srv) as c:
        for _ in range(3):
            send(c, {"type": "nope"})
        assert [recv(c)["code"] for _ in range(3)] == ["unknown_type"] * 3
        with pytest.raises(ConnectionClosed):
            c.recv(timeout=10)
        assert c.close_code == 4002


# -- §7.2: the keepalive ----------------------------------------------------------------------


def test_ping_timeout_closes_with_1011(make_server) -> None:
    """A client that never answers WebSocket pings is closed with 1011 (not 1000, which is the
    client's own normal closure)."""
    srv = make_server(ping_interval=0.2, ping_timeout=0.2)
    sock, buf = raw_websocket(srv.port)
    frames = []
    with sock:
        while True:  # read (and never answer) until the server closes the TCP connection
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):
                n = buf[1] & 0x7F
                frames.append((buf[0] & 0x0F, buf[2:2 + n]))
                buf = buf[2 + n:]
    closes = [p for op, p in frames if op == 0x8]
    assert [op for op, _ in frames].count(0x9) >= 1, frames
    assert len(closes) == 1, frames
    assert struct.unpack("!H", closes[0][:2])[0] == 1011
    assert closes[0][2:] == b"ping timeout"


# -- §9 HTTP endpoints ------------------------------------------------------------------------


def test_http_endpoints_status_codes(make_server) -> None:
    srv = make_server(subscribe_token="s", publish_token="p")  # §9: /health, /metrics need none
    status, ctype, body = http(srv, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, ctype, body = http(srv, "GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain") and b"livestream_connections" in body
    assert http(srv, "GET", "/topics")[0] == 401
    for method in ("GET", "POST", "DELETE"):
        status, _, body = http(srv, method, "/topics/.bad?token=s",
                               {"columns": {"x": [1]}} if method == "POST" else None)
        assert (status, json.loads(body)["code"]) == (400, "bad_topic_name"), method
    status, _, body = http(srv, "GET", "/topics/missing?token=s")
    assert (status, json.loads(body)["code"]) == (404, "unknown_topic")
    assert http(srv, "GET", "/nowhere")[0] == 404
    status, _, body = http(srv, "POST", "/topics/t?token=p", {"columns": {"x": [1.5, None]}})
    assert status == 200
    status, ctype, body = http(srv, "GET", "/topics/t?token=s")  # format defaults to json
    snap = json.loads(body)
    assert (snap["type"], snap["columns"]) == ("snapshot", {"x": [1.5, None]})
    status, _, body = http(srv, "GET", "/topics/t?token=s&format=xml")
    assert (status, json.loads(body)["code"]) == (400, "bad_message")
    status, _, body = http(srv, "POST", "/topics/t?token=p", {"columns": {"x": ["a"]}})
    assert (status, json.loads(body)["code"]) == (422, "schema_mismatch")


def test_csv_value_formats(server) -> None:
    publish_http(server, "c", {
        "schema": [{"name": "ts", "type": "datetime64[ms, UTC]"}, {"name": "f", "type": "float64"},
                   {"name": "nv", "type": "datetime64[ms]"}, {"name": "g", "type": "float64"},
                   {"name": "n", "type": "Int64"}, {"name": "b", "type": "bool"},
                   {"name": "s", "type": "string"}],
        "columns": {"ts": [1714557600000, None], "f": [1.5, None], "nv": [1714557600500, None],
                    "g": ["Infinity", "-Infinity"], "n": [3, None],
                    "b": [True, False], "s": ["a,b", None]}})
    status, ctype, body = http(server, "GET", "/topics/c?format=csv")
    assert status == 200 and ctype.startswith("text/csv")
    assert body.decode().splitlines() == [
        "ts,f,nv,g,n,b,s",
        '2024-05-01 10:00:00+00:00,1.5,2024-05-01 10:00:00.500,inf,3,True,"a,b"',
        ",,,-inf,,False,",
    ]


def test_schemaless_json_publish_infers_types_as_documented(server) -> None:
    """§4.7 / §11.3: a JSON publish creating a topic without ``schema``."""
    cases = {"i": ([1, 2], "int64"), "f": ([1, 2.5], "float64"), "inull": ([1, None], "float64"),
             "b": ([True, False], "bool"), "s": (["a", None], "string"),
             "inf": (["Infinity", "-Infinity"], "string"),
             "iso": (["2024-05-01T10:00:00Z"], "string")}
    for name, (values, typ) in cases.items():
        publish_http(server, name, {"columns": {"x": values}})
        _, _, body = http(server, "GET", f"/topics/{name}")
        assert json.loads(body)["schema"] == [{"name": "x", "type": typ}], name
    for name, values in {"bnull": [True, None], "mixed": [1, "a"]}.items():
        status, _, body = http(server, "POST", f"/topics/{name}", {"columns": {"x": values}})
        assert (status, json.loads(body)["code"]) == (422, "schema_mismatch"), name
        assert http(server, "GET", f"/topics/{name}")[0] == 404  # nothing was created
