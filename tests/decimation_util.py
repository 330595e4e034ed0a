"""Shared by the decimation browser tests (tests/dashboard, tests/browser): read a page's
ColumnDataSources and x range, and check overview → wheel zoom → reset on a chart."""

from __future__ import annotations

from typing import Any

from testutil import poll

from livestream.views.decimate import max_points

ROWS = 150_000  # rows fed to the chart: 50,000 per series
WIDTH = 300  # plot width in pixels: the pixel columns a series is decimated to
BOUND = 2 * max_points(WIDTH)  # the most points an overview holds (incremental grid: ≤ 2×)

#: [points, first x, last x] of every non-empty ColumnDataSource, and the plot's x range.
STATE_JS = """
() => {
  const B = window.Bokeh;
  if (!B || !B.documents || !B.documents.length) return null;
  const sources = [];
  let range = null;
  for (const doc of B.documents) for (const m of doc._all_models.values()) {
    if (m.x_range && m.x_range.start !== undefined && m.title !== undefined)
      range = [m.x_range.start, m.x_range.end, !!m.x_range.have_updated_interactively];
    if (m.data !== undefined && typeof m.get_length === "function") {
      const x = m.data.x;
      if (x && x.length) sources.push([x.length, x[0], x[x.length - 1], Array.from(x)]);
    }
  }
  return {sources, range};
}
"""


def check_overview_zoom_reset(page: Any, last_x: float) -> None:
    """The chart on ``page`` (three series, ROWS rows, WIDTH pixels wide, newest x ``last_x``)
    holds a bounded overview; the wheel-zoom tool brings the visible range in detail; the
    reset tool brings the overview back."""
    def overview() -> Any:
        st = page.evaluate(STATE_JS)
        if not st or len(st["sources"]) < 3:
            return None
        # every series drawn up to its newest row
        if max(s[2] for s in st["sources"]) != last_x:
            return None
        return st

    st = poll(overview, 90, "three series drawn up to the newest row")
    for n, _first, _last, _xs in st["sources"]:
        assert n <= BOUND, f"{n} points in a source for {ROWS // 3} rows"
    assert sum(s[0] for s in st["sources"]) < ROWS / 10
    first_x = min(s[1] for s in st["sources"])
    over_xs = st["sources"][0][3]

    # zoom in with the wheel-zoom tool at the middle of the plot
    page.locator("[title='Wheel Zoom']").first.click()
    box = page.locator("canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    for _ in range(8):
        page.mouse.wheel(0, -300)

    def zoomed() -> Any:
        st = page.evaluate(STATE_JS)
        if not st or not st["range"] or not st["range"][2]:
            return None
        x0, x1 = st["range"][0], st["range"][1]
        xs = st["sources"][0][3]
        inside = [x for x in xs if x0 <= x <= x1]
        # the source now holds the visible range (and a row either side), in detail
        return (xs[0] >= x0 - 3 and xs[-1] <= x1 + 3 and len(inside) > 2) and (st, inside)

    st, inside = poll(zoomed, 60, "the zoomed range drawn in detail")
    x0, x1 = st["range"][0], st["range"][1]
    in_overview = [x for x in over_xs if x0 <= x <= x1]
    assert len(inside) > 2 * max(1, len(in_overview)), (len(inside), len(in_overview))

    # the reset tool: back to the overview of the whole window
    page.locator("[title='Reset']").first.click()
    st = poll(lambda: (s := page.evaluate(STATE_JS)) and s["sources"]
              and min(x[1] for x in s["sources"]) == first_x
              and max(x[2] for x in s["sources"]) == last_x and s,
              60, "the overview after a reset")
    for n, *_ in st["sources"]:
        assert n <= BOUND
