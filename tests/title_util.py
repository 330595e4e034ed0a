"""Probes of a chart title as drawn in Chromium: BokehJS's own geometry of the title (the
title view's text box and its panel, in canvas pixels) and the pixels of a screenshot of it."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

#: Per plot: its title's text and colour, whether BokehJS draws it, the text box as drawn
#: (canvas pixels), the title panel and plot frame boxes, and the canvas on the page (page
#: coordinates, for a full-page screenshot).
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
      frame_top: f.top, canvas: {x: c.x + window.scrollX, y: c.y + window.scrollY, width: c.width, height: c.height},
    });
  }
  return out;
}"""


def titles(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(TITLES_JS) or []


def hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def ink(page: Any, t: dict[str, Any], rgb: tuple[int, int, int] | None) -> int:
    """Pixels of the title's box on a screenshot that are text: of colour ``rgb`` (None:
    any pixel clearly darker than the white background)."""
    from PIL import Image

    b, c = t["box"], t["canvas"]
    clip = {"x": c["x"] + b["left"], "y": c["y"] + b["top"], "width": b["width"],
            "height": b["height"]}
    px = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip, full_page=True))).convert("RGB"),
                    dtype=np.int32).reshape(-1, 3)
    if rgb is None:
        return int((px.sum(axis=1) < 3 * 160).sum())
    return int((np.abs(px - np.asarray(rgb)) <= 40).all(axis=1).sum())


def assert_readable(page: Any, t: dict[str, Any], rgb: tuple[int, int, int] | None) -> None:
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
    assert ink(page, t, rgb) > 20, f"no visible text in the box of {where}"
