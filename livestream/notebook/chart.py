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

Figure construction and frame drawing live in the transport-independent
:class:`~livestream.views.chart_core.ChartCore` (shared with the Bokeh server
app); this module adds the comm transport.

A chart shows its subscription's condition in its title (paused, reconnecting,
closed, gaps, errors). Closing it (or re-running the cell that created it)
stops its timer and releases its buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

from bokeh.models import ColumnDataSource

from .._compat.bokeh_internals import BokehModel, patch_doc_parts, sync_model
from ..views.chart_core import ChartCore
from ..views.spec import ViewSpec
from ..views.stats import ViewStats
from ._runtime import on_loop
from ._view import LiveView
from .loader import load_bokehjs


class LiveChart(BokehModel, LiveView):
    """A live Bokeh chart of a subscription; an ipywidget (``BokehModel``).

    Create one with :meth:`Subscription.chart`. Display it, or put it in an
    ipywidgets layout (``VBox``, ``HBox``, ``Tab``). Attributes: ``figure`` (the
    Bokeh figure; style it freely), ``sources`` (series key → ColumnDataSource),
    ``window``, ``fps``, ``view_stats`` (frames, rows, comm messages), ``core``
    (the transport-independent :class:`~livestream.views.chart_core.ChartCore`
    that builds the figure and draws the frames) and ``spec``.
    """

    def __init__(self, sub: Any, x: str | None = None, y: str | Sequence[str] | None = None,
                 *, start: bool = True, **options: Any) -> None:
        core = ChartCore(sub, x, y, **options)  # options: see views.options.ChartOptions
        self._held: list | None = None
        self._view_init(sub, core.fps)
        core.stats = self.view_stats
        self.core = core
        load_bokehjs()
        super().__init__(core.figure)
        if start:
            self._start()

    # -- what the core holds ----------------------------------------------------------------

    @property
    def figure(self) -> Any:
        """The Bokeh figure (style it freely)."""
        return self.core.figure

    @property
    def x(self) -> str | None:
        return self.core.x

    @property
    def ys(self) -> list[str]:
        return self.core.ys

    @property
    def by(self) -> str | None:
        return self.core.by

    @property
    def kind(self) -> str:
        return self.core.kind

    @property
    def agg(self) -> str:
        return self.core.agg

    @property
    def where(self) -> dict[str, set[str]]:
        return self.core.where

    @property
    def spec(self) -> dict[str, Any]:
        """The chart as JSON-able data (see :attr:`ChartCore.spec`)."""
        return self.core.spec

    @property
    def options(self) -> dict[str, Any]:
        """The arguments the chart was made with (to make the same chart elsewhere)."""
        return dict(self.core.options)

    def view_spec(self) -> ViewSpec:
        """What this chart shows, for a dashboard (see :class:`~livestream.views.spec.ViewSpec`)."""
        return ViewSpec.of(self.sub, "chart", live=self, **self.options)

    # -- window -------------------------------------------------------------------------

    @property
    def window(self) -> int:
        """Points kept per series (older points roll over). Settable; redraws."""
        return self.core.window

    @window.setter
    def window(self, n: int) -> None:
        self.core.window = n

    def redraw(self) -> None:
        """Redraw everything from the subscription's current window at the next frame."""
        self.core.redraw()

    # -- transport: one PATCH-DOC per frame -----------------------------------------------

    def _document_patched(self, event: Any) -> None:  # called by the Bokeh document
        if event.setter is self:
            return
        if self._held is not None:
            self._held.append(event)
            return
        self._send_events([event])

    def _send_events(self, events: list) -> None:
        for part in patch_doc_parts(events):  # header, metadata, content
            self.send({"msg": "patch", "payload": part})
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
        if _echoed_data(content):
            return
        on_loop(self.loop, sync_model, self, model, content, buffers)

    # -- frames -------------------------------------------------------------------------

    def _draw(self) -> bool:
        with self._frame_events():
            self.core.draw(self.paused, self.view_stats.last_error)
            return bool(self._held)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def sources(self) -> dict[object, ColumnDataSource]:
        """Series key (``by`` value, y column, or None) → its ColumnDataSource."""
        return self.core.sources

    @property
    def stats(self) -> ViewStats:
        """Frames, rows, comm messages and errors of this chart."""
        return self.view_stats

    def points(self) -> int:
        """Points currently held by the chart's data sources (all series)."""
        return self.core.points()

    def close(self) -> None:
        """Stop updating, close the widget and release the chart's buffers."""
        if self.closed:
            return
        self._stop_view()
        try:
            super().close()
        finally:
            self.core.release()

    def __repr__(self) -> str:
        name = getattr(self.sub, "name", None)
        state = "closed" if self.closed else ("paused" if self.paused else "live")
        return f"<LiveChart {self.kind} of {name!r} {state} points={self.points()}>"


#: Document events jupyter_bokeh's browser view sends back after applying the kernel's own
#: patch (it queues the changes a PATCH-DOC makes and re-sends them): a chart's data has one
#: writer, the kernel, so these are echoes. Applying them re-streamed every frame's rows into
#: the kernel's sources (and decoded them first): measured in ``python -m benchmarks
#: decimation``, one echo per stream, patch and redraw.
_ECHO_KINDS = frozenset({"ColumnsStreamed", "ColumnsPatched", "ColumnDataChanged"})


def _echoed_data(content: dict) -> bool:
    """Whether a browser → kernel message is the echo of a chart's data change."""
    kind = content.get("kind")
    return kind in _ECHO_KINDS or (kind == "ModelChanged" and content.get("attr") == "data")
