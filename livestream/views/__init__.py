"""Transport-independent views: what a chart or table draws, not how it reaches a browser.

:class:`~livestream.views.chart_core.ChartCore` builds a Bokeh figure for a
subscription and draws each frame with the plain Bokeh API
(``ColumnDataSource.stream/patch``, ``source.data = ...``). Targets wrap it:

* the notebook's :class:`~livestream.notebook.chart.LiveChart` (a jupyter_bokeh
  widget that sends one ``PATCH-DOC`` comm message per frame),
* the Bokeh server app's per-session views (:mod:`livestream.dashboard.server`),
  driven by the session document's ``add_periodic_callback``,
* static pages, whose browser-side client reads :attr:`ChartCore.spec`
  (:mod:`livestream.views.browser`).

Also here: what a view shows, as data (:class:`~livestream.views.spec.ViewSpec`),
the table and ticker logic (:mod:`.cards`) and the column conversions for Bokeh
(:mod:`.convert`). Nothing here imports Jupyter. Bokeh is imported when a chart
module is first used (``import livestream`` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import KINDS, ChartKind, ChartOptions
from .spec import ViewSpec

if TYPE_CHECKING:
    from .chart_core import PALETTE, ChartCore, series_color

__all__ = ["KINDS", "PALETTE", "ChartCore", "ChartKind", "ChartOptions", "ViewSpec",
           "series_color"]


def __getattr__(name: str) -> Any:
    if name in ("PALETTE", "ChartCore", "series_color"):
        from . import chart_core

        return getattr(chart_core, name)
    raise AttributeError(name)
