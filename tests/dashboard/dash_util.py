"""Helpers for dashboard tests (a module of its own: conftest names collide across dirs)."""

from __future__ import annotations

from typing import Any

from testutil import poll  # noqa: F401 - re-exported for the tests here

#: Points per chart of the page's (first) Bokeh document, by figure title (status suffix cut).
CHART_POINTS_JS = """
() => {
  const B = window.Bokeh;
  if (!B || !B.documents || !B.documents.length) return null;
  const out = {};
  for (const m of B.documents[0]._all_models.values()) {
    if (m.renderers === undefined || !m.title || m.title.text === undefined) continue;
    let n = 0;
    for (const r of m.renderers) {
      if (r.name === "__empty_ranges__") continue;  // an empty chart's range extent
      const ds = r.data_source;
      if (ds && typeof ds.get_length === "function") n += ds.get_length() || 0;
    }
    out[m.title.text.split(" — ")[0]] = [n, m.title.text, m.id];
  }
  return out;
}
"""


def chart_points(page: Any, title: str) -> int:
    """Points of the chart titled ``title`` on ``page`` (0 before the document loads)."""
    got = page.evaluate(CHART_POINTS_JS) or {}
    return int(got.get(title, [0])[0])


def chart_info(page: Any, title: str) -> list | None:
    return (page.evaluate(CHART_POINTS_JS) or {}).get(title)


