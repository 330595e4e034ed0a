"""Saved pages stream by themselves: real server, real Chromium, no Python behind the page."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from static_util import CDS_POINTS_JS, poll

from livestream.dashboard import Dashboard, ViewSpec
from livestream.dashboard.static import save_dashboard, static_page
from livestream.views.chart_core import ChartCore

pytestmark = pytest.mark.browser


def _points(page: Any) -> int:
    return max(page.evaluate(CDS_POINTS_JS) or [0])


def _series_names(page: Any) -> list[str]:
    return page.evaluate("""() => {
      const out = [];
      for (const doc of window.Bokeh.documents)
        for (const m of doc._all_models.values())
          if (m.type === "LegendItem") out.push(m.label.value);
      return out.sort();
    }""")


def _assert_grows(page: Any) -> None:
    first = poll(lambda: _points(page), 60, "the page's first points")
    poll(lambda: _points(page) > first, 60, f"the chart to grow past {first} points")


def test_static_page_over_http_grows_live(trades_sub, browser, tmp_path: Path) -> None:
    chart = ViewSpec.chart(trades_sub, x="ts", y="price", by="sym", window=100_000)
    path = save_dashboard(Dashboard([chart], title="Desk"), tmp_path / "desk.html")
    html = path.read_text()
    # everything inline: no script or stylesheet is fetched from anywhere
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=", html)
    assert "var Livestream" in html

    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path), **kw)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/desk.html")
        _assert_grows(page)
        # one series per symbol, added in the browser from the template, with legend items
        poll(lambda: _series_names(page) == ["AAPL", "GOOG", "MSFT"], 30, "three legend items")
        title = page.evaluate("""() => {
          for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values())
            if (m.type === "Title" && m.text.startsWith("trades")) return m.text;
        }""")
        assert title == "trades: price by sym"
        assert not errors, errors
    finally:
        page.close()
        httpd.shutdown()
        httpd.server_close()


def test_static_page_from_file_url_grows_live(trades_sub, browser, tmp_path: Path) -> None:
    chart = ChartCore(trades_sub, x="ts", y="price", window=100_000)
    html = static_page([chart], title="One chart")
    path = tmp_path / "one.html"
    path.write_text(html)
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        _assert_grows(page)
    finally:
        page.close()


def test_table_and_keyed_bars_on_a_saved_page(feed_server, trades_sub, last_sub, browser,
                                               tmp_path: Path) -> None:
    import pandas as pd

    srv, _ = feed_server
    bars = ViewSpec.chart(last_sub, x="sym", y="price", kind="bar")
    table = ViewSpec.table(trades_sub, rows=5, columns=["ts", "sym", "price"])
    path = Dashboard([[bars, table]], title="Bars").save(tmp_path / "bars.html", inline=False)
    assert (tmp_path / "bars_files" / "livestream.js").exists()
    assert not re.search(r'src="/', path.read_text()), "assets are linked relatively"
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        factors_js = """() => {
          for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values())
            if (m.type === "FactorRange") return m.factors;
        }"""
        poll(lambda: page.evaluate(factors_js) == ["AAPL", "MSFT"], 60, "two bars")
        srv.publish("last", pd.DataFrame({"sym": ["GOOG"], "price": [3.0]}))
        poll(lambda: page.evaluate(factors_js) == ["AAPL", "GOOG", "MSFT"], 60, "a third bar")
        table_rows_js = """() => {
          for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values())
            if (m.type === "ColumnDataSource" && "ts" in m.data && "sym" in m.data
                && !("qty" in m.data)) return m.get_length();
        }"""
        poll(lambda: page.evaluate(table_rows_js) == 5, 60, "five table rows")
    finally:
        page.close()


def test_file_page_is_refused_unless_null_is_allowed(closed_server, browser,
                                                     tmp_path: Path) -> None:
    srv, sub = closed_server
    path = tmp_path / "refused.html"
    path.write_text(static_page([ChartCore(sub, x="ts", y="price")]))
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        poll(lambda: srv.core.metrics.disconnects["origin_refused"] > 0, 60,
             "the server to refuse the file:// page's origin")
        assert _points(page) == 0
    finally:
        page.close()
