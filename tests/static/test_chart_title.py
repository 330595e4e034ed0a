"""A saved page's chart title says what is wrong where the reader can see it: the status
("reconnecting", the file-origin hint) is drawn whole, inside the chart's canvas, in a chart
at its default size and in a narrow one (two charts in a row), in Chromium.

The probe reads BokehJS's own geometry of the drawn title (the title view's text box and
its panel, in canvas pixels) and the pixels of a screenshot of that box."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from static_util import CDS_POINTS_JS, poll

from livestream.dashboard import Dashboard, ViewSpec
from livestream.views.chart_core import DOWN_COLOR

pytestmark = pytest.mark.browser

#: Per plot: its title's text and colour, whether BokehJS draws it, the text box as drawn
#: (canvas pixels), the title panel and plot frame boxes, and the canvas on the page.
TITLES_JS = """() => {
  const out = [];
  for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values()) {
    if (m.type !== "Figure" || m.title == null) continue;
    const pv = window.Bokeh.index.find_one(m);
    const tv = pv == null ? null : pv.renderer_views.get(m.title);
    if (tv == null || tv._rect == null) continue;
    const r = tv._rect;
    const p = tv.layout.bbox, f = pv.frame.bbox;
    const c = pv.canvas_view.el.getBoundingClientRect();
    out.push({
      text: m.title.text, color: m.title.text_color, displayed: tv.displayed,
      box: {left: r.sx - r.anchor.x * r.width, top: r.sy - r.anchor.y * r.height,
            width: r.width, height: r.height},
      panel: {left: p.left, top: p.top, right: p.right, bottom: p.bottom},
      frame_top: f.top, canvas: {x: c.x, y: c.y, width: c.width, height: c.height},
    });
  }
  return out;
}"""


def _titles(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(TITLES_JS) or []


def _hex(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _ink(page: Any, t: dict[str, Any], rgb: tuple[int, int, int] | None) -> int:
    """Pixels of the title's box on a screenshot that are text: of colour ``rgb`` (None:
    any pixel clearly darker than the white background)."""
    from PIL import Image

    b, c = t["box"], t["canvas"]
    clip = {"x": c["x"] + b["left"], "y": c["y"] + b["top"], "width": b["width"],
            "height": b["height"]}
    px = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB"),
                    dtype=np.int32).reshape(-1, 3)
    if rgb is None:
        return int((px.sum(axis=1) < 3 * 160).sum())
    return int((np.abs(px - np.asarray(rgb)) <= 40).all(axis=1).sum())


def _assert_readable(page: Any, t: dict[str, Any], rgb: tuple[int, int, int] | None) -> None:
    """The whole title is drawn inside its panel, above the plot frame, inside the canvas,
    and its box holds text pixels."""
    b, p = t["box"], t["panel"]
    where = f"title {t['text']!r}: box {b}, panel {p}, frame top {t['frame_top']}"
    assert t["displayed"], f"BokehJS does not draw {where} (colour {t['color']!r})"
    assert p["bottom"] - p["top"] >= b["height"] - 0.5, f"no room for {where}"
    assert b["top"] >= p["top"] - 0.5 and b["top"] + b["height"] <= p["bottom"] + 0.5, where
    assert b["top"] >= 0 and b["top"] + b["height"] <= t["frame_top"] + 0.5, where
    assert b["left"] >= 0 and b["left"] + b["width"] <= p["right"] + 0.5, (
        f"cut at the right: {where}")
    assert _ink(page, t, rgb) > 20, f"no visible text in the box of {where}"


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
        live = poll(lambda: (ts := _titles(page)) and len(ts) == 3
                    and all(" — " not in t["text"] for t in ts) and ts, 60, "live titles")
        widths = sorted(round(t["canvas"]["width"]) for t in live)
        assert widths[0] < 0.6 * widths[-1], f"two charts share a row: {widths}"
        for t in live:
            _assert_readable(page, t, None)
        feed.stop()
        srv.close()
        down = poll(lambda: (ts := _titles(page)) and all("reconnecting" in t["text"] for t in ts)
                    and ts, 60, "reconnecting in every title")
        for t in down:
            assert t["color"] == DOWN_COLOR, t
            _assert_readable(page, t, _hex(DOWN_COLOR))
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
        titles = poll(lambda: (ts := _titles(page)) and len(ts) == 2
                      and all("--allow-origin null" in t["text"] for t in ts) and ts,
                      60, "the hint in both titles")
        for t in titles:
            _assert_readable(page, t, _hex(DOWN_COLOR))
    finally:
        page.close()
