"""A live chart without a transport: figure construction and per-frame drawing.

:class:`ChartCore` owns one Bokeh figure of one subscription. It knows nothing
about comms, sessions or timers: the target calls :meth:`ChartCore.draw` once
per frame on the thread that owns the figure's document (the kernel's loop for
a notebook widget, the Bokeh server's loop for a server session), and ships the
resulting document events its own way.

* **Coalescing.** A frame asks the subscription for the rows that arrived since
  the offset it last drew (``sub.rows_since``) and applies them as one
  ``ColumnDataSource.stream(..., rollover=window)`` per series. Keyed and
  replaced topics are redrawn in place (``source.data = ...``), categorical bars
  are ``patch``-ed when only their heights change.
* **Decimation.** A line, step or scatter series whose window holds more rows
  than its plot has pixel columns to show is drawn decimated
  (:mod:`livestream.views.decimate`): per pixel column the first, last, lowest
  and highest row and the first gap, the newest rows exactly, redrawn as
  ``source.data = ...`` so the browser's cost follows the pixels, not the rows.
  Zooming or panning (Bokeh's ``RangesUpdate`` event) redraws the visible range
  in detail from the window; a reset returns to the overview.
  ``decimate=False`` turns it off.
* **Binary columns.** x/y values are float64 (datetimes as epoch milliseconds),
  never JSON lists of numbers.
* **Stable colours.** The n-th value seen in a ``by=`` column gets the n-th
  palette colour, per process (see :func:`series_color`).
* **Spec.** :attr:`ChartCore.spec` describes the chart as JSON (topic, columns,
  kind, window, colours, model ids of the figure's sources) so a browser-side
  client can stream into the same figure's sources by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from bokeh.events import RangesUpdate, Reset
from bokeh.models import (
    ColumnDataSource,
    DatetimeTicker,
    DatetimeTickFormatter,
    FactorRange,
    GlyphRenderer,
    HoverTool,
    Legend,
    LegendItem,
    LinearColorMapper,
    Scatter,
)
from bokeh.palettes import Category10_10, Category20_20
from bokeh.plotting import figure

from .._compat.bokeh_validation import silence_missing_renderers
from .convert import is_datetime, to_float64, to_labels
from .decimate import DEFAULT_TAIL, POINTS_PER_BUCKET, SeriesDecimator
from .options import ChartOptions
from .title_fit import fit_title

#: Series colours, in the order they are handed out (Category10, then the rest of Category20).
PALETTE: tuple[str, ...] = tuple(Category10_10) + tuple(
    c for c in Category20_20 if c not in Category10_10
)
UP_COLOR = "#26a69a"
DOWN_COLOR = "#ef5350"
OFFSET_COLUMN = "__offset__"

#: How :func:`series_color` assigns colours (repeated in :attr:`ChartCore.spec`).
COLOR_RULE = ("per by-column, the n-th distinct value seen (as a string) gets "
              "palette[n % len(palette)]; a value keeps its colour for the process's lifetime")

SPEC_VERSION = 1

_UNSET: Any = object()

#: The name of a chart's hidden renderer that gives its auto ranges an extent while no
#: series holds a point (see :meth:`ChartCore._sync_empty_ranges`).
EMPTY_RANGES_NAME = "__empty_ranges__"

_colors: dict[tuple[str, str], str] = {}
_next_color: dict[str, int] = {}


def series_color(column: str | None, value: object) -> str:
    """A stable colour for one value of a ``by=`` column.

    The first value seen in a column gets the palette's first colour, the next the
    second, and so on: the same symbol keeps its colour across frames, charts,
    dashboard sessions and re-runs within a process.
    """
    col = column or ""
    key = (col, str(value))
    c = _colors.get(key)
    if c is None:
        i = _next_color.get(col, 0)
        _next_color[col] = i + 1
        c = _colors[key] = PALETTE[i % len(PALETTE)]
    return c


def assigned_colors(column: str | None) -> dict[str, str]:
    """The colours handed out so far for ``column``'s values (value → colour)."""
    col = column or ""
    return {v: c for (k, v), c in _colors.items() if k == col}


DATETIME_FORMATTER_KW: dict[str, Any] = {
    "milliseconds": "%H:%M:%S.%3N",
    "seconds": "%H:%M:%S",
    "minsec": "%H:%M:%S",
    "minutes": "%H:%M",
    "hourmin": "%H:%M",
    "hours": "%H:%M",
    "days": "%b %d",
    "months": "%b %Y",
    "years": "%Y",
}


@dataclass
class Series:
    """One drawn series: its key (``by`` value, y column or None), source and glyphs."""

    key: object
    source: ColumnDataSource
    renderers: list = field(default_factory=list)
    color: str | None = None


@dataclass
class CoreStats:
    """What a core counts itself (targets may pass their own object with a ``rows`` field)."""

    rows: int = 0


class ChartCore:
    """A Bokeh figure of one subscription and the code that draws its frames.

    Arguments are those of :meth:`Subscription.chart`, checked by
    :class:`~livestream.views.options.ChartOptions`. ``fps`` is only recorded (in
    :attr:`spec`); the target runs the frames. ``stats``: an object whose
    ``rows`` attribute counts the rows drawn (a :class:`ViewStats`).

    Not thread-safe by design: call :meth:`draw` and :meth:`set_status` only on
    the thread that owns the figure's document.
    """

    def __init__(self, sub: Any, x: str | None = None, y: str | Sequence[str] | None = None, *,
                 stats: Any = None, **options: Any) -> None:
        opts = ChartOptions.of(x, y, **options)
        #: the checked options (see :class:`~livestream.views.options.ChartOptions`)
        self.chart_options = opts
        #: the arguments this chart was made with (to make the same chart elsewhere)
        self.options: dict[str, Any] = opts.as_kwargs()
        x, by, kind, window, where = opts.x, opts.by, opts.kind, opts.window, opts.where
        ys = opts.ys
        self.sub = sub
        self.x = x
        self.ys = ys
        self.where: dict[str, set[str]] = {
            k: {str(v)} if isinstance(v, str) or not hasattr(v, "__iter__") else {str(i) for i in v}
            for k, v in (where or {}).items()
        }
        self.by = by
        self.kind = kind
        self.agg = opts.agg
        self.fps = float(opts.fps)
        self.stats = stats if stats is not None else CoreStats()
        #: the view-side filters to follow (``columns`` and ``epoch``, a
        #: :class:`~livestream.client.subscription.ViewFilters`): the subscription's by
        #: default; a dashboard session puts its own here
        self.filters: Any = getattr(sub, "view_filters", None)
        self._window = int(window or getattr(sub, "window", None) or 10_000)
        self._bar_width = opts.bar_width
        self._size = opts.size
        self._line_width = opts.line_width
        self._color = opts.color
        self._series: dict[object, Series] = {}
        self._offset: int | None = None
        self._seen_version = -1
        self._dirty = True
        self._filter_epoch = 0
        self.title_base = opts.title or self._default_title(sub)
        self._status = ""
        self._x_dt = self._x_cat = False
        self._schema_checked = False
        self._seen_gaps = getattr(getattr(sub, "stats_data", None), "gaps", 0)
        #: pixel columns of a decimated series (0: every row is drawn)
        self.buckets = opts.buckets if kind in ("line", "step", "scatter") else 0
        self._decim: dict[object, SeriesDecimator] = {}
        #: the x range the user zoomed or panned to (None: the overview)
        self.zoom: tuple[float, float] | None = None
        self._zoom_drawn: dict[object, tuple[float, float] | None] = {}
        # series key → (decimator generation, settled points in its source, last settled row)
        self._sent: dict[object, tuple[int, int, int]] = {}

        fig_kw: dict[str, Any] = {
            "height": opts.height,
            "title": self.title_base,
            "tools": "pan,wheel_zoom,box_zoom,reset,save",
            "toolbar_location": "right",
        }
        if opts.width is None:
            fig_kw["sizing_mode"] = "stretch_width"
        else:
            fig_kw["width"] = opts.width
        x_type = self._x_type(sub)
        if x_type == "datetime":
            fig_kw["x_axis_type"] = "datetime"
            self._x_dt = True
        elif x_type == "categorical":
            fig_kw["x_range"] = FactorRange()
            self._x_cat = True
        fig_kw.update(opts.figure)
        self.figure = figure(**fig_kw)
        silence_missing_renderers(self.figure)  # its renderers come with the first series
        fit_title(self.figure)  # a long status wraps instead of being cut (title_fit.py)
        #: the title's own colour, read at the first status (a document theme applies by
        #: then); a status that is not bad shows in it
        self._title_color: Any = _UNSET
        # An auto range (DataRange1d) without data has NaN bounds, and BokehJS logs
        # "could not set initial ranges" at each paint until data comes: every live chart
        # did. A hidden renderer holds two points while no series holds one (their extent
        # is the empty chart's axes); emptied when data comes, so the ranges follow the
        # data alone and zoom, pan and reset work as before (docs/decisions.md).
        now = float(np.floor(pd.Timestamp.now().value / 1e9)) * 1000.0
        self._empty_extent = {
            "px": np.array([now - 60_000.0, now] if self._x_dt else [0.0, 1.0]),
            "py": np.array([0.0, 1.0]),
        }
        #: the source of the hidden renderer of :data:`EMPTY_RANGES_NAME`
        self.empty_ranges = ColumnDataSource(data=dict(self._empty_extent))
        self._empty_renderer = GlyphRenderer(
            data_source=self.empty_ranges, glyph=Scatter(x="px", y="py", size=0),
            visible=False, name=EMPTY_RANGES_NAME)
        self.figure.renderers.append(self._empty_renderer)
        self._empty_shown = True
        # The browser recomputes a live chart's auto-ranges on every frame and the plot's
        # inner size whenever its tick labels change width, and would push each change
        # back (to a Bokeh server session, or to the kernel as comm messages). Nothing
        # reads them, and the echo queues ahead of the user's own actions (a dashboard's
        # Pause click waited behind it; docs/decisions.md).
        for model in (self.figure, self.figure.x_range, self.figure.y_range):
            model.syncable = False
        if self._x_dt:
            self.figure.xaxis.formatter = DatetimeTickFormatter(**DATETIME_FORMATTER_KW)
        if x is not None:
            self.figure.xaxis.axis_label = x
        if len(ys) == 1 and kind != "candlestick":
            self.figure.yaxis.axis_label = ys[0]
        self.legend: Legend | None = None
        # a candlestick's four columns are one series: no legend unless by= splits it
        if by is not None or (len(ys) > 1 and kind != "candlestick"):
            self.legend = Legend(items=[], location="top_left", click_policy="hide")
            self.figure.add_layout(self.legend)
        if opts.tooltips and self._x_cat:
            ylab = self.ys[0] if self.ys else "count"
            self.figure.add_tools(HoverTool(tooltips=[(x or "", "@x"), (ylab, "@y")]))
        elif opts.tooltips:
            xfmt = "@x{%F %H:%M:%S.%3N}" if self._x_dt else "@x"
            tips = [(x or "offset", xfmt)]
            if kind == "candlestick":
                tips += [(c, f"@{{{c}}}") for c in ("open", "high", "low", "close")]
            else:
                tips += [("y", "@y"), ("series", "$name")]
            self.figure.add_tools(
                HoverTool(tooltips=tips, formatters={"@x": "datetime"} if self._x_dt else {})
            )
        if self.buckets and not self._x_cat:
            self.figure.on_event(RangesUpdate, self._on_ranges)
            self.figure.on_event(Reset, self._on_reset)
        self.quiet()

    def quiet(self) -> None:
        """Keep browser-side changes in the browser: every model of the figure is
        ``syncable=False``. A legend click (a renderer's ``visible``) or a tool toggled
        would otherwise be sent back to Python, where nothing reads them; in a
        notebook whose kernel restarted, jupyter_bokeh's send then throws "Cannot
        send" in the page. Called again for the models of each new series."""
        for model in self.figure.references():
            # data sources are left as they are: the browser never edits them here
            if model.syncable and not isinstance(model, ColumnDataSource):
                model.syncable = False

    # -- construction helpers -------------------------------------------------------------

    def _default_title(self, sub: Any) -> str:
        name = getattr(sub, "name", "")
        what = ", ".join(self.ys) if self.ys else "count"
        if self.kind == "candlestick":
            what = "OHLC"
        s = f"{name}: {what}"
        if self.by:
            s += f" by {self.by}"
        if self.kind == "bar" and self.x:
            s += f" per {self.x}"
        return s

    def _x_type(self, sub: Any) -> str:
        if self.x is None:
            return "linear"
        schema = getattr(sub, "schema", None)
        if schema is not None:
            try:
                t = schema.type_of(self.x)
            except KeyError:
                raise ValueError(f"no column {self.x!r} in {schema.names}") from None
            if t.startswith("datetime64"):
                return "datetime"
            if t in ("string", "category", "bool", "boolean"):
                return "categorical"
            return "linear"
        # no schema yet: guess from the kind and the column name
        if self.kind == "bar":
            return "categorical"
        if self.kind == "candlestick" or self.x.lower() in ("ts", "time", "timestamp", "t", "date"):
            return "datetime"
        return "linear"

    # -- window -------------------------------------------------------------------------

    @property
    def window(self) -> int:
        """Points kept per series (older points roll over). Settable; redraws."""
        return self._window

    @window.setter
    def window(self, n: int) -> None:
        if n < 1:
            raise ValueError("window must be a positive number of points")
        self._window = int(n)
        self._decim.clear()
        self._sent.clear()
        self.redraw()

    def redraw(self) -> None:
        """Redraw everything from the subscription's current window at the next frame."""
        self._dirty = True

    # -- spec -----------------------------------------------------------------------------

    @property
    def x_type(self) -> str:
        """``datetime`` (x in epoch milliseconds), ``categorical``, ``linear`` or
        ``offset`` (no x column: the row offset)."""
        if self.x is None:
            return "offset"
        return "datetime" if self._x_dt else "categorical" if self._x_cat else "linear"

    @property
    def replace_mode(self) -> bool:
        """Whether the chart redraws its whole table each frame (keyed/replaced topics)."""
        sub = self.sub
        return bool(getattr(sub, "key", ())) or getattr(sub, "mode", None) in ("keyed", "replace")

    @property
    def columns(self) -> list[str]:
        """The columns of every series' ColumnDataSource."""
        if self.kind == "bar" and self._x_cat:
            return ["x", "y", "color"]
        if self.kind == "candlestick":
            return ["x", "open", "high", "low", "close", "inc"]
        return ["x", "y"]

    @property
    def spec(self) -> dict[str, Any]:
        """This chart as JSON-able data, for a client that streams into the same figure.

        Keys: ``version``, ``topic``, ``x``, ``y`` / ``ys``, ``by``, ``kind``,
        ``window``, ``fps``, ``ohlc`` (candlestick column names, else None),
        ``agg``, ``where`` (column → allowed values), ``x_type`` (``datetime``:
        x is epoch milliseconds of the wall-clock time; ``offset``: x is the row
        offset), ``mode`` (``append``: ``source.stream(rows, rollover=window)``;
        ``replace``: ``source.data = table``), ``columns`` (each source's
        columns; ``inc`` is 1.0 when close ≥ open), ``palette``, ``colors`` (the
        colours already assigned to ``by`` values), ``next_color`` (palette index
        of the next new value), ``color_rule``, ``color`` (single-series colour),
        ``up_color``/``down_color``, ``series`` (key → ids of its source and
        renderers, and its colour; the key of a single series is ``""``),
        ``figure``/``legend`` (model ids), ``title``, glyph sizes, ``decimate``
        (pixel columns a series is decimated to, 0: off) and ``decimate_tail``
        (newest rows always drawn exactly).
        """
        color_col = self.by if self.by is not None else ("__y__" if len(self.ys) > 1 else None)
        if self.kind == "bar" and self._x_cat:
            color_col = self.x
        colors = assigned_colors(color_col) if color_col is not None else {}
        return {
            "version": SPEC_VERSION,
            "topic": getattr(self.sub, "name", None),
            "x": self.x,
            "y": self.ys[0] if len(self.ys) == 1 else list(self.ys),
            "ys": list(self.ys),
            "by": self.by,
            "kind": self.kind,
            "window": self._window,
            "fps": self.fps,
            "ohlc": list(self.ys) if self.kind == "candlestick" else None,
            "agg": self.agg,
            "where": {k: sorted(v) for k, v in self.where.items()},
            "x_type": self.x_type,
            "mode": "replace" if (self.replace_mode or (self.kind == "bar" and self._x_cat))
                    else "append",
            "columns": self.columns,
            "palette": list(PALETTE),
            "color_column": color_col,
            "colors": colors,
            "next_color": _next_color.get(color_col or "", 0) if color_col is not None else 0,
            "color_rule": COLOR_RULE,
            "color": self._color or PALETTE[0],
            "up_color": UP_COLOR,
            "down_color": DOWN_COLOR,
            "series": {
                ("" if k is None else str(k)): {
                    "source": s.source.id,
                    "renderers": [r.id for r in s.renderers],
                    "color": s.color,
                }
                for k, s in self._series.items()
            },
            "figure": self.figure.id,
            "legend": self.legend.id if self.legend is not None else None,
            "title": self.title_base,
            "line_width": self._line_width,
            "size": self._size,
            "bar_width": self._bar_width,
            "decimate": self.buckets if self.decimating else 0,
            "decimate_tail": DEFAULT_TAIL,
        }

    # -- status -------------------------------------------------------------------------

    def status_text(self, paused: bool = False, last_error: str | None = None
                    ) -> tuple[str, bool]:
        """The condition shown in the title (paused, closed, state, gaps, errors), and
        whether it is bad."""
        sub = self.sub
        parts: list[str] = []
        bad = False
        if paused:
            parts.append("paused")
        if getattr(sub, "closed", False):
            parts.append("closed")
            bad = True
        else:
            state = getattr(getattr(sub, "stats_data", None), "state", None)
            if state and state not in ("live", "connecting"):
                parts.append(state)
                bad = bad or state in ("reconnecting", "closed", "error")
        gaps = getattr(getattr(sub, "stats_data", None), "gaps", 0) - self._seen_gaps
        if gaps > 0:
            parts.append(f"⚠ {gaps} gap{'s' if gaps > 1 else ''}: rows lost, redrawn from snapshot")
            bad = True
        if last_error:
            parts.append(f"⚠ {last_error}")
            bad = True
        return " · ".join(parts), bad

    def set_status(self, text: str, bad: bool = False) -> None:
        """Show ``text`` after the title (red when ``bad``); no event if unchanged."""
        if text == self._status:
            return
        self._status = text
        t = self.figure.title
        if self._title_color is _UNSET:
            self._title_color = t.text_color
        t.text = f"{self.title_base} — {text}" if text else self.title_base
        # never None: BokehJS gives a title without a colour no room, and later paints the
        # red status into that zero-height panel, cut off above the plot
        t.text_color = DOWN_COLOR if bad else self._title_color

    # -- frames -------------------------------------------------------------------------

    def draw(self, paused: bool = False, last_error: str | None = None) -> None:
        """One frame: update the status line, then (unless ``paused``) the data."""
        self.set_status(*self.status_text(paused, last_error))
        if not paused:
            self.update_data()
        self._draw_zoom()

    # -- decimation and zoom ------------------------------------------------------------

    @property
    def decimating(self) -> bool:
        """Whether this chart draws decimated series (see :mod:`~livestream.views.decimate`)."""
        return bool(self.buckets) and not self._x_cat and not self.replace_mode

    def _on_ranges(self, event: Any) -> None:
        """The user zoomed or panned (Bokeh ``RangesUpdate``): draw that x range in detail,
        or the overview again when the range covers the whole window."""
        x0, x1 = getattr(event, "x0", None), getattr(event, "x1", None)
        if not isinstance(x0, (int, float)) or not isinstance(x1, (int, float)):
            return
        x0, x1 = float(min(x0, x1)), float(max(x0, x1))
        exts = [e for e in (d.extent() for d in self._decim.values()) if e is not None]
        if not exts:
            return
        lo, hi = min(e[0] for e in exts), max(e[1] for e in exts)
        self.zoom = None if (x0 <= lo and x1 >= hi) else (x0, x1)

    def _on_reset(self, event: Any = None) -> None:
        """The reset tool: back to the overview."""
        self.zoom = None

    def _draw_view(self, key: object, d: SeriesDecimator, series: Series | None) -> None:
        """Draw series ``key``'s decimated view: the zoomed range in detail, or the overview."""
        self._zoom_drawn[key] = self.zoom
        if self.zoom is not None:
            self._sent.pop(key, None)
            x, y = d.detail(*self.zoom)
            self._set_data(key, series, {"x": x, "y": y})
            return
        self._draw_overview(key, d, series)

    def _set_data(self, key: object, series: Series | None, data: dict[str, Any]) -> None:
        if series is None:
            self.add_series(key, data)
        else:
            series.source.data = data

    def _draw_overview(self, key: object, d: SeriesDecimator, series: Series | None) -> None:
        """The overview, kept as [settled points][volatile points] in the source: a frame
        patches the volatile part (a fixed number of points: the exact newest rows and the
        picks of the bucket before them, padded by repeating the last point, which draws
        nothing) and streams the points of newly settled buckets, rolling over those whose
        rows left the window. What a frame sends is bounded by the rows that arrived, not
        by the window; a full redraw happens when the bucket grid is chosen again."""
        parts = d.stream_parts()
        if parts is None:
            self._sent.pop(key, None)
            x, y = d.overview()
            self._set_data(key, series, {"x": x, "y": y})
            return
        gen, settled, vol = parts
        k = d.tail + POINTS_PER_BUCKET
        if len(vol) == 0:
            vol = np.asarray([len(d) - 1], dtype=np.int64)
        vol = np.concatenate([vol[:k], np.full(max(0, k - len(vol)), vol[-1], dtype=np.int64)])
        first = d.first_row
        last_settled = int(settled[-1]) + first if len(settled) else -1
        sent = self._sent.get(key)
        xs, ys = d.x, d.y
        if series is None or sent is None or sent[0] != gen:
            rows = np.concatenate([settled, vol])
            self._set_data(key, series, {"x": xs[rows], "y": ys[rows]})
            self._sent[key] = (gen, len(settled), last_settled)
            return
        _, n_settled, last_sent = sent
        new = settled[settled + first > last_sent]
        region = np.concatenate([new, vol])
        rx, ry = xs[region], ys[region]
        n = n_settled + k
        series.source.patch({"x": [(slice(n - k, n), rx[:k])], "y": [(slice(n - k, n), ry[:k])]})
        if len(new):
            series.source.stream({"x": rx[k:], "y": ry[k:]}, rollover=len(settled) + k)
            self._sent[key] = (gen, len(settled), last_settled)

    def _draw_zoom(self) -> None:
        """Redraw the series whose drawn range is not the current zoom."""
        if not self._decim:
            return
        for key, d in self._decim.items():
            if self._zoom_drawn.get(key) == self.zoom:
                continue
            series = self._series.get(key)
            if series is None:
                continue
            if self.zoom is None and not d.decimating():
                series.source.data = {"x": d.x.copy(), "y": d.y.copy()}
                self._zoom_drawn[key] = None
            else:
                self._sent.pop(key, None)
                self._draw_view(key, d, series)

    def update_data(self) -> None:
        """Apply what the subscription received since the last frame."""
        self._update_data()
        self._sync_empty_ranges()

    def _empty_renderer_last(self) -> None:
        """Keep the hidden ranges renderer after the series' own (``figure.renderers[0]``
        is the first series' glyph, as on a plain figure)."""
        rs = self.figure.renderers
        if rs and rs[-1] is not self._empty_renderer:
            self.figure.renderers = [r for r in rs if r is not self._empty_renderer] + [
                self._empty_renderer]

    def _sync_empty_ranges(self) -> None:
        """Give the hidden ranges renderer its two points while no series holds one, and
        none once one does (one change each time the chart becomes empty or not)."""
        empty = not any(len(s.source.data.get("x", ())) for s in self._series.values())
        if empty == self._empty_shown:
            return
        self._empty_shown = empty
        self.empty_ranges.data = (dict(self._empty_extent) if empty
                                  else {k: np.empty(0) for k in self._empty_extent})

    def _update_data(self) -> None:
        sub = self.sub
        if getattr(sub, "closed", False):
            return
        version = sub.version
        filt_epoch = self.filters.epoch if self.filters is not None else 0
        if filt_epoch != self._filter_epoch:
            self._filter_epoch = filt_epoch
            self._dirty = True
        if version == self._seen_version and not self._dirty:
            return
        if self.kind == "bar" and self._x_cat:
            self._seen_version = version
            self._dirty = False
            self._draw_bars(sub.df)
            return
        if self.replace_mode:
            self._seen_version = version
            self._dirty = False
            df = sub.df
            if df is None or len(df.columns) == 0:
                return
            self.stats.rows += len(df)
            if self.x is not None and not self._x_cat and len(df):
                df = df.sort_values(self.x, kind="stable")
            self._draw_frame(df, None, reset=True)
            return
        frame, end, reset = sub.rows_since(None if self._dirty else self._offset)
        self._seen_version = version
        self._dirty = False
        self._offset = end
        if frame is None:
            return
        self.stats.rows += len(frame)
        if not reset and len(frame) == 0:
            return
        self._draw_frame(frame, end, reset=reset)

    # -- drawing ------------------------------------------------------------------------

    def _filtered(self, df: pd.DataFrame) -> pd.DataFrame:
        shown = self.filters.columns if self.filters is not None else {}
        filters = {**shown, **self.where}
        if not filters or len(df) == 0:
            return df
        mask = np.ones(len(df), dtype=bool)
        for col, allowed in filters.items():
            if col in df.columns and allowed is not None:
                mask &= df[col].astype(str).isin(allowed).to_numpy()
        return df.loc[mask] if not mask.all() else df

    def _columns(self, df: pd.DataFrame, ycol: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"x": to_float64(df[self.x or OFFSET_COLUMN])}
        if self.kind == "candlestick":
            o, h, lo, c = (to_float64(df[col]) for col in self.ys)
            data.update(open=o, high=h, low=lo, close=c)
            data["inc"] = (c >= o).astype(np.float64)
        else:
            data["y"] = to_float64(df[ycol if ycol is not None else self.ys[0]])
        return data

    def _draw_frame(self, frame: pd.DataFrame, end: int | None, *, reset: bool) -> None:
        if not self._schema_checked and len(frame.columns):
            missing = [c for c in [self.x, self.by, *self.ys] if c and c not in frame.columns]
            if missing:
                raise ValueError(f"no column {missing[0]!r} in {list(frame.columns)}")
            self._schema_checked = True
            if self.x is not None and not self._x_dt and is_datetime(frame[self.x]):
                axis = self.figure.xaxis[0]
                axis.ticker = DatetimeTicker()
                axis.formatter = DatetimeTickFormatter(**DATETIME_FORMATTER_KW)
                self._x_dt = True
        if self.x is None:
            n = len(frame)
            start = 0 if end is None else end - n
            frame = frame.assign(**{OFFSET_COLUMN: np.arange(start, start + n, dtype=np.float64)})
        frame = self._filtered(frame)
        w = self._window
        parts: list[tuple[object, str | None, pd.DataFrame]] = []
        if self.by is not None and self.by in frame.columns:
            codes, uniques = pd.factorize(frame[self.by], sort=False)
            for i, key in enumerate(uniques):
                parts.append((key, None, frame.loc[codes == i]))
        elif len(self.ys) > 1 and self.kind != "candlestick":
            for ycol in self.ys:
                parts.append((ycol, ycol, frame))
        else:
            parts.append((None, self.ys[0] if self.ys else None, frame))
        decimating = self.decimating
        if reset:
            drawn = {key for key, _, _ in parts}
            for key, s in self._series.items():
                if key not in drawn and len(s.source.data.get("x", ())):
                    s.source.data = {k: np.empty(0) for k in s.source.data}
                if key not in drawn and key in self._decim:
                    self._decim[key].clear()
        for key, ycol, part in parts:
            if len(part) > w:
                part = part.iloc[len(part) - w:]
            data = self._columns(part, ycol)
            series = self._series.get(key)
            if decimating:
                d = self._decim.get(key)
                if d is None:
                    d = self._decim[key] = SeriesDecimator(w, self.buckets, DEFAULT_TAIL)
                if reset:
                    d.clear()
                d.append(data["x"], data["y"])
                if d.decimating() or self.zoom is not None:
                    if (not reset and self.zoom is not None and series is not None
                            and self._zoom_drawn.get(key) == self.zoom and len(data["x"])
                            and data["x"][0] > self.zoom[1]):
                        continue  # the new rows are right of the zoomed range: nothing to draw
                    self._draw_view(key, d, series)
                    continue
                self._zoom_drawn[key] = None
                self._sent.pop(key, None)
            if series is None:
                self.add_series(key, data)
                continue
            if reset:
                series.source.data = data
            else:
                series.source.stream(data, rollover=w)
        self._maybe_bar_width()

    def _maybe_bar_width(self) -> None:
        if self.kind not in ("candlestick", "bar") or self._bar_width is not None:
            return
        for s in self._series.values():
            xs = np.asarray(s.source.data.get("x", []), dtype=np.float64)
            if len(xs) >= 2:
                d = np.diff(np.unique(xs[np.isfinite(xs)]))
                if len(d):
                    self._bar_width = float(np.median(d)) * 0.7
                    for other in self._series.values():
                        for r in other.renderers:
                            if hasattr(r.glyph, "width"):
                                r.glyph.width = self._bar_width
                    return

    def series_color_of(self, key: object) -> str:
        """The colour series ``key`` gets (stable, see :func:`series_color`)."""
        if self.by is not None:
            return series_color(self.by, key)
        if len(self.ys) > 1:
            return series_color("__y__", key)
        return self._color or PALETTE[0]

    def add_series(self, key: object, data: dict[str, Any] | None = None) -> Series:
        """Add the source and glyphs of series ``key`` (empty unless ``data``).

        Frames add series as keys appear; a static page may add the keys it
        expects up front so that its browser-side client finds their sources.
        """
        existing = self._series.get(key)
        if existing is not None:
            return existing
        if data is None:
            data = {c: np.empty(0) for c in self.columns if c != "color"}
        fig = self.figure
        source = ColumnDataSource(data=data)
        color = self.series_color_of(key)
        name = "" if key is None else str(key)
        renderers = []
        if self.kind == "line":
            renderers.append(fig.line("x", "y", source=source, color=color,
                                      line_width=self._line_width, name=name))
        elif self.kind == "step":
            renderers.append(fig.step("x", "y", source=source, color=color, mode="after",
                                      line_width=self._line_width, name=name))
        elif self.kind == "scatter":
            renderers.append(fig.scatter("x", "y", source=source, color=color, size=self._size,
                                         alpha=0.8, name=name))
        elif self.kind == "bar":
            width = self._bar_width or 0.8
            renderers.append(fig.vbar(x="x", top="y", width=width, source=source, color=color,
                                      name=name))
        else:  # candlestick
            mapper = LinearColorMapper(palette=[DOWN_COLOR, UP_COLOR], low=0, high=1)
            cmap = {"field": "inc", "transform": mapper}
            width = self._bar_width or 1.0
            renderers.append(fig.segment("x", "high", "x", "low", source=source, color=cmap,
                                         name=name))
            renderers.append(fig.vbar(x="x", width=width, top="open", bottom="close",
                                      source=source, fill_color=cmap, line_color=cmap, name=name))
        self._empty_renderer_last()
        series = Series(key, source, renderers, color)
        self._series[key] = series
        if self.legend is not None:
            self.legend.items = [*self.legend.items, LegendItem(label=name, renderers=renderers)]
        self.quiet()
        return series

    def _draw_bars(self, df: pd.DataFrame) -> None:
        """Categorical bars: one bar per x value (keyed rows, or an aggregate of the window)."""
        if df is None or len(df.columns) == 0 or self.x not in df.columns:
            return
        df = self._filtered(df)
        self.stats.rows += len(df)
        x = self.x
        assert x is not None
        if self.replace_mode and self.agg == "last":
            table = df[[x, self.ys[0]]].drop_duplicates(subset=[x], keep="last")
            labels = to_labels(table[x])
            values = to_float64(table[self.ys[0]])
        else:
            g = df.groupby(df[x].astype(str), sort=False, observed=True)
            agg = g.size() if self.agg == "count" else g[self.ys[0]].agg(self.agg)
            labels = [str(v) for v in agg.index]
            values = agg.to_numpy(dtype=np.float64, na_value=np.nan)
        order = sorted(range(len(labels)), key=lambda i: labels[i])
        labels = [labels[i] for i in order]
        values = values[order] if len(order) else np.empty(0)
        colors = [series_color(x, v) for v in labels]
        data = {"x": labels, "y": values, "color": colors}
        fr = self.figure.x_range
        if isinstance(fr, FactorRange) and list(fr.factors) != labels:
            fr.factors = labels
        series = self._series.get(None)
        if series is None:
            source = ColumnDataSource(data=data)
            r = self.figure.vbar(x="x", top="y", width=0.8, source=source, color="color")
            self._series[None] = Series(None, source, [r], None)
            self._empty_renderer_last()
            self.figure.y_range.start = 0
            self.quiet()
            return
        old = series.source.data
        if list(old.get("x", [])) == labels:
            if not np.array_equal(np.asarray(old["y"]), values, equal_nan=True):
                series.source.patch({"y": [(slice(0, len(labels)), values)]})
        else:
            series.source.data = data

    # -- reading and release --------------------------------------------------------------

    @property
    def sources(self) -> dict[object, ColumnDataSource]:
        """Series key (``by`` value, y column, or None) → its ColumnDataSource."""
        return {k: s.source for k, s in self._series.items()}

    @property
    def series(self) -> dict[object, Series]:
        """Series key → :class:`Series` (source, renderers, colour)."""
        return dict(self._series)

    def points(self) -> int:
        """Points currently held by the chart's data sources (all series)."""
        return sum(len(s.source.data.get("x", ())) for s in self._series.values())

    def release(self) -> None:
        """Empty the sources and forget the series (the chart is done)."""
        try:
            for s in self._series.values():
                s.source.data = {}
        except Exception:  # interpreter shutdown (Widget.__del__): nothing to release
            pass
        self._series.clear()
        self._decim.clear()
        self._sent.clear()
        self.sub = None
