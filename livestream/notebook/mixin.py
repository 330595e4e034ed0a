"""View methods that :class:`~livestream.client.subscription.Subscription` inherits.

They import the notebook extras (bokeh, ipywidgets) lazily, so the core client
works without them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chart import ChartKind, LiveChart
    from .direct import DirectChart
    from .widgets import Controls, LiveTable, Ticker


class ViewsMixin:
    """``sub.chart()``, ``sub.table()``, ``sub.ticker()``, ``sub.controls()``.

    Also the view-side settings that :meth:`controls` edits and every view of the
    subscription follows at its next frame: :meth:`set_filter` (show only some
    values of a column) and :meth:`set_window`.
    """

    # -- views --------------------------------------------------------------------------

    def chart(
        self,
        x: str | None = None,
        y: str | Sequence[str] | None = None,
        by: str | None = None,
        kind: ChartKind = "line",
        window: int | None = None,
        fps: float = 20,
        direct: bool = False,
        **kwargs: Any,
    ) -> LiveChart | DirectChart:
        """A live Bokeh chart of this subscription, as an ipywidget.

        ``kind``: ``"line"``, ``"scatter"``, ``"step"``, ``"bar"`` (one bar per
        value of a categorical ``x``: a keyed topic's rows, or ``agg=`` "last",
        "count", "sum", "mean"... over the window) or ``"candlestick"`` (columns
        named by ``ohlc=("open", "high", "low", "close")``). ``by`` splits series
        by a column (legend, stable colours). ``window`` bounds the points kept
        per series (default: the subscription's window). Updates are coalesced to
        at most ``fps`` frames a second. ``x=None`` plots against the row offset.
        ``where={"symbol": "AAPL"}`` draws only matching rows. Other keywords: ``title``, ``height``, ``width``, ``bar_width``, ``size``,
        ``line_width``, ``color``, ``tooltips`` and any ``bokeh.plotting.figure``
        argument. ``direct=True`` makes a chart whose browser side subscribes to the
        livestream server by itself (the kernel is off the hot path; see
        :mod:`livestream.notebook.direct`).
        """
        if direct:
            from .direct import DirectChart

            return DirectChart(self, x, y, by=by, kind=kind, window=window, fps=fps, **kwargs)
        from .chart import LiveChart

        return LiveChart(self, x, y, by=by, kind=kind, window=window, fps=fps, **kwargs)

    def table(self, rows: int = 20, *, columns: Sequence[str] | None = None,
              fps: float = 4, **kwargs: Any) -> LiveTable:
        """A live table widget: the latest ``rows`` rows (newest first), or a keyed
        topic's table, with number and time formatting."""
        from .widgets import LiveTable

        return LiveTable(self, rows=rows, columns=columns, fps=fps, **kwargs)

    def ticker(self, value: str, by: str | None = None, *, fps: float = 4,
               **kwargs: Any) -> Ticker:
        """Live value cards: the last ``value`` per ``by`` (e.g. price per symbol),
        with the change since the card first saw it, green up, red down."""
        from .widgets import Ticker

        return Ticker(self, value=value, by=by, fps=fps, **kwargs)

    def controls(self, filter_column: str | None = None) -> Controls:
        """Pause/resume, window size and a column filter (pick symbols) for this
        subscription and all of its views; changes apply at once."""
        from .widgets import Controls

        return Controls(self, filter_column=filter_column)

    # -- view registry and shared settings ----------------------------------------------------

    def _ls_views_set(self) -> weakref.WeakSet:
        views = self.__dict__.get("_ls_views")
        if views is None:
            views = self.__dict__["_ls_views"] = weakref.WeakSet()
        return views

    def _ls_register_view(self, view: Any) -> None:
        self._ls_views_set().add(view)

    def _ls_unregister_view(self, view: Any) -> None:
        self._ls_views_set().discard(view)

    @property
    def views(self) -> list[Any]:
        """The open live views (charts, tables, tickers) of this subscription."""
        return [v for v in list(self._ls_views_set()) if not getattr(v, "closed", False)]

    @property
    def filters(self) -> dict[str, set[str]]:
        """Column → values its views show (set with :meth:`set_filter`)."""
        return dict(self.__dict__.get("_ls_filters") or {})

    def set_filter(self, column: str, values: Iterable[object] | None) -> None:
        """Show only rows whose ``column`` is one of ``values`` in this
        subscription's views (``None`` shows everything). The data itself is kept:
        clearing the filter redraws the full window."""
        filters = dict(self.__dict__.get("_ls_filters") or {})
        if values is None:
            filters.pop(column, None)
        else:
            filters[column] = {str(v) for v in values}
        self.__dict__["_ls_filters"] = filters
        self.__dict__["_ls_filter_epoch"] = self.__dict__.get("_ls_filter_epoch", 0) + 1

    @property
    def _ls_filters(self) -> dict[str, set[str]]:
        return self.__dict__.get("_ls_filters") or {}

    @property
    def _ls_filter_epoch(self) -> int:
        return self.__dict__.get("_ls_filter_epoch", 0)

    def set_window(self, rows: int) -> None:
        """Resize the live window (the subscription's and its charts')."""
        if rows < 1:
            raise ValueError("window must be a positive number of rows")
        self._resize(rows)  # type: ignore[attr-defined]
        for v in self.views:
            prop = getattr(type(v), "window", None)
            if isinstance(prop, property) and prop.fset is not None:
                v.window = rows
