"""A saved page's chart title says what is wrong where the reader can see it: the status
("reconnecting", the file-origin hint) is drawn whole, inside the chart's canvas, in a chart
at its default size and in a narrow one (two charts in a row), in Chromium.

The probe reads BokehJS's own geometry of the drawn title (the title view's text box and
its panel, in canvas pixels) and the pixels of a screenshot of that box."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from static_util import CDS_POINTS_JS, poll
from title_util import assert_readable, hex_rgb, titles

from livestream.dashboard import Dashboard, ViewSpec
from livestream.views.chart_core import DOWN_COLOR

pytestmark = pytest.mark.browser

def _page(browser: Any, path: Path, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(path.as_uri())
    return page


def test_status_is_drawn_whole_in_the_title(feed_server, trades_sub, browser,
                                             tmp_path: Path) -> None:
    """Live, then the server stops: each title (two charts in a row and one alone) shows
    "reconnecting" in red, whole and inside the chart."""
    srv, feed = feed_server
    row = [ViewSpec.chart(trades_sub, x="ts", y="price", by="sym"),
           ViewSpec.chart(trades_sub, x="ts", y="qty")]
    path = Dashboard([row, ViewSpec.chart(trades_sub, x="ts", y="price")],
                     title="Desk").save(tmp_path / "desk.html")
    page = _page(browser, path, 900)
    try:
        poll(lambda: min(page.evaluate(CDS_POINTS_JS) or [0]) > 0, 60, "the charts' points")
        live = poll(lambda: (ts := titles(page)) and len(ts) == 3
                    and all(" — " not in t["text"] for t in ts) and ts, 60, "live titles")
        widths = sorted(round(t["canvas"]["width"]) for t in live)
        assert widths[0] < 0.6 * widths[-1], f"two charts share a row: {widths}"
        for t in live:
            assert_readable(page, t, None)
        feed.stop()
        srv.close()
        down = poll(lambda: (ts := titles(page)) and all("reconnecting" in t["text"] for t in ts)
                    and ts, 60, "reconnecting in every title")
        for t in down:
            assert t["color"] == DOWN_COLOR, t
            assert_readable(page, t, hex_rgb(DOWN_COLOR))
    finally:
        page.close()


def test_refused_file_page_hint_fits_a_narrow_chart(closed_server, browser,
                                                     tmp_path: Path) -> None:
    """A page opened from a file against a server that refuses origin null: the hint
    naming the fix is read whole in each of two charts sharing a row of a small window."""
    _srv, sub = closed_server
    row = [ViewSpec.chart(sub, x="ts", y="price"), ViewSpec.chart(sub, x="ts", y="qty")]
    path = Dashboard([row], title="Refused").save(tmp_path / "refused.html")
    page = _page(browser, path, 800)
    try:
        shown = poll(lambda: (ts := titles(page)) and len(ts) == 2
                      and all("--allow-origin null" in t["text"] for t in ts) and ts,
                      60, "the hint in both titles")
        for t in shown:
            assert_readable(page, t, hex_rgb(DOWN_COLOR))
    finally:
        page.close()
