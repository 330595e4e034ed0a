"""A candlestick chart without ``by=`` has one series and no legend box (it showed an
empty one over the first candles), on a saved page in Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from static_util import CDS_POINTS_JS, poll

from livestream.dashboard import Dashboard, ViewSpec

pytestmark = pytest.mark.browser

LEGEND_ITEMS_JS = """() => {
  const out = [];
  for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values())
    if (m.type === "Legend") out.push(m.items.map((i) => i.label?.value ?? ""));
  return out;
}"""


@pytest.fixture
def bars_sub(feed_server):
    """A subscription to 20 one-second OHLC bars (made before the browser starts)."""
    import livestream as ls

    srv, _ = feed_server
    i = np.arange(20)
    srv.publish("bars", pd.DataFrame({
        "ts": pd.Timestamp("2024-01-02T09:30:00") + pd.to_timedelta(i, unit="s"),
        "open": 100.0 + i, "high": 102.0 + i, "low": 99.0 + i, "close": 101.0 + i}))
    conn = ls.connect(srv.url)
    try:
        yield conn.subscribe("bars").wait(rows=20, timeout=30)
    finally:
        conn.close()


def test_candlestick_without_by_has_no_empty_legend(bars_sub, browser, tmp_path: Path) -> None:
    chart = ViewSpec.chart(bars_sub, x="ts", kind="candlestick")
    path = Dashboard([chart], title="Bars").save(tmp_path / "bars.html")
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        poll(lambda: max(page.evaluate(CDS_POINTS_JS) or [0]) >= 20, 60, "the candles")
        assert page.evaluate(LEGEND_ITEMS_JS) == [], page.evaluate(LEGEND_ITEMS_JS)
    finally:
        page.close()
