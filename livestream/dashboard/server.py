"""A dashboard as a Bokeh server app: one document, one set of views per browser session.

* **Per-session views.** Each session's document gets its own charts
  (:class:`~livestream.views.chart_core.ChartCore`), tables, ticker cards and
  controls, and its own subscriptions: :meth:`Dashboard.serve` opens one
  livestream connection per session and server URL; a script or notebook served
  with :meth:`Dashboard.servable` runs once per session anyway, and its session
  owns what it opened. Pausing, filtering or closing in one session does not
  touch another. Subscriptions of outside feeds (no livestream URL) are shared
  read-only between sessions and never closed by them.
* **One loop owner.** Views are driven by ``doc.add_periodic_callback`` at
  their ``fps``; the document is only touched from its own session callbacks on
  the Bokeh server's loop, which is also the loop the session's connections run
  on. Widget callbacks (pause, window, filter) run there too.
* **Release.** ``doc.on_session_destroyed`` closes the session's views, its
  subscriptions and connections. Bokeh destroys a session
  ``session_expiry`` seconds after its last browser connection closed.
* **No CDN.** The Bokeh server serves BokehJS from its own ``/static`` route;
  :func:`serve_dashboard` refuses a ``BOKEH_RESOURCES`` setting that would
  point pages at a CDN.
* **Viewer tokens.** A viewer who opens the page as
  ``…/?livestream_token=TOKEN`` gets subscriptions made with that token instead
  of the dashboard's own (``viewer_token="optional"``, the default), so each
  viewer sees what their token allows; ``"required"`` refuses sessions without
  one, ``"ignore"`` always uses the dashboard's token. Served scripts read it
  with :func:`viewer_token`.

:func:`live_stats` counts what is open (sessions, views, callbacks,
subscriptions, connections), for tests and diagnostics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    DataTable,
    Div,
    GlobalInlineStyleSheet,
    MultiChoice,
    Spinner,
    StringFormatter,
    TableColumn,
    TabPanel,
    Tabs,
    Toggle,
)

from .._compat.bokeh_server import session_connected
from ..client.subscription import ViewFilters
from ..views.cards import _CSS, FilterChoices, TableCore, TickerCore, guess_filter_column
from ..views.chart_core import ChartCore
from ..views.stats import ViewStats
from ..views.table_redraw import redraw_on_change
from . import layout as L
from .layout import DARK_CSS

if TYPE_CHECKING:
    from bokeh.document import Document

    from ..views.spec import ViewSpec
    from .dashboard import Dashboard

log = logging.getLogger("livestream.dashboard")

_lock = threading.Lock()
_sessions: dict[int, SessionViews] = {}

#: The page URL's query argument that carries a viewer's livestream token (not ``token``:
#: Jupyter and other servers use that name for their own tokens).
VIEWER_TOKEN_ARG = "livestream_token"
ViewerTokenPolicy = Literal["optional", "required", "ignore"]
VIEWER_TOKEN_POLICIES: tuple[str, ...] = ("optional", "required", "ignore")


def viewer_token(doc: Document | None = None) -> str | None:
    """The livestream token the viewer put in the page URL (``?livestream_token=…``) of a
    Bokeh server session (``doc``, default ``curdoc()``); ``None`` without one or outside
    a server session. For scripts served by ``livestream dashboard``::

        conn = ls.connect(URL, token=viewer_token() or os.environ["LIVESTREAM_TOKEN"])
    """
    if doc is None:
        from bokeh.io import curdoc

        doc = curdoc()
    ctx = getattr(doc, "session_context", None)
    try:
        args = ctx.request.arguments if ctx is not None else {}
    except (AttributeError, RuntimeError):
        return None
    values = (args or {}).get(VIEWER_TOKEN_ARG) or []
    if not values:
        return None
    v = values[-1]
    token = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return token.strip() or None


def live_stats() -> dict[str, int]:
    """What the dashboard sessions of this process hold open right now."""
    with _lock:
        sessions = list(_sessions.values())
    return {
        "sessions": len(sessions),
        "views": sum(len(s.views) for s in sessions),
        "callbacks": sum(s.callbacks() for s in sessions),
        "subscriptions": sum(len(s.owned_subs) for s in sessions),
        "connections": sum(len(s.connections) for s in sessions),
        "connected": sum(1 for s in sessions if s.connected()),
    }


# -- views ----------------------------------------------------------------------------------


class ServerView:
    """A view in one session's document, redrawn by a periodic callback of that document."""

    kind = "view"
    model: Any

    def __init__(self, session: SessionViews, spec: ViewSpec, sub: Any, fps: float) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.session = session
        self.spec = spec
        self.sub = sub
        self.filters = session.filters_for(sub)
        self.fps = float(fps)
        self.paused = False
        self.closed = False
        self.stats = ViewStats()
        self._callback: Any = None

    def start(self) -> None:
        """Draw a first frame and start the document's periodic callback."""
        self._tick()
        period = max(10, round(1000.0 / self.fps))
        self._callback = self.session.doc.add_periodic_callback(self._tick, period)

    def _tick(self) -> None:
        if self.closed:
            return
        if not self.session.connected():
            # the tab closed (or has not connected yet): nobody to draw for, and every
            # patch would go to a closed socket; a reconnecting page pulls the document
            self.stats.idle_frames += 1
            return
        try:
            if self.draw():
                self.stats.frames += 1
            else:
                self.stats.idle_frames += 1
        except Exception as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error("livestream: dashboard %s of %r failed", self.kind,
                      getattr(self.sub, "name", None), exc_info=exc)

    def draw(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    def close(self, destroyed: bool = False) -> None:
        """Stop the callback (unless the document is already destroyed) and let go."""
        if self.closed:
            return
        self.closed = True
        cb, self._callback = self._callback, None
        if cb is not None and not destroyed:
            with contextlib.suppress(ValueError, AttributeError, RuntimeError):
                self.session.doc.remove_periodic_callback(cb)
        self.release()
        self.sub = None

    def release(self) -> None:
        pass


class ServerChart(ServerView):
    """A :class:`ChartCore` drawn in a session document."""

    kind = "chart"

    def __init__(self, session: SessionViews, spec: ViewSpec, sub: Any) -> None:
        opts = dict(spec.options)
        fps = float(opts.pop("fps", None) or 20)
        opts.pop("start", None)
        super().__init__(session, spec, sub, fps)
        self.core = ChartCore(sub, fps=fps, stats=self.stats, **opts)
        self.core.filters = self.filters
        self.model = self.core.figure

    def draw(self) -> bool:
        rows = self.stats.rows
        self.core.draw(self.paused, self.stats.last_error)
        return self.stats.rows != rows

    def release(self) -> None:
        self.core.release()


class ServerTable(ServerView):
    """The latest rows (newest first) or a keyed table, in a Bokeh ``DataTable``.

    What it shows is a :class:`~livestream.views.cards.TableCore`'s, as the notebook
    table's; values are formatted in Python (thousands separators, times) and sent as
    strings, so the browser shows what the notebook table shows.
    """

    kind = "table"

    def __init__(self, session: SessionViews, spec: ViewSpec, sub: Any) -> None:
        opts = spec.options
        super().__init__(session, spec, sub, float(opts.get("fps") or 4))
        self.core = TableCore(sub, int(opts.get("rows") or 20), columns=opts.get("columns"),
                              sort_by=opts.get("sort_by"),
                              ascending=bool(opts.get("ascending", True)), filters=self.filters)
        self.source = ColumnDataSource(data={})
        self.caption = Div(text="", styles={"font-size": "12px", "opacity": "0.75"})
        self.table = DataTable(source=self.source, columns=[], index_position=None,
                               sizing_mode="stretch_width",
                               height=28 + 25 * min(self.core.rows, 20))
        redraw_on_change(self.table)  # Bokeh 3.9 redraws only on a new row count
        self.model = column(self.caption, self.table, sizing_mode="stretch_width")
        self._names: list[str] = []

    def draw(self) -> bool:
        got = self.core.frame(self.paused, self.stats.last_error)
        if got is None:
            return False
        df, caption = got
        self.stats.rows += len(df)
        cells = TableCore.cells(df)
        names = list(cells)
        if names != self._names:
            self._names = names
            self.table.columns = [
                TableColumn(field=n, title=n, formatter=StringFormatter(
                    text_align="right" if right else "left"))
                for n, (_, right) in cells.items()
            ]
        self.source.data = {n: values for n, (values, _) in cells.items()}
        self.caption.text = caption
        return True

    def release(self) -> None:
        self._names = []


class ServerTicker(ServerView):
    """Value cards (last value per key, change, direction) in a ``Div``: a
    :class:`~livestream.views.cards.TickerCore`'s HTML."""

    kind = "ticker"

    def __init__(self, session: SessionViews, spec: ViewSpec, sub: Any) -> None:
        opts = spec.options
        super().__init__(session, spec, sub, float(opts.get("fps") or 4))
        self.core = TickerCore(sub, opts["value"], opts.get("by"), decimals=opts.get("decimals"),
                               filters=self.filters)
        self.model = Div(text=_CSS, sizing_mode="stretch_width")

    @property
    def values(self) -> dict[object, float]:
        return dict(self.core.state.last)

    def draw(self) -> bool:
        got = self.core.html(self.paused, self.stats.last_error)
        if got is None:
            return False
        text, rows = got
        self.stats.rows += rows
        if text == self.model.text:
            return False
        self.model.text = text
        return True


class ServerControls(ServerView):
    """Pause/resume, window and a value filter for one subscription, in this session only."""

    kind = "controls"

    def __init__(self, session: SessionViews, spec: ViewSpec, sub: Any) -> None:
        super().__init__(session, spec, sub, 1.0)
        self.filter_column = spec.options.get("filter_column") or guess_filter_column(sub)
        self._choices = FilterChoices(self.filter_column)
        self.pause = Toggle(label="Pause", active=False, width=90)
        self.window = Spinner(title="window", value=int(getattr(sub, "window", None) or 1000),
                              low=1, step=1000, width=120)
        self.filter = MultiChoice(title=self.filter_column or "filter", options=[], value=[],
                                  width=300, visible=bool(self.filter_column))
        self.pause.on_change("active", self._on_pause)
        self.window.on_change("value", self._on_window)
        self.filter.on_change("value", self._on_filter)
        self.model = row(self.pause, self.window, self.filter)

    # widget callbacks run on the server's loop, with this session's document locked
    def _on_pause(self, attr: str, old: Any, new: Any) -> None:
        paused = bool(new)
        self.pause.label = "Resume" if paused else "Pause"
        self.session.set_paused(self.sub, paused)

    def _on_window(self, attr: str, old: Any, new: Any) -> None:
        if new is not None and int(new) >= 1:
            self.session.set_window(self.sub, int(new))

    def _on_filter(self, attr: str, old: Any, new: Any) -> None:
        if self.filter_column:
            self.filters.set(self.filter_column, list(new) or None)

    def draw(self) -> bool:
        if not self.filter_column:
            return False
        if not self.filter.visible:
            self.filter.visible = True
        merged = self._choices.update(self.sub)
        if merged is None:
            return False
        self.filter.options = merged
        return True


VIEW_CLASSES: dict[str, type[ServerView]] = {
    "chart": ServerChart, "table": ServerTable, "ticker": ServerTicker,
    "controls": ServerControls,
}


# -- sessions -------------------------------------------------------------------------------


class SessionViews:
    """Everything one browser session holds: its views, subscriptions and connections."""

    def __init__(self, dash: Dashboard, doc: Document, *, owned: bool,
                 token: str | None = None) -> None:
        self.dash = dash
        self.doc = doc
        self.owned = owned
        self.viewer_token = token  # replaces the specs' tokens for this session's connections
        self.views: list[ServerView] = []
        self.connections: dict[tuple[str | tuple[str, ...], str | None], Any] = {}
        self.owned_subs: list[Any] = []
        self._filters: dict[int, ViewFilters] = {}
        self.closed = False

    # -- subscriptions -----------------------------------------------------------------

    def filters_for(self, sub: Any) -> ViewFilters:
        """This session's view filters of ``sub`` (its own, not the subscription's)."""
        f = self._filters.get(id(sub))
        if f is None:
            f = self._filters[id(sub)] = ViewFilters()
        return f

    def _subscription(self, spec: ViewSpec) -> Any:
        if self.owned:
            sub = spec.sub
            if sub is None:
                raise ValueError(f"the spec of {spec.view} {spec.topic!r} has no subscription")
            if all(sub is not s for s in self.owned_subs):
                self.owned_subs.append(sub)
            return sub
        if spec.url is None:
            if spec.sub is None:
                raise ValueError(f"{spec.view} {spec.topic!r}: no server URL and no subscription")
            return spec.sub  # an outside feed: shared read-only, never closed by a session
        from ..client.connection import Connection

        token = self.viewer_token or spec.token
        where = spec.urls or spec.url  # a cluster's nodes, or one server
        key = (where, token)
        conn = self.connections.get(key)
        if conn is None:
            conn = self.connections[key] = Connection(
                list(where) if isinstance(where, tuple) else where, token=token)
        sub = conn.subscribe(str(spec.topic), window=spec.window)
        if all(sub is not s for s in self.owned_subs):
            self.owned_subs.append(sub)
        return sub

    def _owns(self, sub: Any) -> bool:
        return any(sub is s for s in self.owned_subs)

    def set_paused(self, sub: Any, paused: bool) -> None:
        """Pause/resume this session's views of ``sub`` (and ``sub`` if the session owns it)."""
        if self._owns(sub):
            (sub.pause if paused else sub.resume)()
        for v in self.views:
            if v.sub is sub and v.kind != "controls":
                v.set_paused(paused)

    def set_window(self, sub: Any, rows: int) -> None:
        """Resize ``sub``'s window (if the session owns it) and its charts here."""
        if self._owns(sub):
            sub.machine.resize(rows)
        for v in self.views:
            if v.sub is sub and isinstance(v, ServerChart):
                v.core.window = rows

    # -- building ----------------------------------------------------------------------

    def build(self) -> Any:
        """The root layout model, with every view made and started."""
        dash = self.dash
        body = self._model(dash.root)
        header = Div(text=f"<h2 style='margin:4px 0'>{_escape(dash.title)}</h2>",
                     sizing_mode="stretch_width")
        sheets = [GlobalInlineStyleSheet(css=DARK_CSS)] if dash.theme == "dark" else []
        root = column(header, body, sizing_mode="stretch_width", stylesheets=sheets)
        root.name = "livestream-dashboard"
        for v in self.views:
            v.start()
        return root

    def _model(self, node: Any) -> Any:
        if isinstance(node, L.ViewSpec):
            sub = self._subscription(node)
            if self.owned and node.live is not None and hasattr(node.live, "close"):
                # the notebook view the served script made: this session draws its own
                node.live.close()
            view = VIEW_CLASSES[node.view](self, node, sub)
            self.views.append(view)
            return view.model
        if isinstance(node, L.Text):
            return Div(text=node.html(), sizing_mode="stretch_width")
        if isinstance(node, L.Row):
            return row(*[self._model(c) for c in node.children], sizing_mode="stretch_width")
        if isinstance(node, L.Column):
            return column(*[self._model(c) for c in node.children], sizing_mode="stretch_width")
        if isinstance(node, L.Tabs):
            return Tabs(tabs=[TabPanel(child=self._model(c), title=t) for t, c in node.tabs],
                        sizing_mode="stretch_width")
        raise TypeError(f"not a dashboard node: {node!r}")

    def callbacks(self) -> int:
        return sum(1 for v in self.views if v._callback is not None)

    def connected(self) -> bool:
        """Whether a browser is connected to this session (its views draw only then;
        True outside a server session, where there is no connection to ask)."""
        return session_connected(self.doc) is not False

    # -- release -----------------------------------------------------------------------

    def close(self, destroyed: bool = False) -> None:
        """Close the views; close the subscriptions and connections this session owns."""
        if self.closed:
            return
        self.closed = True
        for v in self.views:
            try:
                v.close(destroyed=destroyed)
            except Exception:
                log.exception("livestream: closing a dashboard view failed")
        self.views.clear()
        conns = list(self.connections.values())
        if self.owned:
            for sub in self.owned_subs:
                src = getattr(sub, "source", None)
                others = list(getattr(src, "subscriptions", {}).values()) if src else []
                if src is not None and hasattr(src, "close") and hasattr(src, "subscriptions") \
                        and all(any(o is s for s in self.owned_subs) for o in others):
                    conns.append(src)
        for sub in self.owned_subs:
            try:
                sub.close()
            except Exception:
                log.exception("livestream: closing a dashboard subscription failed")
        seen: set[int] = set()
        for conn in conns:
            if id(conn) in seen:
                continue
            seen.add(id(conn))
            try:
                conn.close()
            except Exception:
                log.exception("livestream: closing a dashboard connection failed")
        self.owned_subs.clear()
        self.connections.clear()
        self._filters.clear()
        with contextlib.suppress(AttributeError):
            del self.doc._livestream_views  # the document may outlive the session briefly
        with _lock:
            _sessions.pop(id(self), None)

    def _on_session_destroyed(self, session_context: Any) -> None:
        self.close(destroyed=True)


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def build_document(dash: Dashboard, doc: Document, *, owned: bool = False,
                   viewer_tokens: ViewerTokenPolicy = "optional") -> SessionViews:
    """Add ``dash`` to a server session's document ``doc`` with views of its own.

    ``owned``: the session owns the subscriptions of the specs (a script run for
    this session opened them) and closes them at the end; otherwise it opens its
    own connection per server URL, with the viewer's token (``?livestream_token=``)
    when there is one and ``viewer_tokens`` is not ``"ignore"``; ``"required"``
    shows a note instead of views when there is none. Call on the document's loop
    (Bokeh does, when it creates a session).
    """
    if viewer_tokens not in VIEWER_TOKEN_POLICIES:
        raise ValueError(f"viewer_tokens must be one of {VIEWER_TOKEN_POLICIES}")
    token = None if owned or viewer_tokens == "ignore" else viewer_token(doc)
    sv = SessionViews(dash, doc, owned=owned, token=token)
    with _lock:
        _sessions[id(sv)] = sv
    try:
        if viewer_tokens == "required" and token is None and not owned:
            log.info("livestream: dashboard session without a viewer token refused")
            root = Div(text=f"<p>This dashboard shows each viewer the topics their own "
                            f"livestream token allows. Open it with your token: "
                            f"<code>?{VIEWER_TOKEN_ARG}=…</code> after the page address.</p>",
                       name="livestream-token-required")
        else:
            root = sv.build()
    except Exception:
        sv.close()
        raise
    doc.add_root(root)
    doc.title = dash.title
    if dash.theme == "dark":
        doc.theme = "dark_minimal"
    ref = weakref.ref(sv)

    def destroyed(session_context: Any) -> None:
        s = ref()
        if s is not None:
            s._on_session_destroyed(session_context)

    doc.on_session_destroyed(destroyed)
    doc._livestream_views = sv  # type: ignore[attr-defined]  # keeps the session's views alive
    return sv


# -- serving ------------------------------------------------------------------------------


def ensure_local_resources() -> None:
    """Make the Bokeh server serve BokehJS itself (never from a CDN)."""
    from bokeh.settings import settings

    mode = settings.resources(default="server")
    if mode not in ("server", "server-dev", "inline", "absolute", "relative",
                    "absolute-dev", "relative-dev"):
        log.warning("livestream: BOKEH_RESOURCES=%s would load BokehJS from a CDN; "
                    "the dashboard server serves it itself", mode)
        settings.resources.set_value("server")


def default_origins(host: str, port: int) -> list[str]:
    """The WebSocket origins a dashboard accepts by default: the loopback names
    with the server's port, and the bound host if it is a name or address."""
    origins = [f"localhost:{port}", f"127.0.0.1:{port}"]
    if host not in ("", "0.0.0.0", "::", "localhost", "127.0.0.1"):
        origins.append(f"{host}:{port}")
    return origins


def pick_port(host: str) -> int:
    """A port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_STREAM) as s:
        s.bind((host or "0.0.0.0", 0))
        return int(s.getsockname()[1])


def session_options(session_expiry: float) -> dict[str, int]:
    """Bokeh server options that destroy a session ``session_expiry`` s after its page closed."""
    if session_expiry <= 0:
        raise ValueError("session_expiry must be positive (seconds)")
    ms = max(100, round(session_expiry * 1000))
    return {"unused_session_lifetime_milliseconds": ms,
            "check_unused_sessions_milliseconds": max(100, ms // 2)}


class DashboardServer:
    """A running in-process Bokeh server of one dashboard. ``url``, ``port``, ``stop()``."""

    def __init__(self, server: Any, url: str, loop: asyncio.AbstractEventLoop,
                 origins: list[str]) -> None:
        self.server = server
        self.url = url
        self.loop = loop
        self.allow_websocket_origin = origins
        self.stopped = False

    @property
    def port(self) -> int:
        return int(self.server.port)

    def sessions(self) -> int:
        """Sessions this server holds (live or waiting to expire)."""
        from ..loop import run_in_loop

        def count() -> int:
            return len(self.server.get_sessions())

        return run_in_loop(self.loop, count, timeout=10)

    def stop(self) -> None:
        """Stop serving and release every session's views (safe from any thread)."""
        if self.stopped:
            return
        self.stopped = True
        from ..loop import run_in_loop

        def stop() -> None:
            try:
                self.server.unlisten()
                self.server.stop(wait=False)
            finally:
                with _lock:
                    mine = [s for s in _sessions.values()
                            if getattr(s.doc, "_livestream_server", None) is self]
                for s in mine:
                    s.close()

        if self.loop.is_closed():
            return
        run_in_loop(self.loop, stop, timeout=30)

    def __repr__(self) -> str:
        return f"<DashboardServer {self.url}{' stopped' if self.stopped else ''}>"


def serve_dashboard(dash: Dashboard, *, port: int = 5006, host: str = "127.0.0.1",
                    path: str = "/", allow_websocket_origin: Iterable[str] | None = None,
                    show: bool = False, session_expiry: float = 2.0,
                    viewer_tokens: ViewerTokenPolicy = "optional",
                    **server_kw: Any) -> DashboardServer:
    """Start a Bokeh server of ``dash`` on the running loop (or livestream's background
    loop); see :meth:`Dashboard.serve`."""
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server
    from tornado.ioloop import IOLoop

    from ..loop import get_loop, run_in_loop

    ensure_local_resources()
    if viewer_tokens not in VIEWER_TOKEN_POLICIES:
        raise ValueError(f"viewer_tokens must be one of {VIEWER_TOKEN_POLICIES}")
    if not path.startswith("/"):
        path = "/" + path
    loop, _ = get_loop()
    if port == 0:
        port = pick_port(host)
    origins = list(allow_websocket_origin) if allow_websocket_origin else \
        default_origins(host, port)
    holder: dict[str, DashboardServer] = {}

    def modify(doc: Document) -> None:
        doc._livestream_server = holder.get("server")  # type: ignore[attr-defined]
        build_document(dash, doc, owned=False, viewer_tokens=viewer_tokens)

    def start() -> DashboardServer:
        app = Application(FunctionHandler(modify))
        kw = {**session_options(session_expiry), **server_kw}
        srv = Server({path: app}, io_loop=IOLoop.current(), port=port, address=host,
                     allow_websocket_origin=origins, **kw)
        srv.start()
        shown = "localhost" if host in ("", "0.0.0.0", "::") else host
        url = f"http://{shown}:{srv.port}{path}"
        ds = DashboardServer(srv, url, loop, origins)
        holder["server"] = ds
        return ds

    from .. import cells

    cells.release_previous()
    ds = run_in_loop(loop, start, timeout=30)
    cells.own(ds, ds.stop)  # a re-run cell stops the dashboard server it started before
    if show:
        import webbrowser

        webbrowser.open(ds.url)
    log.info("livestream: dashboard %r at %s", dash.title, ds.url)
    return ds
