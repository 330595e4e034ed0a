"""Dashboards: charts, tables, ticker cards and controls composed into rows, columns and tabs.

A :class:`Dashboard` holds *view specs*, not live objects: what ``sub.chart(...)``,
``sub.table(...)``, ``sub.ticker(...)`` and ``sub.controls()`` describe (the
topic, the server it comes from, the subscription window and the view's
options; :class:`~livestream.views.spec.ViewSpec`). Every target makes its own
live objects from them:

* in a notebook (``display(dash)``), an ipywidgets layout of the notebook views
  (:mod:`.notebook`);
* in a Bokeh server (:meth:`Dashboard.serve`, ``livestream dashboard app.py``,
  ``bokeh serve app.py`` with :meth:`Dashboard.servable`), one set of views per
  browser session, in that session's own document (:mod:`.server`);
* in a static page (:meth:`Dashboard.save`), a browser-side client per chart
  (:mod:`.static`).

The layout rules are those of :mod:`.layout`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from ..views.spec import ViewSpec
from .layout import Column, Node, iter_specs, layout_json, normalize

Theme = Literal["light", "dark"]
THEMES: tuple[str, ...] = ("light", "dark")


def _session_curdoc() -> Any:
    """The Bokeh server session document a script is being run for, or None.

    Bokeh runs an app script on its server loop with ``curdoc()`` patched to the
    new session's document. Outside that (no running loop on this thread, no
    session context, a patched document already destroyed) there is none.
    """
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None  # Bokeh runs app code on its loop; another thread's curdoc is not ours
    from bokeh.io import curdoc

    try:
        doc = curdoc()
    except RuntimeError:  # "Patched curdoc has been previously destroyed"
        return None
    return doc if getattr(doc, "session_context", None) is not None else None


# -- the dashboard --------------------------------------------------------------------------


class Dashboard:
    """Live views composed into rows, columns and tabs; shown in a notebook, served by
    a Bokeh server (one set of views per browser session), or saved as a static page.

    ``Dashboard([[price_chart, quotes_ticker], [trades_table]], title="Desk",
    theme="dark")``. Items are live views (``sub.chart(...)``, ``sub.table()``,
    ``sub.ticker(...)``, ``sub.controls()``), :class:`ViewSpec`, text, or
    :class:`Row`/:class:`Column`/:class:`Tabs` and nested lists of them.
    """

    def __init__(self, children: Any, *, title: str = "livestream", theme: Theme = "light",
                 ) -> None:
        if theme not in THEMES:
            raise ValueError(f"theme must be one of {THEMES}, got {theme!r}")
        self.title = title
        self.theme: Theme = theme
        if isinstance(children, list | tuple):  # the top level stacks its items (rows)
            self.root: Node = Column(*[normalize(c, Column) for c in children])
        else:
            self.root = normalize(children, Column)
        self._servable = False

    def __repr__(self) -> str:
        return f"<Dashboard {self.title!r} {len(self.specs)} views>"

    @property
    def specs(self) -> list[ViewSpec]:
        """The view specs, in layout order."""
        return list(iter_specs(self.root))

    def to_json(self) -> dict[str, Any]:
        """Title, theme and layout (with each view's spec) as JSON-able data."""
        return {"title": self.title, "theme": self.theme, "layout": layout_json(self.root)}

    # -- notebook -----------------------------------------------------------------------

    def widget(self) -> Any:
        """The dashboard as an ipywidgets layout of live notebook views."""
        from .notebook import dashboard_widget

        return dashboard_widget(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.widget()._repr_mimebundle_(include=include, exclude=exclude)

    # -- Bokeh server -------------------------------------------------------------------

    def serve(self, port: int = 5006, *, host: str = "127.0.0.1", path: str = "/",
              allow_websocket_origin: Iterable[str] | None = None, show: bool = False,
              session_expiry: float = 2.0,
              viewer_tokens: Literal["optional", "required", "ignore"] = "optional",
              **server_kw: Any) -> Any:
        """Serve this dashboard as a Bokeh server app, in this process; returns the
        :class:`~livestream.dashboard.server.DashboardServer` (``.url``, ``.stop()``).

        The server runs on the current event loop (a notebook's kernel loop, an
        async program's loop) or, when none is running, on livestream's
        background loop. Every browser session gets its own document, its own
        subscriptions and views, updated only through that document's callbacks;
        closing the page releases them ``session_expiry`` seconds later.
        ``allow_websocket_origin``: the ``host[:port]`` values a browser may load
        the page from (default: ``localhost:PORT`` and ``127.0.0.1:PORT``; add the
        public host name when publishing). ``port=0`` picks a free port.
        ``viewer_tokens``: a viewer who opens ``URL?livestream_token=TOKEN`` gets
        subscriptions made with that token instead of the views' own
        (``"optional"``); ``"required"`` shows a note instead of views without one;
        ``"ignore"`` always uses the views' token (docs/dashboards.md, Tokens).
        """
        from .server import serve_dashboard

        return serve_dashboard(self, port=port, host=host, path=path,
                               allow_websocket_origin=allow_websocket_origin, show=show,
                               session_expiry=session_expiry, viewer_tokens=viewer_tokens,
                               **server_kw)

    def servable(self) -> Dashboard:
        """Mark this dashboard as the app of a ``livestream dashboard`` / ``bokeh serve``
        script or notebook.

        Run by a Bokeh server (the script runs once per browser session), it adds
        the dashboard to the session's document (``curdoc()``): the session owns
        the subscriptions the script opened and closes them when it ends.
        Elsewhere (a notebook, a plain ``python app.py``) it only marks it.
        """
        self._servable = True
        doc = _session_curdoc()
        if doc is not None:
            from .server import build_document

            build_document(self, doc, owned=True)
        return self

    # -- static page (part B plugs in here) ---------------------------------------------

    def save(self, path: str, **kw: Any) -> Any:
        """Save a static HTML page whose charts subscribe to the livestream server by
        themselves (see :mod:`livestream.dashboard.static`)."""
        from .static import save_dashboard  # type: ignore[import-not-found]

        return save_dashboard(self, path, **kw)
