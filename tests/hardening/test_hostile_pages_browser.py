"""A hostile page in a real Chromium: DNS rebinding and a cross-site publish.

Chromium's ``--host-resolver-rules`` makes ``attacker.example`` resolve to 127.0.0.1, which is
what a rebinding attacker's DNS does once the victim has loaded their page. The page then talks
to the livestream server by that name (so the browser sends ``Host: attacker.example`` and an
``Origin`` of the same host name), and also posts to ``127.0.0.1`` directly as an ordinary
cross-site form would.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from testutil import poll

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><title>cat pictures</title><script>
window.result = {ws: "pending", messages: [], posts: []};
const target = "attacker.example:%(port)d";
const ws = new WebSocket(`ws://${target}/ws`);
ws.onopen = () => {
  window.result.ws = "open";
  ws.send(JSON.stringify({type: "subscribe", topic: "prices", id: 1}));
  ws.send(JSON.stringify({type: "publish", topic: "prices", columns: {price: [666.0]}}));
};
ws.onmessage = (e) => window.result.messages.push(e.data);
ws.onclose = () => { if (window.result.ws !== "open") window.result.ws = "refused"; };
const form = (url) => fetch(url, {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: JSON.stringify([{price: 777.0}])})
  .then(() => window.result.posts.push("sent"), () => window.result.posts.push("failed"));
form(`http://${target}/topics/prices`);           // rebinding: same host name
form(`http://127.0.0.1:%(port)d/topics/prices`);  // plain cross-site form post
</script>"""


@pytest.fixture
def rebinding_browser(chromium_path: str, chromium_args: list[str]) -> Iterator[Any]:
    """Chromium in which ``attacker.example`` resolves to 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    args = [a for a in chromium_args if not a.startswith("--headless")]
    args.append("--host-resolver-rules=MAP attacker.example 127.0.0.1")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=args, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_rebinding_page_in_chromium_can_neither_subscribe_nor_publish(
        make_server, rebinding_browser, tmp_path: Path) -> None:
    srv = make_server()
    srv.publish("prices", pd.DataFrame({"price": [100.0]}))
    (tmp_path / "evil.html").write_text(PAGE % {"port": srv.port})
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path), **kw)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    page = rebinding_browser.new_page()
    try:
        page.goto(f"http://attacker.example:{httpd.server_address[1]}/evil.html")
        result = poll(lambda: (r := page.evaluate("window.result"))["ws"] != "pending"
                      and len(r["posts"]) == 2 and r, 60, "the page's attempts")
    finally:
        page.close()
        httpd.shutdown()
        httpd.server_close()
    assert result["ws"] == "refused", result
    assert result["messages"] == []
    assert srv.snapshot("prices")["price"].tolist() == [100.0]
    errors = srv.metrics.errors
    assert errors["host_not_allowed"] == 2 and errors["origin_not_allowed"] == 1, errors
