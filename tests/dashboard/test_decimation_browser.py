"""Decimation in real Chromium: a chart fed far more rows than its plot has pixel columns keeps
a bounded number of points in its ColumnDataSources, zooming in (the wheel-zoom tool) brings
the visible range in detail, and the reset tool returns to the overview — in the Bokeh server
app (the kernel side decimates, ChartCore) and in a static page (the browser client does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from decimation_util import ROWS, WIDTH, check_overview_zoom_reset

from livestream.views.spec import ViewSpec

pytestmark = pytest.mark.browser


@pytest.fixture
def big_sub(make_server: Any) -> Iterator[tuple[Any, Any]]:
    """A server holding ROWS trades (3 symbols, 1 ms apart) and a subscription to all of them."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "static"))
    from static_util import trades_frame

    import livestream as ls

    srv = make_server(allowed_origins=["null"], retention_rows=ROWS)
    for s in range(0, ROWS, 50_000):
        srv.publish("trades", trades_frame(s, 50_000))
    conn = ls.connect(srv.url)
    sub = conn.subscribe("trades", window=ROWS).wait(rows=ROWS, timeout=60)
    try:
        yield srv, sub
    finally:
        conn.close()


def dashboard(sub: Any) -> Any:
    import livestream as ls

    return ls.Dashboard([ViewSpec.chart(sub, x="ts", y="price", by="sym", window=ROWS,
                                        width=WIDTH, title="big")], title="decimation")


def test_served_dashboard_decimates_and_zooms(big_sub, browser):
    _, sub = big_sub
    last_x = float(sub.df["ts"].iloc[-1].value // 1_000_000)
    ds = dashboard(sub).serve(port=0, session_expiry=0.3)
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    try:
        page.goto(ds.url, wait_until="domcontentloaded")
        check_overview_zoom_reset(page, last_x)
    finally:
        page.close()
        ds.stop()


def test_static_page_decimates_and_zooms_in_the_browser(big_sub, browser, tmp_path):
    _, sub = big_sub
    last_x = float(sub.df["ts"].iloc[-1].value // 1_000_000)
    path = tmp_path / "big.html"
    dashboard(sub).save(str(path))
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    try:
        page.goto(path.as_uri(), wait_until="domcontentloaded")
        check_overview_zoom_reset(page, last_x)
    finally:
        page.close()
