"""Live Bokeh charts of a subscription, as ipywidgets (jupyter_bokeh's ``BokehModel``).

How a chart keeps up with any input rate without flooding the notebook:

* **Coalescing.** A :class:`LiveChart` does not react to messages. At most
  ``fps`` times a second (default 20) its frame timer, on the kernel's loop, asks
  the subscription for the rows that arrived since the offset it last drew
  (``sub.rows_since``) and applies them as one ``ColumnDataSource.stream(...,
  rollover=window)`` per series. Keyed and replaced topics are redrawn in place
  (``source.data = ...``), not appended.
* **One message per frame.** jupyter_bokeh sends every document event as its own
  Bokeh protocol message, each split into ``3 + 2 × buffers`` comm messages. A
  chart collects the events of one frame (all series, title, legend) into one
  ``PATCH-DOC`` message whose arrays travel inline as base64 binary (Bokeh's
  ``ndarray`` encoding, the one its standalone pages use), which is exactly 3
  comm messages a frame however many series or columns change. At the default
  20 fps a chart costs at most 60 iopub messages a second (Jupyter's server
  drops messages above 1000/s).
* **Binary columns.** x/y values are sent as float64 (datetimes as epoch
  milliseconds), never as JSON lists of numbers.

A chart shows its subscription's condition in its title (paused, reconnecting,
closed, gaps, errors). Closing it (or re-running the cell that created it)
stops its timer and releases its buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from bokeh.core.serialization import Serializer
from bokeh.document.json import PatchJson
from bokeh.models import (
    ColumnDataSource,
    DatetimeTicker,
    DatetimeTickFormatter,
    FactorRange,
    HoverTool,
    Legend,
    LegendItem,
    LinearColorMapper,
)
from bokeh.palettes import Category10_10, Category20_20
from bokeh.plotting import figure
from bokeh.protocol.messages.patch_doc import patch_doc
from jupyter_bokeh import BokehModel

from ._runtime import on_loop
from ._view import LiveView, ViewStats
from .convert import is_datetime, to_float64, to_labels
from .loader import load_bokehjs

ChartKind = Literal["line", "scatter", "step", "bar", "candlestick"]
KINDS: tuple[str, ...] = ("line", "scatter", "step", "bar", "candlestick")

PALETTE: tuple[str, ...] = tuple(Category10_10) + tuple(
    c for c in Category20_20 if c not in Category10_10
)
UP_COLOR = "#26a69a"
_OFFSET = "__offset__"
DOWN_COLOR = "#ef5350"

_colors: dict[tuple[str, str], str] = {}
_next_color: dict[str, int] = {}


def series_color(column: str | None, value: object) -> str:
    """A stable colour for one value of a ``by=`` column.

    The first value seen in a column gets the palette's first colour, the next the
    second, and so on: the same symbol keeps its colour across frames, charts and
    re-runs within a kernel.
    """
    col = column or ""
    key = (col, str(value))
    c = _colors.get(key)
    if c is None:
        i = _next_color.get(col, 0)
        _next_color[col] = i + 1
        c = _colors[key] = PALETTE[i % len(PALETTE)]
    return c


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
class _Series:
    key: object
    source: ColumnDataSource
    renderers: list = field(default_factory=list)


class LiveChart(BokehModel, LiveView):
    """A live Bokeh chart of a subscription; an ipywidget (``BokehModel``).

    Create one with :meth:`Subscription.chart`. Display it, or put it in an
    ipywidgets layout (``VBox``, ``HBox``, ``Tab``). Attributes: ``figure`` (the
    Bokeh figure; style it freely), ``sources`` (series key → ColumnDataSource),
    ``window``, ``fps``, ``view_stats`` (frames, rows, comm messages).
    """

    def __init__(
        self,
        sub: Any,
        x: str | None = None,
        y: str | Sequence[str] | None = None,
        *,
        by: str | None = None,
        kind: ChartKind = "line",
        window: int | None = None,
        fps: float = 20,
        title: str | None = None,
        height: int = 300,
        width: int | None = None,
        ohlc: Sequence[str] = ("open", "high", "low", "close"),
        agg: str = "last",
        bar_width: float | None = None,
        size: float = 6,
        line_width: float = 2,
        color: str | None = None,
        tooltips: bool = True,
        where: dict[str, Any] | None = None,
        start: bool = True,
        **figure_kw: Any,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if window is not None and window < 1:
            raise ValueError("window must be a positive number of points")
        if kind == "candlestick":
            if len(ohlc) != 4:
                raise ValueError("ohlc= names the open, high, low and close columns")
            ys: list[str] = list(ohlc)
        elif kind == "bar" and agg == "count":
            ys = []
        else:
            if y is None:
                raise ValueError(f"a {kind} chart needs y=")
            ys = [y] if isinstance(y, str) else list(y)
            if by is not None and len(ys) > 1:
                raise ValueError("use either by= or several y columns, not both")
        self.x = x
        self.ys = ys
        self.where = {
            k: {str(v)} if isinstance(v, str) or not hasattr(v, "__iter__") else {str(i) for i in v}
            for k, v in (where or {}).items()
        }
        self.by = by
        self.kind = kind
        self.agg = agg
        self._window = int(window or getattr(sub, "window", None) or 10_000)
        self._bar_width = bar_width
        self._size = size
        self._line_width = line_width
        self._color = color
        self._series: dict[object, _Series] = {}
        self._offset: int | None = None
        self._seen_version = -1
        self._dirty = True
        self._held: list | None = None
        self._title_base = title or self._default_title(sub)
        self._status = ""
        self._x_dt = self._x_cat = False
        self._schema_checked = False
        self._seen_gaps = getattr(getattr(sub, "stats_data", None), "gaps", 0)
        self._view_init(sub, fps)

        fig_kw: dict[str, Any] = {
            "height": height,
            "title": self._title_base,
            "tools": "pan,wheel_zoom,box_zoom,reset,save",
            "toolbar_location": "right",
        }
        if width is None:
            fig_kw["sizing_mode"] = "stretch_width"
        else:
            fig_kw["width"] = width
        x_type = self._x_type(sub)
        if x_type == "datetime":
            fig_kw["x_axis_type"] = "datetime"
            self._x_dt = True
        elif x_type == "categorical":
            fig_kw["x_range"] = FactorRange()
            self._x_cat = True
        fig_kw.update(figure_kw)
        self.figure = figure(**fig_kw)
        if self._x_dt:
            self.figure.xaxis.formatter = DatetimeTickFormatter(**DATETIME_FORMATTER_KW)
        if x is not None:
            self.figure.xaxis.axis_label = x
        if len(ys) == 1 and kind != "candlestick":
            self.figure.yaxis.axis_label = ys[0]
        self._legend: Legend | None = None
        if by is not None or len(ys) > 1:
            self._legend = Legend(items=[], location="top_left", click_policy="hide")
            self.figure.add_layout(self._legend)
        if tooltips and self._x_cat:
            ylab = self.ys[0] if self.ys else "count"
            self.figure.add_tools(HoverTool(tooltips=[(x or "", "@x"), (ylab, "@y")]))
        elif tooltips:
            xfmt = "@x{%F %H:%M:%S.%3N}" if self._x_dt else "@x"
            tips = [(x or "offset", xfmt)]
            if kind == "candlestick":
                tips += [(c, f"@{{{c}}}") for c in ("open", "high", "low", "close")]
            else:
                tips += [("y", "@y"), ("series", "$name")]
            self.figure.add_tools(
                HoverTool(tooltips=tips, formatters={"@x": "datetime"} if self._x_dt else {})
            )
        load_bokehjs()
        super().__init__(self.figure)
        if start:
            self._start()

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
        self.redraw()

    def redraw(self) -> None:
        """Redraw everything from the subscription's current window at the next frame."""
        self._dirty = True

    # -- transport: one PATCH-DOC per frame -----------------------------------------------

    def _document_patched(self, event: Any) -> None:  # called by the Bokeh document
        if event.setter is self:
            return
        if self._held is not None:
            self._held.append(event)
            return
        self._send_events([event])

    def _send_events(self, events: list) -> None:
        doc = events[0].document
        serializer = Serializer(references=doc.models.synced_references, deferred=False)
        patch_json = PatchJson(events=serializer.encode(events))
        doc.models.flush_synced(lambda model: not serializer.has_ref(model))
        msg = patch_doc(patch_doc.create_header(), {}, patch_json)
        self.send({"msg": "patch", "payload": msg.header_json})
        self.send({"msg": "patch", "payload": msg.metadata_json})
        self.send({"msg": "patch", "payload": msg.content_json})
        self.view_stats.comm_messages += 3

    @contextmanager
    def _frame_events(self):
        """Collect the document events of one frame and send them as one message."""
        self._held = []
        try:
            yield
        finally:
            events, self._held = self._held, None
            if events:
                self._send_events(events)

    def _sync_model(self, model: Any, content: dict, buffers: list) -> None:
        # browser → kernel (range changes, tool events): may arrive on a subshell thread
        on_loop(self.loop, BokehModel._sync_model, self, model, content, buffers)

    # -- frames -------------------------------------------------------------------------

    def _draw(self) -> bool:
        with self._frame_events():
            self._update_status()
            if not self.paused:
                self._update_data()
            return bool(self._held)

    def _status_text(self) -> tuple[str, bool]:
        sub = self.sub
        parts: list[str] = []
        bad = False
        if self.paused:
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
        if self.view_stats.last_error:
            parts.append(f"⚠ {self.view_stats.last_error}")
            bad = True
        return " · ".join(parts), bad

    def _update_status(self) -> None:
        text, bad = self._status_text()
        if text == self._status:
            return
        self._status = text
        t = self.figure.title
        t.text = f"{self._title_base} — {text}" if text else self._title_base
        t.text_color = DOWN_COLOR if bad else None

    def _replace_mode(self) -> bool:
        sub = self.sub
        return bool(getattr(sub, "key", ())) or getattr(sub, "mode", None) in ("keyed", "replace")

    def _update_data(self) -> None:
        sub = self.sub
        if getattr(sub, "closed", False):
            return
        version = sub.version
        filt_epoch = getattr(sub, "_ls_filter_epoch", 0)
        if filt_epoch != getattr(self, "_filter_epoch", 0):
            self._filter_epoch = filt_epoch
            self._dirty = True
        if version == self._seen_version and not self._dirty:
            return
        if self.kind == "bar" and self._x_cat:
            self._seen_version = version
            self._dirty = False
            self._draw_bars(sub.df)
            return
        if self._replace_mode():
            self._seen_version = version
            self._dirty = False
            df = sub.df
            if df is None or len(df.columns) == 0:
                return
            self.view_stats.rows += len(df)
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
        self.view_stats.rows += len(frame)
        if not reset and len(frame) == 0:
            return
        self._draw_frame(frame, end, reset=reset)

    # -- drawing ------------------------------------------------------------------------

    def _filtered(self, df: pd.DataFrame) -> pd.DataFrame:
        filters = {**(getattr(self.sub, "_ls_filters", None) or {}), **self.where}
        if not filters or len(df) == 0:
            return df
        mask = np.ones(len(df), dtype=bool)
        for col, allowed in filters.items():
            if col in df.columns and allowed is not None:
                mask &= df[col].astype(str).isin(allowed).to_numpy()
        return df.loc[mask] if not mask.all() else df

    def _columns(self, df: pd.DataFrame, ycol: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"x": to_float64(df[self.x or _OFFSET])}
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
            frame = frame.assign(**{_OFFSET: np.arange(start, start + n, dtype=np.float64)})
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
        if reset:
            drawn = {key for key, _, _ in parts}
            for key, s in self._series.items():
                if key not in drawn and len(s.source.data.get("x", ())):
                    s.source.data = {k: np.empty(0) for k in s.source.data}
        for key, ycol, part in parts:
            if len(part) > w:
                part = part.iloc[len(part) - w:]
            data = self._columns(part, ycol)
            series = self._series.get(key)
            if series is None:
                series = self._add_series(key, data)
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
                    for r in s.renderers:
                        if hasattr(r.glyph, "width"):
                            r.glyph.width = self._bar_width
                    for other in self._series.values():
                        for r in other.renderers:
                            if hasattr(r.glyph, "width"):
                                r.glyph.width = self._bar_width
                    return

    def _add_series(self, key: object, data: dict[str, Any]) -> _Series:
        fig = self.figure
        source = ColumnDataSource(data=data)
        if self.by is not None:
            color = series_color(self.by, key)
        elif len(self.ys) > 1:
            color = series_color("__y__", key)
        else:
            color = self._color or PALETTE[0]
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
        series = _Series(key, source, renderers)
        self._series[key] = series
        if self._legend is not None:
            self._legend.items = [*self._legend.items, LegendItem(label=name, renderers=renderers)]
        return series

    def _draw_bars(self, df: pd.DataFrame) -> None:
        """Categorical bars: one bar per x value (keyed rows, or an aggregate of the window)."""
        if df is None or len(df.columns) == 0 or self.x not in df.columns:
            return
        df = self._filtered(df)
        self.view_stats.rows += len(df)
        x = self.x
        assert x is not None
        if self._replace_mode() and self.agg == "last":
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
            self._series[None] = _Series(None, source, [r])
            self.figure.y_range.start = 0
            return
        old = series.source.data
        if list(old.get("x", [])) == labels:
            if not np.array_equal(np.asarray(old["y"]), values, equal_nan=True):
                series.source.patch({"y": [(slice(0, len(labels)), values)]})
        else:
            series.source.data = data

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def sources(self) -> dict[object, ColumnDataSource]:
        """Series key (``by`` value, y column, or None) → its ColumnDataSource."""
        return {k: s.source for k, s in self._series.items()}

    @property
    def stats(self) -> ViewStats:
        """Frames, rows, comm messages and errors of this chart."""
        return self.view_stats

    def points(self) -> int:
        """Points currently held by the chart's data sources (all series)."""
        return sum(len(s.source.data.get("x", ())) for s in self._series.values())

    def close(self) -> None:
        """Stop updating, close the widget and release the chart's buffers."""
        if self.closed:
            return
        self._stop_view()
        try:
            super().close()
        finally:
            try:
                for s in self._series.values():
                    s.source.data = {}
            except Exception:  # interpreter shutdown (Widget.__del__): nothing to release
                pass
            self._series.clear()

    def __repr__(self) -> str:
        name = getattr(self.sub, "name", None)
        state = "closed" if self.closed else ("paused" if self.paused else "live")
        return f"<LiveChart {self.kind} of {name!r} {state} points={self.points()}>"
