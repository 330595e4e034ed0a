"""Views the browser streams by itself: the Bokeh models and the arguments the
livestream JavaScript client needs to fill them.

A static page (:mod:`livestream.dashboard.static`) and a direct-mode notebook chart
(:mod:`livestream.notebook.direct`) both hold the same figure a kernel-drawn chart
would (built by :class:`~livestream.views.chart_core.ChartCore`), plus a ``CustomJS``
on the document's ``DocumentReady`` event (:data:`START_JS`) that calls
``Livestream.startChart``/``startTable`` with :func:`view_models`' arguments. In the
browser every view subscribes to the livestream server and applies what arrived,
at most ``fps`` times a second, as one ``source.stream(rows, rollover=window)`` per
series (js/src/bokehChart.ts). Nothing here touches Jupyter or a server.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    DataTable,
    DateFormatter,
    Div,
    GlyphRenderer,
    LinearColorMapper,
    NumberFormatter,
    TableColumn,
)

from .chart_core import ChartCore
from .table_redraw import redraw_on_change

__all__ = ["BUNDLE", "START_JS", "livestream_js", "view_models"]

#: The livestream client bundle (built from js/ by ``npm run build``).
BUNDLE = Path(__file__).resolve().parents[1] / "static" / "livestream.js"

#: Colour of the hidden template glyphs; the browser recolours each new series.
TEMPLATE_COLOR = "#808080"

#: Started by the document's DocumentReady event: waits for ``window.Livestream`` (it is
#: inline in saved pages; a notebook loads it with a display output), then starts the views.
START_JS = """
const server = JSON.parse(server_json);
// a viewer's own token from the page address: #livestream_token=... (never sent to a web
// server) or ?livestream_token=...; it replaces the token saved in the page
try {
  const mine = new URLSearchParams(window.location.hash.slice(1)).get("livestream_token")
      || new URLSearchParams(window.location.search).get("livestream_token");
  if (mine) server.token = mine;
} catch (err) { /* no location (not a browser page) */ }
let waited = 0;
function start() {
  const L = window.Livestream;
  if (L === undefined || L.startChart === undefined) {
    if ((waited += 50) <= 60000) setTimeout(start, 50);
    else console.error("livestream: the livestream client (window.Livestream) never loaded");
    return;
  }
  for (const v of views) {
    const kind = v.get ? v.get("kind") : v.kind;
    const o = v instanceof Map ? Object.fromEntries(v) : v;
    try {
      if (kind === "chart") L.startChart({...server, ...o});
      else if (kind === "table") L.startTable({...server, ...o});
    } catch (err) {
      console.error("livestream: cannot start a view", err);
    }
  }
}
start();
"""

@lru_cache(maxsize=1)
def livestream_js() -> str:
    """The browser bundle of the livestream client (defines ``window.Livestream``)."""
    return BUNDLE.read_text(encoding="utf-8")


# -- what a view is -----------------------------------------------------------------------------


class _StubSub:
    """Stands in for a subscription when a view spec came without one (from JSON)."""

    def __init__(self, name: str | None, window: int | None) -> None:
        self.name = name
        self.window = window
        self.schema = None
        self.key = ()
        self.mode = None


# -- charts -------------------------------------------------------------------------------------


def _templates(core: Any) -> list[GlyphRenderer]:
    """Hidden renderers the browser clones for series that appear later (``by=`` values)."""
    fig = core.figure
    cols = [c for c in core.columns if c != "color"]
    source = ColumnDataSource(data={c: [] for c in cols})
    kw: dict[str, Any] = {"source": source, "name": "__template__", "visible": False}
    lw = getattr(core, "_line_width", 2)
    kind = core.kind
    if kind == "line":
        return [fig.line("x", "y", color=TEMPLATE_COLOR, line_width=lw, **kw)]
    if kind == "step":
        return [fig.step("x", "y", color=TEMPLATE_COLOR, mode="after", line_width=lw, **kw)]
    if kind == "scatter":
        return [fig.scatter("x", "y", color=TEMPLATE_COLOR, size=getattr(core, "_size", 6),
                            alpha=0.8, **kw)]
    if kind == "bar":
        width = getattr(core, "_bar_width", None) or 0.8
        return [fig.vbar(x="x", top="y", width=width, color=TEMPLATE_COLOR, **kw)]
    mapper = LinearColorMapper(palette=[core.spec["down_color"], core.spec["up_color"]],
                               low=0, high=1)
    cmap = {"field": "inc", "transform": mapper}
    width = getattr(core, "_bar_width", None) or 1.0
    return [fig.segment("x", "high", "x", "low", color=cmap, **kw),
            fig.vbar(x="x", width=width, top="open", bottom="close", fill_color=cmap,
                     line_color=cmap, **kw)]


def _sub_of(spec: Any) -> Any:
    return spec.sub if spec.sub is not None else _StubSub(spec.topic, spec.window)


def _chart_models(spec: Any, snapshot: bool) -> tuple[Any, dict[str, Any]]:
    sub = _sub_of(spec)
    opts = {k: v for k, v in spec.options.items() if k not in ("start",)}
    core = ChartCore(sub, **opts)
    if snapshot and spec.sub is not None:
        core.update_data()
    page_spec = dict(core.spec)
    page_spec["topic"] = spec.topic
    page_spec["rows"] = int(spec.window or getattr(sub, "window", None) or core.window)
    core.set_status("connecting…")
    keys = {("" if k is None else str(k)): s.source for k, s in core.series.items()}
    if core.kind == "bar" and page_spec.get("x_type") == "categorical" and "" not in keys:
        src = ColumnDataSource(data={"x": [], "y": [], "color": []})
        core.figure.vbar(x="x", top="y", width=0.8, source=src, color="color")
        core.figure.y_range.start = 0
        keys[""] = src
    args: dict[str, Any] = {
        "kind": "chart",
        "spec": json.dumps(page_spec),
        "plot": core.figure,
        "sources": keys,
        "templates": _templates(core),
        # the hidden renderer that keeps the auto ranges finite while the chart is empty;
        # the browser empties it when data comes (js/src/bokehChart.ts)
        "emptyRanges": core.empty_ranges,
    }
    if core.legend is not None:
        args["legend"] = core.legend
    return core.figure, args


# -- tables -------------------------------------------------------------------------------------


def _table_models(spec: Any) -> tuple[Any, dict[str, Any]]:
    sub = _sub_of(spec)
    opts = spec.options
    schema = getattr(sub, "schema", None)
    names: list[str] = list(opts.get("columns") or (schema.names if schema else []))
    types = {n: schema.type_of(n) for n in names if n in schema.names} if schema else {}
    cols = []
    for n in names:
        t = types.get(n, "")
        if t.startswith("datetime64"):
            # time of day to the millisecond, as the app's and the notebook's tables
            fmt: Any = DateFormatter(format="%H:%M:%S.%3N")
        elif t.lower().startswith("float"):
            fmt = NumberFormatter(format="0,0.[0000]")
        elif t.lower().startswith(("int", "uint")):
            fmt = NumberFormatter(format="0,0")
        else:
            fmt = None
        cols.append(TableColumn(field=n, title=n, **({"formatter": fmt} if fmt else {})))
    rows = int(opts.get("rows") or 20)
    source = ColumnDataSource(data={n: [] for n in names})
    table = DataTable(source=source, columns=cols, index_position=None, sortable=False,
                      height=28 + 25 * min(rows, 20), sizing_mode="stretch_width")
    redraw_on_change(table)
    page_spec = {"topic": spec.topic, "rows": rows, "columns": names or None,
                 "fps": float(opts.get("fps") or 4),
                 "window": int(spec.window or getattr(sub, "window", None) or rows)}
    caption = Div(text=f"<b>{_escape(spec.topic or '')}</b>",
                  styles={"font-size": "12px", "opacity": "0.75"})
    return column(caption, table, sizing_mode="stretch_width"), {
        "kind": "table", "spec": json.dumps(page_spec), "source": source, "caption": caption}


def view_models(spec: Any, *, snapshot: bool = False) -> tuple[Any, dict[str, Any] | None]:
    """The Bokeh layout of one :class:`~livestream.views.spec.ViewSpec` streamed by the browser, and
    what the browser needs to start it (``None`` when nothing streams)."""
    if spec.view == "chart":
        return _chart_models(spec, snapshot)
    if spec.view == "table":
        return _table_models(spec)
    # ticker cards and controls act in Python (per session): not on static pages
    note = f"{spec.view} of {spec.topic}: shown in notebooks and served dashboards only"
    return Div(text=f"<i>{_escape(note)}</i>", styles={"opacity": "0.6"}), None


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
