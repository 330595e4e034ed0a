"""Hostile web pages against a server on loopback: DNS rebinding (the Host allowlist),
cross-site publishes (CSRF), tokens in logs, and proxy headers from untrusted peers.

Every test runs a real server (``make_server``) and sends raw requests with the headers a
browser (or an attacker's page) would send: ``tornado.httpclient`` lets a test set ``Host``,
``Origin`` and ``Sec-Fetch-Site`` itself.
"""

from __future__ import annotations

import http.client
import logging
import re
import socket
from typing import Any

import pandas as pd
import pytest
from testutil import poll
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import websocket_connect

import livestream as ls
from livestream.protocol import dumps, frame_to_arrow, loads

JSON = {"Content-Type": "application/json"}
ARROW = {"Content-Type": "application/vnd.apache.arrow.stream"}
ROWS = dumps([{"room": "a", "n": 1}])
#: what a browser's ``<form enctype="multipart/form-data">`` sends
FORM = (b'--x\r\nContent-Disposition: form-data; name="rows"\r\n\r\n' + ROWS
        + b"\r\n--x--\r\n")
#: content types a page on another site can POST without a CORS preflight, with a body
SIMPLE_POSTS = (("text/plain", ROWS), ("application/x-www-form-urlencoded", ROWS),
                ("multipart/form-data; boundary=x", FORM))


async def fetch(url: str, **kw: Any) -> HTTPResponse:
    """One HTTP request; an error status is returned, not raised."""
    try:
        return await AsyncHTTPClient().fetch(HTTPRequest(url, **kw))
    except HTTPClientError as exc:
        assert exc.response is not None, exc
        return exc.response


async def handshake(url: str, headers: dict[str, str] | None = None) -> int:
    """The status of a WebSocket handshake: 101 when upgraded, else the HTTP status."""
    try:
        ws = await websocket_connect(HTTPRequest(url, headers=headers or {}))
    except HTTPClientError as exc:
        return exc.code
    ws.close()
    return 101


def error_code(r: HTTPResponse) -> str:
    body = loads(r.body)
    assert body["type"] == "error", body
    return body["code"]


# -- DNS rebinding: the Host allowlist --------------------------------------------------------


def test_rebinding_page_cannot_open_a_websocket(make_server, run_async) -> None:
    """attacker.example resolved to 127.0.0.1: its page sends a matching Host and Origin."""
    srv = make_server()
    srv.publish("chat", pd.DataFrame({"room": ["a"], "n": [1]}))
    evil = f"attacker.example:{srv.port}"

    async def main() -> None:
        for extra in ({}, {"Sec-Fetch-Site": "same-origin"}):
            status = await handshake(srv.url, {"Host": evil, "Origin": f"http://{evil}", **extra})
            assert status == 403
        # and the same request with a loopback Host is accepted
        assert await handshake(srv.url, {"Host": f"127.0.0.1:{srv.port}",
                                         "Origin": f"http://127.0.0.1:{srv.port}"}) == 101

    run_async(main())
    # the accepted one is counted once its open() ran (just after the 101 went out)
    poll(lambda: srv.metrics.connections_total == 1, 10, "the accepted connection")
    assert srv.metrics.errors["host_not_allowed"] == 2
    assert srv.metrics.connections_total == 1


def test_rebinding_page_cannot_read_or_publish_over_http(make_server, run_async) -> None:
    srv = make_server()
    srv.publish("chat", pd.DataFrame({"room": ["a"], "n": [1]}))
    evil = {"Host": f"attacker.example:{srv.port}", "Origin": f"http://attacker.example:{srv.port}"}

    async def main() -> None:
        for path in ("/health", "/metrics", "/topics", "/topics/chat", "/nope"):
            r = await fetch(srv.http_url + path, headers=evil)
            assert r.code == 403, path
            assert error_code(r) == "host_not_allowed"
            assert "attacker.example" in loads(r.body)["message"]
        r = await fetch(srv.http_url + "/topics/chat", method="POST", body=ROWS,
                        headers={**evil, **JSON, "Sec-Fetch-Site": "same-origin"})
        assert r.code == 403 and error_code(r) == "host_not_allowed"

    run_async(main())
    assert srv.snapshot("chat")["n"].tolist() == [1]


@pytest.mark.parametrize("host", [
    "127.0.0.1:{port}", "localhost:{port}", "LocalHost.:{port}", "[::1]:{port}", "[::1]",
    "127.0.0.2:{port}", "localhost",
])
def test_loopback_hosts_are_accepted(make_server, run_async, host: str) -> None:
    srv = make_server()

    async def main() -> None:
        h = host.format(port=srv.port)
        r = await fetch(srv.http_url + "/health", headers={"Host": h})
        assert r.code == 200, (h, r.body)
        assert await handshake(srv.url, {"Host": h}) == 101

    run_async(main())


@pytest.mark.parametrize("host", ["[::1", "[attacker.example]:80", "attacker.example:80:80",
                                  "127.0.0.1.attacker.example", "localhost.attacker.example",
                                  "2130706433", "attacker.example"])
def test_malformed_and_lookalike_hosts_are_refused(make_server, run_async, host: str) -> None:
    srv = make_server()

    async def main() -> None:
        r = await fetch(srv.http_url + "/health", headers={"Host": host})
        assert r.code in (400, 403), (host, r.code)
        assert await handshake(srv.url, {"Host": host}) in (400, 403)

    run_async(main())


def test_allow_host_adds_names_suffixes_and_star(make_server, run_async) -> None:
    srv = make_server(allowed_hosts=["desk.example.com", ".corp.example", "Trading-PC:8765"])
    star = make_server(allowed_hosts=["*"])

    async def status(s: Any, host: str) -> int:
        r = await fetch(s.http_url + "/health", headers={"Host": host})
        return r.code

    async def main() -> None:
        assert await status(srv, f"desk.example.com:{srv.port}") == 200
        assert await status(srv, "DESK.example.com") == 200
        assert await status(srv, "trading-pc") == 200  # the port of an entry is ignored
        assert await status(srv, "corp.example") == 200
        assert await status(srv, "a.b.corp.example:443") == 200
        assert await status(srv, "evilcorp.example") == 403
        assert await status(srv, "desk.example.com.attacker.example") == 403
        assert await handshake(srv.url, {"Host": "desk.example.com",
                                         "Origin": "http://desk.example.com"}) == 101
        assert await status(star, "anything.example") == 200
        assert await handshake(star.url, {"Host": "anything.example"}) == 101

    run_async(main())


def test_bad_allowed_hosts_and_trusted_proxies_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"allowed_hosts.*http://desk\.example"):
        ls.ServerConfig(allowed_hosts=["http://desk.example"])
    with pytest.raises(ValueError, match="allowed_hosts"):
        ls.ServerConfig(allowed_hosts=[""])
    with pytest.raises(ValueError, match=r"trusted_proxies.*proxy\.example"):
        ls.ServerConfig(trusted_proxies=["proxy.example"])
    cfg = ls.ServerConfig(allowed_hosts=["Desk.Example.com:443"],
                          trusted_proxies=["10.0.0.0/8", "::1", "192.168.1.7"])
    assert cfg.allowed_hosts == ["Desk.Example.com:443"]  # kept as given; compared normalised


def test_all_interfaces_bind_accepts_this_machine_and_ip_addresses(make_server,
                                                                   run_async) -> None:
    srv = make_server(host="0.0.0.0")
    names = {socket.gethostname(), socket.getfqdn()}

    async def main() -> None:
        base = f"http://127.0.0.1:{srv.port}"
        for name in names:
            r = await fetch(base + "/health", headers={"Host": f"{name}:{srv.port}"})
            assert r.code == 200, name
        for ip in ("192.0.2.10", "[2001:db8::1]"):  # an address the client used (NAT, docker)
            r = await fetch(base + "/health", headers={"Host": f"{ip}:{srv.port}"})
            assert r.code == 200, ip
        r = await fetch(base + "/health", headers={"Host": f"attacker.example:{srv.port}"})
        assert r.code == 403
        assert await handshake(f"ws://127.0.0.1:{srv.port}/ws",
                               {"Host": "attacker.example", "Origin": "http://attacker.example"}
                               ) == 403

    run_async(main())


def test_clients_that_name_the_server_by_its_bound_name_keep_working(make_server,
                                                                     run_async) -> None:
    """The Python client, the page of a static dashboard and ``livestream publish`` all use
    the server's own URL; ``localhost`` binds too."""
    srv = make_server(host="localhost")
    assert srv.url.startswith("ws://localhost:")

    async def main() -> None:
        conn = ls.connect(srv.url)
        sub = conn.subscribe("t")
        srv.publish("t", pd.DataFrame({"x": [3]}))
        await sub.wait_async(rows=1)
        conn.close()

    run_async(main())


# -- CSRF: cross-site publishes ---------------------------------------------------------------


def test_cross_site_form_and_text_posts_are_refused(make_server, run_async) -> None:
    """A page on another site can POST text/plain or a form without a CORS preflight."""
    srv = make_server()
    url = srv.http_url + "/topics/chat"
    foreign = {"Origin": "https://attacker.example"}

    async def main() -> None:
        for ctype, body in SIMPLE_POSTS:
            r = await fetch(url, method="POST", body=body,
                            headers={**foreign, "Content-Type": ctype})
            assert r.code == 403 and error_code(r) == "origin_not_allowed", ctype
            r = await fetch(url, method="POST", body=body,
                            headers={**foreign, "Content-Type": ctype,
                                     "Sec-Fetch-Site": "cross-site"})
            assert r.code == 403, ctype

    run_async(main())
    assert "chat" not in [t["name"] for t in srv.topics()]


def test_cross_site_json_post_is_refused_unless_the_origin_is_allowed(make_server,
                                                                       run_async) -> None:
    srv = make_server(allowed_origins=["https://desk.example.com"])
    url = srv.http_url + "/topics/chat"

    async def post(headers: dict[str, str]) -> HTTPResponse:
        return await fetch(url, method="POST", body=ROWS, headers={**JSON, **headers})

    async def main() -> None:
        r = await post({"Origin": "https://attacker.example"})
        assert r.code == 403 and error_code(r) == "origin_not_allowed"
        assert "attacker.example" in loads(r.body)["message"]
        r = await post({"Sec-Fetch-Site": "cross-site"})  # a browser hint without an Origin
        assert r.code == 403 and error_code(r) == "origin_not_allowed"
        r = await post({"Origin": "null"})  # a file:// page or a sandboxed iframe
        assert r.code == 403
        # the WebSocket origin rule: the allowlist, same host, localhost; no Origin (not a browser)
        for ok in ({"Origin": "https://desk.example.com", "Sec-Fetch-Site": "cross-site"},
                   {"Origin": f"http://127.0.0.1:{srv.port}", "Sec-Fetch-Site": "same-origin"},
                   {"Origin": "http://localhost:8888", "Sec-Fetch-Site": "same-site"},
                   {"Sec-Fetch-Site": "none"},
                   {}):
            r = await post(ok)
            assert r.code == 200, (ok, r.body)

    run_async(main())
    assert len(srv.snapshot("chat")) == 5


def test_post_accepts_only_json_and_arrow_bodies(make_server, run_async) -> None:
    srv = make_server()
    url = srv.http_url + "/topics/chat"

    def check_415(code: int, raw: bytes) -> None:
        assert code == 415, (code, raw)
        body = loads(raw)
        assert body["code"] == "unsupported_media_type"
        assert "application/json" in body["message"]
        assert ARROW["Content-Type"] in body["message"]

    # no Content-Type at all (what a page's fetch() with an ArrayBuffer body sends); tornado's
    # client would add a form type, so this one goes through http.client
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.putrequest("POST", "/topics/chat", skip_accept_encoding=True)
    conn.putheader("Content-Length", str(len(ROWS)))
    conn.endheaders(ROWS)
    resp = conn.getresponse()
    check_415(resp.status, resp.read())
    conn.close()

    async def main() -> None:
        for ctype, body in (*SIMPLE_POSTS, ("application/octet-stream", ROWS)):
            r = await fetch(url, method="POST", body=body, headers={"Content-Type": ctype})
            check_415(r.code, r.body)
        r = await fetch(url, method="POST", body=ROWS,
                        headers={"Content-Type": "Application/JSON; charset=utf-8"})
        assert r.code == 200, r.body
        r = await fetch(url, method="POST", body=frame_to_arrow(
            pd.DataFrame({"room": ["b"], "n": [2]})), headers=ARROW)
        assert r.code == 200, r.body

    run_async(main())
    assert srv.snapshot("chat")["n"].tolist() == [1, 2]


# -- tokens stay out of logs ------------------------------------------------------------------


SECRET = "S3CRET-tok-4242"


def test_tokens_never_reach_a_log_record(make_server, run_async, caplog) -> None:
    """``?token=`` and ``Authorization`` values, across 101/200/401/403/404 and bad frames."""
    caplog.set_level(logging.DEBUG)
    srv = make_server(subscribe_token=SECRET, publish_token=SECRET, allowed_origins=[])
    srv.publish("chat", pd.DataFrame({"room": ["a"], "n": [1]}))
    wrong = SECRET + "-wrong"
    base = srv.http_url

    async def main() -> None:
        ok = {"Host": f"127.0.0.1:{srv.port}"}
        # WebSocket: accepted, refused origin, refused host, and with a bearer header
        assert await handshake(f"{srv.url}?token={SECRET}", ok) == 101
        assert await handshake(f"{srv.url}?token={SECRET}&encoding=json",
                               {"Origin": "https://attacker.example"}) == 403
        assert await handshake(f"{srv.url}?token={SECRET}", {"Host": "attacker.example"}) == 403
        assert await handshake(srv.url, {"Authorization": f"Bearer {SECRET}"}) == 101
        ws = await websocket_connect(f"{srv.url}?access_token={SECRET}")
        await ws.write_message(dumps({"type": "hello", "token": SECRET, "v": 99}).decode())
        assert await ws.read_message() is not None
        ws.close()
        # HTTP: 200, 401, 403, 404, 405, 415 with the token in the query or a header
        for path, code in ((f"/topics?token={SECRET}", 200), (f"/topics?token={wrong}", 401),
                           (f"/topics/chat?format=csv&token={SECRET}", 200),
                           (f"/topics/nope?token={SECRET}", 404), (f"/nope?token={SECRET}", 404)):
            r = await fetch(base + path)
            assert r.code == code, path
        r = await fetch(base + f"/topics?token={SECRET}", headers={"Host": "attacker.example"})
        assert r.code == 403
        r = await fetch(base + f"/topics?token={SECRET}", method="DELETE")
        assert r.code == 405
        for headers, code in (({"Authorization": f"Bearer {wrong}", **JSON}, 401),
                              ({"Authorization": f"Bearer {SECRET}", **JSON}, 200),
                              ({"Authorization": f"Bearer {SECRET}", "Content-Type": "text/plain"},
                               415),
                              ({"Authorization": f"Bearer {SECRET}", **JSON,
                                "Origin": "https://attacker.example"}, 403)):
            r = await fetch(base + f"/topics/chat?token={SECRET}", method="POST", body=ROWS,
                            headers=headers)
            assert r.code == code, (headers, r.body)
        # the client logs the URL of a connection that fails
        conn = ls.connect(f"ws://127.0.0.1:1/ws?token={SECRET}", reconnect=False)
        while conn.state != "closed":
            await _tick()
        conn.close()

    run_async(main())
    def access_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "tornado.access"]

    access = poll(lambda: len(access_lines()) >= 16 and access_lines(), 10,
                  "an access-log line per request (5 WebSocket, 11 HTTP)")
    assert any(r.getMessage().startswith("401 ") for r in access)
    assert any(r.getMessage().startswith("101 ") for r in access)
    records = [r for r in caplog.records if r.name.startswith(("tornado", "livestream"))]
    assert any("token=" in r.getMessage() for r in records)  # the name stays, the value goes
    for r in caplog.records:
        text = r.getMessage() + (r.exc_text or "")
        assert SECRET not in text, (r.name, text)
    assert SECRET not in caplog.text


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.01)


def test_scrub_removes_token_values_and_authorization() -> None:
    from livestream.redact import scrub

    cases = {
        f"GET /ws?token={SECRET}&encoding=arrow (127.0.0.1)": "GET /ws?token=***&encoding=arrow",
        f"GET /x?a=1&access_token={SECRET}": "GET /x?a=1&access_token=***",
        f"Authorization: Bearer {SECRET}": "Authorization: ***",
        f"{{'Authorization': 'Bearer {SECRET}'}}": "{'Authorization': '***'}",
        f"sent Bearer {SECRET} to x": "sent Bearer *** to x",
        f'{{"type": "hello", "token": "{SECRET}"}}': '{"type": "hello", "token": "***"}',
        f"{{'subscribe_token': '{SECRET}', 'n': 1}}": "{'subscribe_token': '***', 'n': 1}",
    }
    for raw, want in cases.items():
        out = scrub(raw)
        assert SECRET not in out, raw
        assert want in out, (raw, out)
    assert scrub("a valid subscribe token is required") == "a valid subscribe token is required"


def test_every_package_logger_is_scrubbed() -> None:
    """A new ``logging.getLogger("livestream.x")`` in the package must be covered too."""
    from pathlib import Path

    from livestream.redact import SCRUBBED_LOGGERS, ScrubFilter

    root = Path(ls.__file__).parent
    names = set()
    for path in root.rglob("*.py"):
        names |= set(re.findall(r"getLogger\(\s*[\"']([\w.]+)[\"']", path.read_text()))
    assert "livestream.server" in names
    for name in names | {"tornado.access", "tornado.application", "tornado.general"}:
        assert name in SCRUBBED_LOGGERS, name
        assert any(isinstance(f, ScrubFilter) for f in logging.getLogger(name).filters), name


# -- proxy headers ----------------------------------------------------------------------------


ACCESS = re.compile(r"^\d{3} \w+ \S+ \(([^)]*)\)")


def _peers(caplog, n: int) -> list[str]:
    """The client address of each access-log line, in order, once there are ``n`` of them.

    The server thread logs a request just after writing its response, so the lines are waited
    for (the client may have its answer first).
    """
    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "tornado.access"]

    poll(lambda: len(lines()) >= n, 10, f"{n} access-log lines")
    out = []
    for line in lines():
        m = ACCESS.match(line)
        assert m, line
        out.append(m.group(1))
    return out


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(make_server, run_async,
                                                               caplog) -> None:
    caplog.set_level(logging.INFO, logger="tornado.access")
    srv = make_server()
    spoof = {"X-Forwarded-For": "203.0.113.9", "X-Real-Ip": "203.0.113.8"}

    async def main() -> None:
        assert (await fetch(srv.http_url + "/health", headers=spoof)).code == 200
        assert await handshake(srv.url, spoof) == 101

    run_async(main())
    assert _peers(caplog, 2) == ["127.0.0.1", "127.0.0.1"]


def test_forwarded_headers_are_honoured_only_from_trusted_proxies(make_server, run_async,
                                                                  caplog) -> None:
    caplog.set_level(logging.INFO, logger="tornado.access")
    trusted = make_server(trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"])
    elsewhere = make_server(trusted_proxies=["10.0.0.0/8"])

    async def main() -> None:
        for headers in ({"X-Forwarded-For": "203.0.113.9"},
                        # a chain: the client, then proxies we trust
                        {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.1.2.3"},
                        {"X-Real-Ip": "203.0.113.9"},
                        {"X-Forwarded-For": "not-an-ip, 203.0.113.9"}):
            assert (await fetch(trusted.http_url + "/health", headers=headers)).code == 200
        assert await handshake(trusted.url, {"X-Forwarded-For": "203.0.113.9"}) == 101
        # garbage from a trusted proxy: keep the peer
        assert (await fetch(trusted.http_url + "/health",
                            headers={"X-Forwarded-For": "not-an-ip"})).code == 200
        # the peer (127.0.0.1) is not a listed proxy
        assert (await fetch(elsewhere.http_url + "/health",
                            headers={"X-Forwarded-For": "203.0.113.9"})).code == 200

    run_async(main())
    assert _peers(caplog, 7) == ["203.0.113.9"] * 5 + ["127.0.0.1", "127.0.0.1"]


def test_ipv6_loopback_server_has_bracketed_urls_and_answers_them(make_server,
                                                                  run_async) -> None:
    srv = make_server(host="::1")
    assert srv.url == f"ws://[::1]:{srv.port}/ws"
    assert srv.http_url == f"http://[::1]:{srv.port}"
    srv.publish("t", pd.DataFrame({"x": [1, 2]}))

    async def main() -> None:
        r = await fetch(srv.http_url + "/topics/t?format=csv")
        assert r.code == 200 and r.body.decode().split() == ["x", "1", "2"]
        assert await handshake(srv.url, {"Origin": f"http://[::1]:{srv.port}"}) == 101
        r = await fetch(srv.http_url + "/health", headers={"Host": f"attacker.example:{srv.port}"})
        assert r.code == 403

    run_async(main())
