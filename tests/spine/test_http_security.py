"""HTTP endpoints, tokens, the origin allowlist and TLS, on a real server."""

from __future__ import annotations

import io
import ssl

import pandas as pd
from spine_util import RawClient, async_test, trades
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

import livestream as ls
from livestream.protocol import arrow_to_frame, frame_to_arrow, loads

JSON = {"Content-Type": "application/json"}


async def fetch(url: str, **kw):
    client = AsyncHTTPClient()
    try:
        return await client.fetch(HTTPRequest(url, **kw))
    except HTTPClientError as exc:
        return exc.response


@async_test()
async def test_topics_snapshot_formats_health_and_metrics():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(20))
    srv.topic("quotes", key="symbol")
    r = await fetch(srv.http_url + "/health")
    assert r.code == 200 and loads(r.body)["status"] == "ok"
    r = await fetch(srv.http_url + "/topics")
    info = {t["name"]: t for t in loads(r.body)["topics"]}
    assert info["trades"]["rows"] == 20 and info["trades"]["next_offset"] == 20
    assert [f["name"] for f in info["trades"]["schema"]] == list(trades(1).columns)
    assert info["quotes"]["mode"] == "keyed" and info["quotes"]["key"] == ["symbol"]
    r = await fetch(srv.http_url + "/topics/trades?format=json")
    msg = loads(r.body)
    assert msg["type"] == "snapshot" and msg["columns"]["seq"] == list(range(20))
    r = await fetch(srv.http_url + "/topics/trades?format=arrow")
    assert r.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    pd.testing.assert_frame_equal(arrow_to_frame(r.body), srv.snapshot("trades"))
    r = await fetch(srv.http_url + "/topics/trades?format=csv")
    assert pd.read_csv(io.BytesIO(r.body))["seq"].tolist() == list(range(20))
    r = await fetch(srv.http_url + "/topics/nope")
    assert r.code == 404 and loads(r.body)["code"] == "unknown_topic"
    r = await fetch(srv.http_url + "/metrics")
    text = r.body.decode()
    assert "# TYPE livestream_connections gauge" in text
    assert "livestream_rows_published_total 20" in text
    assert "livestream_disconnects_total" in text and "livestream_queue_drops_total" in text
    await srv.aclose()


@async_test()
async def test_post_publishes_json_rows_columns_and_arrow():
    srv = ls.serve(port=0)
    url = srv.http_url + "/topics/chat"
    rows = [{"room": "a", "user": "u1", "n": 1}, {"room": "b", "user": "u2", "n": 2}]
    r = await fetch(url, method="POST", body=ls.protocol.dumps(rows), headers=JSON)
    assert r.code == 200 and loads(r.body)["next"] == 2
    body = {"columns": {"room": ["c"], "user": ["u3"], "n": [3]}}
    r = await fetch(url, method="POST", body=ls.protocol.dumps(body), headers=JSON)
    assert loads(r.body)["offset"] == 2
    df = pd.DataFrame({"room": ["d"], "user": ["u4"], "n": [4]})
    r = await fetch(url, method="POST", body=frame_to_arrow(df),
                    headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert loads(r.body)["next"] == 4
    r = await fetch(url, method="POST", body=ls.protocol.dumps([{"room": "e", "user": 5, "n": 5}]),
                    headers=JSON)
    err = loads(r.body)
    assert r.code == 422 and err["code"] == "schema_mismatch" and err["column"] == "user"
    r = await fetch(url, method="POST", body=b"{broken", headers=JSON)
    assert r.code == 400 and loads(r.body)["code"] == "bad_json"
    assert srv.snapshot("chat")["n"].tolist() == [1, 2, 3, 4]
    await srv.aclose()


@async_test()
async def test_tokens_guard_subscribe_and_publish():
    srv = ls.serve(port=0, subscribe_token="sub-secret", publish_token="pub-secret")
    srv.publish("trades", trades(3))
    c = await RawClient.open(srv.url)
    await c.send({"type": "subscribe", "topic": "trades", "id": 1})
    assert (await c.recv_type("error"))["code"] == "unauthorized"
    await c.send({"type": "subscribe", "topic": "trades", "id": 2, "token": "sub-secret"})
    assert (await c.recv_type("subscribed"))["id"] == 2
    await c.send({"type": "publish", "topic": "trades", "token": "sub-secret",
                  "columns": {k: [1] for k in ("x",)}})
    assert (await c.recv_type("error"))["code"] == "unauthorized"
    c.close()
    # the Python client sends its token as a Bearer header and in hello
    conn = ls.connect(srv.url, token="sub-secret")
    sub = conn.subscribe("trades")
    await sub.wait_async(rows=3)
    conn.close()
    # HTTP
    r = await fetch(srv.http_url + "/topics/trades")
    assert r.code == 401
    r = await fetch(srv.http_url + "/topics/trades?token=sub-secret")
    assert r.code == 200
    body = ls.protocol.dumps({"rows": trades(1).astype({"ts": str}).to_dict("records")})
    r = await fetch(srv.http_url + "/topics/trades", method="POST", body=body, headers=JSON)
    assert r.code == 401
    r = await fetch(srv.http_url + "/topics/trades", method="POST", body=body,
                    headers={"Authorization": "Bearer pub-secret", **JSON})
    assert r.code == 200, r.body
    await srv.aclose()


@async_test()
async def test_origin_allowlist():
    srv = ls.serve(port=0, allowed_origins=["https://desk.example.com"])

    async def try_origin(origin: str) -> int:
        try:
            ws = await websocket_connect(HTTPRequest(srv.url, headers={"Origin": origin}))
            ws.close()
            return 101
        except HTTPClientError as exc:
            return exc.code

    assert await try_origin("https://desk.example.com") == 101
    assert await try_origin(f"http://localhost:{srv.port}") == 101
    assert await try_origin("http://127.0.0.1:9999") == 101
    assert await try_origin("https://evil.example.net") == 403
    await srv.aclose()
    open_srv = ls.serve(port=0, allowed_origins=["*"])
    ws = await websocket_connect(HTTPRequest(open_srv.url, headers={"Origin": "https://any.net"}))
    ws.close()
    await open_srv.aclose()


def test_tls_wss_and_https(tls_files):
    import asyncio

    async def main() -> None:
        srv = ls.serve(port=0, certfile=str(tls_files / "cert.pem"),
                       keyfile=str(tls_files / "key.pem"))
        assert srv.url.startswith("wss://") and srv.http_url.startswith("https://")
        srv.publish("trades", trades(4))
        conn = ls.connect(srv.url, ca=str(tls_files / "ca.pem"))
        sub = conn.subscribe("trades")
        await sub.wait_async(rows=4)
        conn.close()
        # without the CA the certificate is refused
        refused = ls.connect(srv.url, reconnect=False)
        await asyncio.wait_for(_closed(refused), 10)
        assert "CERTIFICATE_VERIFY_FAILED" in (refused.stats.last_error or "")
        ctx = ssl.create_default_context(cafile=str(tls_files / "ca.pem"))
        r = await fetch(srv.http_url + "/health", ssl_options=ctx)
        assert r.code == 200
        await srv.aclose()

    async def _closed(conn: ls.Connection) -> None:
        while conn.state != "closed":
            await asyncio.sleep(0.01)

    asyncio.run(main())
