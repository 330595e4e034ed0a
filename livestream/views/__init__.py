"""Transport-independent views: what a chart or table draws, not how it reaches a browser.

:class:`~livestream.views.chart_core.ChartCore` builds a Bokeh figure for a
subscription and draws each frame with the plain Bokeh API
(``ColumnDataSource.stream/patch``, ``source.data = ...``). Targets wrap it:

* the notebook's :class:`~livestream.notebook.chart.LiveChart` (a jupyter_bokeh
  widget that sends one ``PATCH-DOC`` comm message per frame),
* the Bokeh server app's per-session views (:mod:`livestream.dashboard.server`),
  driven by the session document's ``add_periodic_callback``,
* static pages, whose browser-side client reads :attr:`ChartCore.spec`.
"""

from __future__ import annotations

from .chart_core import KINDS, PALETTE, ChartCore, ChartKind, series_color

__all__ = ["KINDS", "PALETTE", "ChartCore", "ChartKind", "series_color"]
