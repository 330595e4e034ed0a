"""The dashboard's Bokeh server app in real Chromium: charts grow, sessions are independent,
BokehJS comes from the server itself, and the CLI / ``bokeh serve`` serve a script app."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dash_util import chart_info, chart_points, poll
from testutil import stop_process

from livestream.dashboard.server import live_stats

pytestmark = pytest.mark.browser

APP = Path(__file__).parent / "apps" / "desk_app.py"
TRADES = "trades: price by symbol"


def open_page(browser: Any, url: str) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url, wait_until="domcontentloaded")
    return page, requests, errors


def test_dashboard_charts_grow_in_chromium_with_local_bokehjs(demo_dash, browser):
    page, requests, errors = open_page(browser, demo_dash.url)
    try:
        first = poll(lambda: chart_points(page, TRADES), 60, "the trades chart's first points")
        poll(lambda: chart_points(page, TRADES) > first, 60, f"more than {first} points")
        # the other panels draw too: candlesticks, bars per room, player positions
        for title in ("AAPL 1-second bars", "chat: messages per room (last 5,000)",
                      "players: last positions"):
            poll(lambda t=title: chart_points(page, t), 60, f"points in {title!r}")
        # tables and ticker cards have content
        poll(lambda: page.locator(".ls-card").count() >= 2, 60, "quote cards")
        poll(lambda: page.locator(".slick-row").count() > 0, 60, "table rows")
        # one document for the page; everything loaded from the dashboard server itself
        assert page.evaluate("window.Bokeh.documents.length") == 1
        origin = demo_dash.url.rstrip("/")
        http = [u for u in requests if u.startswith("http")]
        assert http and all(u.startswith(origin) for u in http), http
        assert not [u for u in requests if "cdn" in u], requests
        assert not [e for e in errors if "Bokeh" in e or "bokeh" in e], errors
    finally:
        page.close()


#: Keeps every text message the page sends on a WebSocket (installed before the page loads).
SENT_LOG_JS = """
(() => {
  window.__lsSent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string") window.__lsSent.push(data);
    return send.call(this, data);
  };
})()
"""


def test_live_charts_push_nothing_back_to_the_server(trading_dash, browser):
    """A chart redraws its auto-ranges every frame and re-lays out when its tick labels
    change width; none of that may travel back to the server as document patches (it
    queued ahead of user clicks: a Pause took effect > 30 s late on a busy server)."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.add_init_script(SENT_LOG_JS)
    page.goto(trading_dash.url, wait_until="domcontentloaded")
    try:
        seen = [poll(lambda: chart_points(page, TRADES), 60, "the trades chart's first points")]
        for _ in range(3):  # several frames with new data: ranges and axes move
            seen.append(poll(lambda: (n := chart_points(page, TRADES)) > seen[-1] and n, 60,
                             f"more than {seen[-1]} points"))
        events = [e for text in page.evaluate("window.__lsSent")
                  if text.startswith('{"events"') for e in json.loads(text)["events"]]
        changes = [(e["model"]["id"], e["attr"]) for e in events if e["kind"] == "ModelChanged"]
        assert changes == [], f"the page pushed {len(changes)} model changes: {changes[:10]}"
    finally:
        page.close()


def test_two_sessions_are_independent(trading_dash, browser):
    a, _, _ = open_page(browser, trading_dash.url)
    b, _, _ = open_page(browser, trading_dash.url)
    try:
        poll(lambda: chart_points(a, TRADES) and chart_points(b, TRADES), 60,
             "both pages to draw trades")
        poll(lambda: live_stats()["sessions"] >= 2, 30, "two server sessions")
        # separate documents: different models for the same chart
        assert chart_info(a, TRADES)[2] != chart_info(b, TRADES)[2]

        # pause in page A: its title says so and its trades chart stops taking rows...
        a.locator("button", has_text="Pause").first.click()
        poll(lambda: "paused" in (chart_info(a, TRADES) or ["", ""])[1], 30,
             "page A's trades chart to show 'paused'")
        frozen = chart_points(a, TRADES)
        # ...while page B keeps growing and is not paused
        b_now = chart_points(b, TRADES)
        poll(lambda: chart_points(b, TRADES) > b_now, 60, "page B to keep growing")
        assert "paused" not in chart_info(b, TRADES)[1]
        assert chart_points(a, TRADES) == frozen

        # closing page A releases its session; B keeps streaming
        a.close()
        poll(lambda: live_stats()["sessions"] == 1, 30, "page A's session to be released")
        b_now = chart_points(b, TRADES)
        poll(lambda: chart_points(b, TRADES) > b_now, 60, "page B to grow after A closed")
    finally:
        for p in (a, b):
            if not p.is_closed():
                p.close()


@pytest.mark.parametrize("runner", ["livestream", "bokeh"])
def test_script_app_served_by_cli_and_bokeh_serve(runner, demo_server, browser, tmp_path,
                                                  free_port):
    env = {**os.environ, "LIVESTREAM_URL": demo_server.url, "PYTHONUNBUFFERED": "1"}
    if runner == "livestream":
        cmd = [sys.executable, "-m", "livestream.cli", "dashboard", str(APP), "--port", "0"]
    else:
        cmd = [sys.executable, "-m", "bokeh", "serve", str(APP), "--port", str(free_port),
               "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{free_port}"]
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    try:
        pattern = re.compile(r"(http://(?:127\.0\.0\.1|localhost):\d+/\S*)")

        def url() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"{runner} exited: {log.read_text()}")
            m = pattern.search(log.read_text())
            return m.group(1) if m else None

        address = poll(url, 60, f"the {runner} server's URL").replace("localhost", "127.0.0.1")
        page, _, _ = open_page(browser, address)
        try:
            first = poll(lambda: chart_points(page, "trades: price by symbol"), 60,
                         "the app's chart to draw")
            poll(lambda: chart_points(page, "trades: price by symbol") > first, 60,
                 "the app's chart to grow")
            poll(lambda: page.locator(".ls-card").count() >= 2, 60, "the app's quote cards")
        finally:
            page.close()
    finally:
        stop_process(proc)
