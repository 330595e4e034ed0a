"""JSON messages of wrong shapes and types get their documented client error, over
WebSocket and ``POST /topics/{name}``: never ``internal`` / HTTP 500.

Each case names the error code, and for ``schema_mismatch`` the column; publish
errors carry the message's ``id`` and ``topic``. Nothing of a refused publish is
applied.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from spine_util import RawClient, async_test
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

import livestream as ls
from livestream.protocol import frame_to_arrow, loads

F64 = [{"name": "x", "type": "float64"}]

# (case, publish message without type/id/topic, error code, column)
PUBLISH_CASES: list[tuple[str, dict, str, str | None]] = [
    ("non-numeric string into float64", {"schema": F64, "columns": {"x": [1.5, "abc"]}},
     "schema_mismatch", "x"),
    ("non-numeric string into Float64", {"schema": [{"name": "x", "type": "Float64"}],
                                         "columns": {"x": [None, "1,5"]}},
     "schema_mismatch", "x"),
    ("non-numeric string into float32 rows", {"schema": [{"name": "y", "type": "float32"}],
                                              "rows": [{"y": "Inf"}]},
     "schema_mismatch", "y"),
    ("schema a number", {"schema": 5, "columns": {"x": [1.0]}}, "bad_message", None),
    ("schema a string", {"schema": "float64", "columns": {"x": [1.0]}}, "bad_message", None),
    ("schema an object", {"schema": {"name": "x", "type": "float64"}, "columns": {"x": [1.0]}},
     "bad_message", None),
    ("schema field a number", {"schema": [5], "columns": {"x": [1.0]}}, "bad_message", None),
    ("schema field name a number", {"schema": [{"name": 5, "type": "float64"}],
                                    "columns": {"x": [1.0]}}, "bad_message", None),
    ("schema field without type", {"schema": [{"name": "x"}], "columns": {"x": [1.0]}},
     "bad_message", None),
    ("schema type unknown", {"schema": [{"name": "x", "type": "int60"}], "columns": {"x": [1]}},
     "bad_message", None),
    ("schema empty", {"schema": [], "columns": {}}, "bad_message", None),
    ("schema with a column twice", {"schema": F64 + F64, "columns": {"x": [1.0]}},
     "bad_message", None),
    ("unknown time zone", {"schema": [{"name": "t", "type": "datetime64[ns, Mars/Olympus]"}],
                           "columns": {"t": [0]}}, "bad_message", None),
    ("time zone that is a path", {"schema": [{"name": "t", "type": "datetime64[ms, ../../x]"}],
                                  "columns": {"t": [0]}}, "bad_message", None),
    ("categories a number", {"schema": [{"name": "c", "type": "category"}],
                             "columns": {"c": ["a"]}, "categories": 5}, "bad_message", None),
    ("categories an array", {"schema": [{"name": "c", "type": "category"}],
                             "columns": {"c": ["a"]}, "categories": ["a"]}, "bad_message", None),
    ("categories of a column not an array", {"schema": [{"name": "c", "type": "category"}],
                                             "columns": {"c": ["a"]}, "categories": {"c": 5}},
     "bad_message", None),
    ("categories not strings", {"schema": [{"name": "c", "type": "category"}],
                                "columns": {"c": ["a"]}, "categories": {"c": [1, 2]}},
     "bad_message", None),
    ("rows not objects", {"rows": [1, 2]}, "bad_message", None),
    ("columns an array", {"columns": [[1, 2]]}, "bad_message", None),
]


def deep(depth: int, kind: str = "list") -> str:
    """JSON text nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


async def error_of(client: RawClient, msg: Any) -> dict:
    await client.send(msg)
    reply = await client.recv()
    assert reply is not None, "the server closed the connection"
    return reply


@pytest.mark.parametrize("case", PUBLISH_CASES, ids=[c[0] for c in PUBLISH_CASES])
def test_bad_publish_gets_its_error_over_websocket(make_server, case) -> None:
    _, body, code, column = case
    srv = make_server()

    @async_test()
    async def run() -> None:
        c = await RawClient.open(srv.url)
        reply = await error_of(c, {"type": "publish", "topic": "t1", "id": 12, **body})
        assert (reply["type"], reply["code"], reply["id"], reply["topic"]) == (
            "error", code, 12, "t1"), reply
        assert reply.get("column") == column, reply
        # the connection still works, and nothing was applied
        await c.send({"type": "ping", "id": "p"})
        assert (await c.recv())["type"] == "pong"
        c.close()

    run()
    assert srv.metrics.errors["internal"] == 0
    assert srv.topics() == [] or all(t["next_offset"] == 0 for t in srv.topics())


async def post(url: str, body: Any, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        r = await AsyncHTTPClient().fetch(HTTPRequest(url, method="POST", body=data,
                                                      headers={"Content-Type": content_type}))
    except HTTPClientError as exc:
        r = exc.response
    return r.code, loads(r.body)


STATUS = {"bad_message": 400, "schema_mismatch": 422, "too_many_columns": 413}


@pytest.mark.parametrize("case", PUBLISH_CASES, ids=[c[0] for c in PUBLISH_CASES])
def test_bad_publish_gets_its_error_over_http(make_server, case) -> None:
    _, body, code, column = case
    srv = make_server()
    status, reply = async_test()(post)(srv.http_url + "/topics/t1", body)
    assert (status, reply["code"]) == (STATUS[code], code), reply
    assert reply.get("column") == column
    assert srv.metrics.errors["internal"] == 0


def test_string_into_an_existing_float_topic_names_the_column(make_server) -> None:
    srv = make_server()
    srv.publish("prices", pd.DataFrame({"sym": ["a"], "px": [1.0]}))

    @async_test()
    async def run() -> None:
        c = await RawClient.open(srv.url)
        reply = await error_of(c, {"type": "publish", "topic": "prices", "id": "q",
                                   "columns": {"sym": ["b"], "px": ["1.5x"]}})
        assert (reply["code"], reply["column"], reply["id"], reply["topic"]) == (
            "schema_mismatch", "px", "q", "prices")
        assert "px" in reply["message"]
        status, body = await post(srv.http_url + "/topics/prices", {"rows": [{"sym": "b",
                                                                               "px": "NaNa"}]})
        assert (status, body["code"], body["column"]) == (422, "schema_mismatch", "px")
        # the documented special strings still work
        await c.send({"type": "publish", "topic": "prices", "id": 2,
                      "columns": {"sym": ["b", "c", "d"], "px": ["NaN", "Infinity", "-Infinity"]}})
        assert (await c.recv())["type"] == "ack"
        c.close()

    run()
    px = srv.snapshot("prices")["px"].tolist()
    assert px[0] == 1.0 and np.isnan(px[1]) and px[2:] == [np.inf, -np.inf]


@pytest.mark.parametrize("t", [deep(300), deep(300, "dict"), deep(2000), '{"a": 1}', "[1, 2]"],
                         ids=["list-300", "dict-300", "list-2000", "object", "array"])
def test_ping_t_must_be_a_scalar(make_server, t: str) -> None:
    srv = make_server()

    @async_test()
    async def run() -> None:
        c = await RawClient.open(srv.url)
        reply = await error_of(c, '{"type": "ping", "id": "p1", "t": ' + t + "}")
        if t == deep(2000):  # beyond the JSON parser's depth limit
            assert reply["code"] == "bad_json"
        else:
            assert (reply["type"], reply["code"], reply["id"]) == ("error", "bad_message", "p1")
            assert "'t'" in reply["message"]
        for value in (1714557600123.5, "x", True, None):
            pong = await error_of(c, {"type": "ping", "id": 2, "t": value})
            assert pong["type"] == "pong" and pong.get("t") == value
        c.close()

    run()
    assert srv.metrics.errors["internal"] == 0


def wide_row(n: int) -> dict:
    return {f"c{i}": i for i in range(n)}


@pytest.mark.parametrize("form", ["rows", "columns", "schema", "arrow"])
def test_more_columns_than_max_columns_is_refused(make_server, form: str) -> None:
    """20,000 columns froze the loop for seconds; now ``too_many_columns`` (HTTP 413)."""
    srv = make_server()
    n = 20_000
    if form == "rows":
        body: Any = {"rows": [wide_row(n)]}
    elif form == "columns":
        body = {"columns": {k: [v] for k, v in wide_row(n).items()}}
    elif form == "schema":
        body = {"schema": [{"name": f"c{i}", "type": "int64"} for i in range(n)],
                "columns": {"c0": [1]}}
    else:
        body = frame_to_arrow(pd.DataFrame([wide_row(n)]))

    @async_test()
    async def run() -> None:
        c = await RawClient.open(srv.url)
        if form == "arrow":
            from livestream.protocol import pack_binary

            msg: Any = pack_binary({"type": "publish", "topic": "wide", "id": 3}, body)
            status, reply = await post(srv.http_url + "/topics/wide", body,
                                       "application/vnd.apache.arrow.stream")
        else:
            msg = {"type": "publish", "topic": "wide", "id": 3, **body}
            status, reply = await post(srv.http_url + "/topics/wide", body)
        assert (status, reply["code"]) == (413, "too_many_columns"), reply
        err = await error_of(c, msg)
        assert (err["code"], err["id"], err["topic"]) == ("too_many_columns", 3, "wide")
        assert "1000" in err["message"]
        c.close()

    run()
    assert srv.topics() == []


def test_max_columns_is_configurable_inclusive_and_announced(make_server) -> None:
    srv = make_server(max_columns=5)

    @async_test()
    async def run() -> None:
        c = await RawClient.open(srv.url)
        welcome = await error_of(c, {"type": "hello"})
        assert welcome["limits"]["max_columns"] == 5
        assert (await error_of(c, {"type": "publish", "topic": "w", "rows": [wide_row(5)]}))[
            "type"] == "ack"
        err = await error_of(c, {"type": "publish", "topic": "w2", "rows": [wide_row(6)]})
        assert err["code"] == "too_many_columns"
        c.close()

    run()
    with pytest.raises(ls.LimitError):
        srv.publish("w3", pd.DataFrame([wide_row(6)]))
    assert ls.ServerConfig().max_columns == 1000


def test_rows_times_columns_is_bounded_by_max_message_size(make_server) -> None:
    """Rows of empty objects, or bit-packed Arrow bools, would make a small frame decode
    to a huge table: a publish may hold at most max_message_size cells."""
    srv = make_server(max_message_size=64 * 1024)
    schema = [{"name": f"c{i}", "type": "float64"} for i in range(100)]
    empties = {"type": "publish", "topic": "cells", "id": 1, "schema": schema,
               "rows": [{}] * 15_000}
    bools = pa.table({"b": pa.array(np.ones(200_000, dtype=bool))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, bools.schema) as w:
        w.write_table(bools)
    body = sink.getvalue().to_pybytes()
    assert len(body) < 64 * 1024

    @async_test()
    async def run() -> None:
        c = await RawClient.open(srv.url)
        err = await error_of(c, json.dumps(empties))
        assert (err["code"], err["id"]) == ("too_many_rows", 1), err
        assert "cells" in err["message"]
        status, reply = await post(srv.http_url + "/topics/bits", body,
                                   "application/vnd.apache.arrow.stream")
        assert (status, reply["code"]) == (413, "too_many_rows"), reply
        c.close()

    run()
    assert srv.topics() == []


def test_livestream_serve_takes_max_columns(tmp_path) -> None:
    """``livestream serve --max-columns N`` sets the limit of a server process."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from testutil import stop_process, wait_for_output

    proc = subprocess.Popen(
        [sys.executable, "-m", "livestream.cli", "serve", "--port", "0", "--max-columns", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        port = int(wait_for_output(proc, r"ws://127\.0\.0\.1:(\d+)/ws").group(1))

        def post(topic: str, row: dict) -> int:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/topics/{topic}", method="POST",
                                         data=json.dumps([row]).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                return urllib.request.urlopen(req, timeout=30).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert post("two", {"a": 1, "b": 2}) == 200
        assert post("three", {"a": 1, "b": 2, "c": 3}) == 413
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_schema_that_differs_from_the_topics_names_the_column(make_server) -> None:
    srv = make_server()
    srv.publish("s", pd.DataFrame({"a": [1], "b": [1.5]}))

    @async_test()
    async def run() -> None:
        c = await RawClient.open(srv.url)
        for schema, column in (([{"name": "a", "type": "int64"}, {"name": "b", "type": "int64"}],
                                "b"),
                               ([{"name": "a", "type": "int64"}], "b")):
            err = await error_of(c, {"type": "publish", "topic": "s", "id": 1, "schema": schema,
                                     "columns": {"a": [1], "b": [2]}})
            assert (err["code"], err["column"], err["topic"]) == ("schema_mismatch", column, "s")
        c.close()

    run()
