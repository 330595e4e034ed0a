"""The options of a chart, defined once: :class:`ChartOptions`.

``sub.chart(...)``, :class:`~livestream.notebook.chart.LiveChart`,
:class:`~livestream.notebook.direct.DirectChart`,
:class:`~livestream.views.chart_core.ChartCore` and
:meth:`ViewSpec.chart <livestream.views.spec.ViewSpec.chart>` all take these
keywords and pass them on; this is the one place that names, defaults and checks
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

ChartKind = Literal["line", "scatter", "step", "bar", "candlestick"]
KINDS: tuple[str, ...] = ("line", "scatter", "step", "bar", "candlestick")

__all__ = ["KINDS", "ChartKind", "ChartOptions"]


@dataclass(frozen=True)
class ChartOptions:
    """What a live chart draws and how.

    ``x``: the x column (None: the row offset). ``y``: one column or several (one
    series each). ``by``: a column whose values split the rows into series (stable
    colours, a legend). ``kind``: ``"line"``, ``"scatter"``, ``"step"``, ``"bar"``
    (one bar per value of a categorical ``x``: a keyed topic's rows, or ``agg``
    "last", "count", "sum", "mean"... over the window) or ``"candlestick"``
    (columns named by ``ohlc``). ``window``: points kept per series (default: the
    subscription's window). ``fps``: frames a second at most (updates are
    coalesced). ``where={"symbol": "AAPL"}`` draws only matching rows.
    ``decimate``: draw a few points per pixel column instead of every row (line,
    step and scatter charts over a numeric or datetime x): ``True`` (default; the
    plot's ``width`` in pixel columns, or
    :data:`~livestream.views.decimate.DEFAULT_BUCKETS` for a stretching plot), a
    number of pixel columns, or ``False`` to send every row of the window to the
    browser (the cost of a frame then grows with the rows). Zooming or panning
    redraws the visible range in detail; a reset returns to the overview.
    ``title``, ``height``, ``width``, ``bar_width``, ``size``, ``line_width``,
    ``color``, ``tooltips``; any other keyword goes to ``bokeh.plotting.figure``
    (:attr:`figure`).
    """

    x: str | None = None
    y: str | tuple[str, ...] | None = None
    by: str | None = None
    kind: ChartKind = "line"
    window: int | None = None
    fps: float = 20
    title: str | None = None
    height: int = 300
    width: int | None = None
    ohlc: tuple[str, ...] = ("open", "high", "low", "close")
    agg: str = "last"
    bar_width: float | None = None
    size: float = 6
    line_width: float = 2
    color: str | None = None
    tooltips: bool = True
    where: Mapping[str, Any] | None = None
    decimate: bool | int = True
    #: other ``bokeh.plotting.figure`` keywords
    figure: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, x: str | None = None, y: str | Sequence[str] | None = None,
           **options: Any) -> ChartOptions:
        """The options from ``sub.chart``-style arguments (unknown keywords go to
        :attr:`figure`); raises ValueError for a bad combination."""
        names = {f.name for f in fields(cls)} - {"figure"}
        known = {k: v for k, v in options.items() if k in names}
        extra = {k: v for k, v in options.items() if k not in names}
        if isinstance(known.get("ohlc"), list):
            known["ohlc"] = tuple(known["ohlc"])
        if isinstance(y, list):
            y = tuple(y)
        return cls(x=x, y=y, figure=extra, **known)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.window is not None and self.window < 1:
            raise ValueError("window must be a positive number of points")
        if self.fps <= 0:
            raise ValueError("fps must be positive")
        if not isinstance(self.decimate, (bool, int)) or (
                not isinstance(self.decimate, bool) and self.decimate < 1):
            raise ValueError("decimate must be True, False or a positive number of pixel "
                             f"columns, got {self.decimate!r}")
        if self.kind == "candlestick":
            if len(self.ohlc) != 4:
                raise ValueError("ohlc= names the open, high, low and close columns")
        elif not (self.kind == "bar" and self.agg == "count"):
            if self.y is None:
                raise ValueError(f"a {self.kind} chart needs y=")
            if self.by is not None and len(self.ys) > 1:
                raise ValueError("use either by= or several y columns, not both")

    @property
    def ys(self) -> list[str]:
        """The y columns drawn (the ``ohlc`` columns for candlesticks)."""
        if self.kind == "candlestick":
            return list(self.ohlc)
        if self.kind == "bar" and self.agg == "count":
            return []
        if self.y is None:
            return []
        return [self.y] if isinstance(self.y, str) else list(self.y)

    @property
    def buckets(self) -> int:
        """Pixel columns a decimated series is drawn at (0: decimation off)."""
        from .decimate import DEFAULT_BUCKETS

        if self.decimate is False:
            return 0
        if self.decimate is True:
            return int(self.width) if self.width else DEFAULT_BUCKETS
        return int(self.decimate)

    def as_kwargs(self) -> dict[str, Any]:
        """The options as ``sub.chart`` keywords (JSON-able where the values are), to
        make the same chart elsewhere."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "figure":
                continue
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = list(v)
            elif f.name == "where" and v:
                v = dict(v)
            out[f.name] = v
        out.update(self.figure)
        return out
