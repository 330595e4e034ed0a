"""Direct mode: ``sub.chart(..., direct=True)`` — a notebook chart whose browser side
subscribes to the livestream server by itself.

A normal :class:`~livestream.notebook.chart.LiveChart` is drawn by the kernel: its
frame timer reads the subscription and sends one comm message per frame. A
:class:`DirectChart` is the same figure (built by
:class:`~livestream.views.chart_core.ChartCore`) shipped once as a jupyter_bokeh
widget whose Bokeh document carries a ``CustomJS`` on ``DocumentReady``: in the
browser, the livestream JavaScript client subscribes to the topic and streams
into the figure's sources (js/src/bokehChart.ts). The kernel is off the hot path:
the chart keeps moving while a cell runs ``time.sleep(60)``, and its rate does
not count against Jupyter's iopub limit.

The browser connects to the server directly, so the notebook page's origin must
be allowed by the livestream server (``localhost`` and the server's own host are
allowed by default; docs/dashboards.md). The page receives the connection's
token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.models import CustomJS
from jupyter_bokeh import BokehModel

from ..views.browser import START_JS, livestream_js, view_models
from ..views.spec import ViewSpec
from .loader import LOAD_MIME, load_bokehjs

__all__ = ["DirectChart", "livestream_js_bundle", "load_livestream_js"]

_loaded = False


def livestream_js_bundle() -> dict[str, str]:
    """The display-data bundle that defines ``window.Livestream`` in the notebook page."""
    js = livestream_js()
    head = json.dumps(js.split("\n", 1)[0])  # the banner holds the source hash
    return {
        LOAD_MIME: (
            f"if (window.__livestream_js__ !== {head}) {{\n{js}\n"
            f"window.Livestream = Livestream; window.__livestream_js__ = {head};\n}}\n"
        ),
        "text/plain": "livestream JS client (inline)",
    }


def load_livestream_js(force: bool = False) -> bool:
    """Publish the livestream JS client into the notebook page (once per kernel unless
    ``force``). Called by :class:`DirectChart`; returns whether an output was published."""
    global _loaded
    from ._runtime import in_kernel

    if not in_kernel() or (_loaded and not force):
        return False
    from IPython.display import publish_display_data

    publish_display_data(livestream_js_bundle(), metadata={LOAD_MIME: {}})
    _loaded = True
    return True


class DirectChart(BokehModel):
    """A chart streamed by the browser itself (see the module doc); an ipywidget.

    Arguments are those of :meth:`Subscription.chart`, plus ``url``/``token`` (default:
    the subscription's connection) and ``encoding`` (``"arrow"``). Attributes:
    ``figure``, ``spec`` (what the browser draws), ``sub``.
    """

    def __init__(
        self,
        sub: Any,
        x: str | None = None,
        y: str | Sequence[str] | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        encoding: str = "arrow",
        **options: Any,
    ) -> None:
        options.pop("start", None)
        spec = ViewSpec.chart(sub, x, y, **options)  # options: see views.options.ChartOptions
        url = url or spec.url
        if not url:
            raise ValueError("direct=True needs a livestream server subscription "
                             "(or pass url='ws://host:port/ws')")
        if token is None:
            token = spec.token
        fig, args = view_models(spec)
        assert args is not None
        server: dict[str, Any] = {"url": url, "encoding": encoding}
        if token:
            server["token"] = token
        doc = Document()
        doc.add_root(fig)
        doc.js_on_event(DocumentReady, CustomJS(
            args={"views": [args], "server_json": json.dumps(server)}, code=START_JS))
        self.sub = sub
        #: the chart's arguments (as LiveChart.options: to make the same chart elsewhere)
        self.options: dict[str, Any] = dict(spec.options)
        self.figure = fig
        self.spec: dict[str, Any] = json.loads(args["spec"])
        load_bokehjs()
        load_livestream_js()
        super().__init__(fig)

    def view_spec(self) -> ViewSpec:
        """What this chart shows, for a dashboard (see :class:`~livestream.views.spec.ViewSpec`)."""
        return ViewSpec.of(self.sub, "chart", live=self, **self.options)

    def __repr__(self) -> str:
        return f"<DirectChart {self.spec.get('kind')} of {self.spec.get('topic')!r}>"
