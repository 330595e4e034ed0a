"""Dashboards: charts, tables, ticker cards and controls composed into rows, columns and tabs.

A :class:`Dashboard` holds *view specs*, not live objects: what ``sub.chart(...)``,
``sub.table(...)``, ``sub.ticker(...)`` and ``sub.controls()`` describe (the
topic, the server it comes from, the subscription window and the view's
options). Every target makes its own live objects from them:

* in a notebook (``display(dash)``), an ipywidgets layout of the notebook views;
* in a Bokeh server (:meth:`Dashboard.serve`, ``livestream dashboard app.py``,
  ``bokeh serve app.py`` with :meth:`Dashboard.servable`), one set of views per
  browser session, in that session's own document;
* in a static page (:meth:`Dashboard.save`), a browser-side client per chart.

Layout: ``Dashboard([row1, row2])`` stacks rows; a list inside is a row; a list
inside a row is a column, and so on alternately. ``Row(...)``, ``Column(...)``
and ``Tabs({"Trading": ..., "Chat": ...})`` say it explicitly. A string is a
heading/text block.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ViewKind = Literal["chart", "table", "ticker", "controls"]
Theme = Literal["light", "dark"]
THEMES: tuple[str, ...] = ("light", "dark")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(eq=False)
class ViewSpec:
    """What one view shows: ``view`` (chart, table, ticker, controls) of ``topic``.

    ``url`` is the livestream server the topic comes from (``None`` for an
    outside feed's stream, which targets then share read-only), ``window`` the
    subscription window, ``options`` the view's keyword arguments. ``token``
    (not part of :meth:`to_json`) is the connection's token. ``sub`` and
    ``live`` keep the subscription and live view the spec was taken from, for
    targets in the same process.
    """

    view: ViewKind
    topic: str | None
    options: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    window: int | None = None
    token: str | None = field(default=None, repr=False)
    sub: Any = field(default=None, repr=False)
    live: Any = field(default=None, repr=False)

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def of(cls, sub: Any, view: ViewKind, live: Any = None, **options: Any) -> ViewSpec:
        """The spec of ``view`` over subscription ``sub`` with ``options``."""
        source = getattr(sub, "source", None)
        url = getattr(source, "url", None) if source is not None else None
        if not (isinstance(url, str) and url.startswith(("ws://", "wss://"))) or \
                not hasattr(source, "subscribe"):
            url = None  # an outside feed: not re-subscribable by topic
        token = getattr(sub, "_token", None) or getattr(source, "token", None)
        return cls(view, getattr(sub, "name", None), dict(options), url=url,
                   window=getattr(sub, "window", None), token=token, sub=sub, live=live)

    @classmethod
    def chart(cls, sub: Any, x: str | None = None, y: Any = None, **options: Any) -> ViewSpec:
        """A chart spec without making a notebook chart (arguments of ``sub.chart``)."""
        return cls.of(sub, "chart", x=x, y=y, **options)

    @classmethod
    def table(cls, sub: Any, rows: int = 20, **options: Any) -> ViewSpec:
        """A table spec (arguments of ``sub.table``)."""
        return cls.of(sub, "table", rows=rows, **options)

    @classmethod
    def ticker(cls, sub: Any, value: str, by: str | None = None, **options: Any) -> ViewSpec:
        """A ticker-cards spec (arguments of ``sub.ticker``)."""
        return cls.of(sub, "ticker", value=value, by=by, **options)

    @classmethod
    def controls(cls, sub: Any, filter_column: str | None = None) -> ViewSpec:
        """A controls spec (pause/resume, window, filter)."""
        return cls.of(sub, "controls", filter_column=filter_column)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON-able data (options that are not JSON are left out; no token)."""
        return {
            "view": self.view,
            "topic": self.topic,
            "url": self.url,
            "window": self.window,
            "options": {k: v for k, v in self.options.items() if _jsonable(v)},
        }


def spec_of(item: Any) -> ViewSpec:
    """The :class:`ViewSpec` of a live view (``LiveChart``, ``LiveTable``, ``Ticker``,
    ``Controls``) or of a spec (returned as is)."""
    if isinstance(item, ViewSpec):
        return item
    from ..notebook.chart import LiveChart
    from ..notebook.direct import DirectChart
    from ..notebook.widgets import Controls, LiveTable, Ticker

    if isinstance(item, LiveChart | DirectChart):
        return ViewSpec.of(item.sub, "chart", live=item, **item.options)
    if isinstance(item, LiveTable):
        return ViewSpec.of(item.sub, "table", live=item, rows=item.rows, columns=item.columns,
                           fps=item.fps, sort_by=item.sort_by, ascending=item.ascending)
    if isinstance(item, Ticker):
        return ViewSpec.of(item.sub, "ticker", live=item, value=item.value_column, by=item.by,
                           fps=item.fps, decimals=item.decimals)
    if isinstance(item, Controls):
        return ViewSpec.of(item.sub, "controls", live=item, filter_column=item.filter_column)
    raise TypeError(
        f"a dashboard holds charts, tables, tickers, controls (sub.chart(), sub.table(), "
        f"sub.ticker(), sub.controls()), text, and Row/Column/Tabs of them; got {item!r}")


# -- layout nodes ---------------------------------------------------------------------------


class _Container:
    children: list[Any]

    def __init__(self, *children: Any, title: str | None = None) -> None:
        if len(children) == 1 and isinstance(children[0], list | tuple):
            children = tuple(children[0])
        self.children = list(children)
        self.title = title

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(c) for c in self.children)})"


class Row(_Container):
    """Children side by side: ``Row(chart, table)`` or ``Row([chart, table])``."""


class Column(_Container):
    """Children stacked: ``Column(chart, table)``."""


class Tabs:
    """Tabs: ``Tabs({"Trading": [...], "Chat": chat_chart})`` or ``Tabs(("A", x), ("B", y))``."""

    def __init__(self, tabs: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
                 *more: tuple[str, Any], **named: Any) -> None:
        items: list[tuple[str, Any]] = []
        if isinstance(tabs, Mapping):
            items += list(tabs.items())
        elif tabs is not None:
            tabs = list(tabs)
            if len(tabs) == 2 and isinstance(tabs[0], str):
                items.append((tabs[0], tabs[1]))  # Tabs(("A", x)) with one tab
            else:
                items += [tuple(t) for t in tabs]  # type: ignore[misc]
        items += [tuple(t) for t in more]  # type: ignore[misc]
        items += list(named.items())
        self.tabs: list[tuple[str, Any]] = [(str(t), c) for t, c in items]

    def __repr__(self) -> str:
        return f"Tabs({dict(self.tabs)!r})"


@dataclass
class Text:
    """A text block (HTML-escaped; a leading ``# `` makes it a heading)."""

    text: str

    def html(self) -> str:
        t = self.text
        if t.startswith("# "):
            return f"<h2 style='margin:4px 0'>{html.escape(t[2:])}</h2>"
        if t.startswith("## "):
            return f"<h3 style='margin:4px 0'>{html.escape(t[3:])}</h3>"
        return f"<div>{html.escape(t)}</div>"


Node = Row | Column | Tabs | Text | ViewSpec


def normalize(item: Any, parent: type = Column) -> Node:
    """Turn nested lists, dicts, strings and live views into a tree of layout nodes.

    A list directly inside a column becomes a row, a list inside a row a column.
    """
    if isinstance(item, Row | Column):
        cls = type(item)
        node = cls(*[normalize(c, cls) for c in item.children], title=item.title)
        return node
    if isinstance(item, Tabs):
        t = Tabs()
        t.tabs = [(title, normalize(c, Column)) for title, c in item.tabs]
        return t
    if isinstance(item, Mapping):
        return normalize(Tabs(item), parent)
    if isinstance(item, list | tuple):
        cls = Row if parent is Column else Column
        return cls(*[normalize(c, cls) for c in item])
    if isinstance(item, str):
        return Text(item)
    if isinstance(item, Text):
        return item
    return spec_of(item)


def iter_specs(node: Node) -> Iterator[ViewSpec]:
    """Every view spec in a layout tree, depth first."""
    if isinstance(node, ViewSpec):
        yield node
    elif isinstance(node, Row | Column):
        for c in node.children:
            yield from iter_specs(c)
    elif isinstance(node, Tabs):
        for _, c in node.tabs:
            yield from iter_specs(c)


def layout_json(node: Node) -> dict[str, Any]:
    """A layout tree as JSON-able data (views by their :meth:`ViewSpec.to_json`)."""
    if isinstance(node, ViewSpec):
        return {"type": "view", **node.to_json()}
    if isinstance(node, Text):
        return {"type": "text", "text": node.text}
    if isinstance(node, Tabs):
        return {"type": "tabs", "tabs": [[t, layout_json(c)] for t, c in node.tabs]}
    return {"type": type(node).__name__.lower(), "children": [layout_json(c) for c in node.children]}


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
