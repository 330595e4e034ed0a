"""Live ipywidgets: a table, ticker cards, controls and the connection status.

Each is an ordinary ipywidget (usable in ``VBox``/``HBox``/``Tab``) driven by a
frame timer on the kernel's loop, like the charts: it redraws at most ``fps``
times a second, only when its subscription changed, and one redraw is one comm
message (an ``HTML`` value update). Widget callbacks (buttons, text boxes) may
arrive on an ipykernel 7 subshell thread; they are handed over to the loop.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as W

from ..views.cards import (
    _CSS,
    FilterChoices,
    TableCore,
    TickerCore,
    frame_html,
    guess_filter_column,
)
from ..views.spec import ViewSpec
from ._runtime import FrameTimer, current_loop, on_loop, track
from ._view import LiveView


class _HTMLView(W.HTML, LiveView):
    """An HTML widget redrawn from a subscription (one comm message per change)."""

    def _set_html(self, value: str) -> bool:
        if value == self.value:
            return False
        self.value = value
        self.view_stats.comm_messages += 1
        return True

    def close(self) -> None:
        """Stop updating and close the widget."""
        if self.closed:
            return
        self._stop_view()
        super().close()

    def __repr__(self) -> str:
        what = getattr(self.sub, "name", None) or getattr(getattr(self, "connection", None),
                                                           "url", "")
        state = "closed" if self.closed else ("paused" if self.paused else "live")
        return f"<{type(self).__name__} {what!r} {state}>"


class LiveTable(_HTMLView):
    """The latest rows of a subscription (newest first), or a keyed topic's table.

    What it shows is its :class:`~livestream.views.cards.TableCore`'s (``.core``)."""

    def __init__(self, sub: Any, rows: int = 20, *, columns: Sequence[str] | None = None,
                 fps: float = 4, sort_by: str | None = None, ascending: bool = True,
                 start: bool = True, **kwargs: Any) -> None:
        super().__init__(value="", **kwargs)
        self.core = TableCore(sub, rows, columns=columns, sort_by=sort_by, ascending=ascending)
        self._view_init(sub, fps)
        self.refresh()
        if start:
            self._start()

    @property
    def rows(self) -> int:
        return self.core.rows

    @property
    def columns(self) -> list[str] | None:
        return self.core.columns

    @property
    def sort_by(self) -> str | None:
        return self.core.sort_by

    @property
    def ascending(self) -> bool:
        return self.core.ascending

    def view_spec(self) -> ViewSpec:
        """What this table shows, for a dashboard (see :class:`~livestream.views.spec.ViewSpec`)."""
        return ViewSpec.of(self.sub, "table", live=self, rows=self.rows, columns=self.columns,
                           fps=self.fps, sort_by=self.sort_by, ascending=self.ascending)

    def _draw(self) -> bool:
        got = self.core.frame(self.paused, self.view_stats.last_error)
        if got is None:
            return False
        df, caption = got
        self.view_stats.rows += len(df)
        return self._set_html(frame_html(df, caption))


class Ticker(_HTMLView):
    """Value cards: the last ``value`` per ``by`` with its change, coloured.

    What it shows is its :class:`~livestream.views.cards.TickerCore`'s (``.core``)."""

    def __init__(self, sub: Any, value: str, by: str | None = None, *, fps: float = 4,
                 decimals: int | None = None, start: bool = True, **kwargs: Any) -> None:
        super().__init__(value="", **kwargs)
        self.core = TickerCore(sub, value, by, decimals=decimals)
        self._view_init(sub, fps)
        self.refresh()
        if start:
            self._start()

    @property
    def state(self) -> Any:
        """The cards' :class:`~livestream.views.cards.TickerState`."""
        return self.core.state

    @property
    def value_column(self) -> str:
        return self.core.state.value_column

    @property
    def by(self) -> str | None:
        return self.core.state.by

    @property
    def decimals(self) -> int | None:
        return self.core.state.decimals

    @property
    def values(self) -> dict[object, float]:
        """Key → last value shown."""
        return dict(self.core.state.last)

    def view_spec(self) -> ViewSpec:
        """What these cards show, for a dashboard (see :class:`~livestream.views.spec.ViewSpec`)."""
        return ViewSpec.of(self.sub, "ticker", live=self, value=self.value_column, by=self.by,
                           fps=self.fps, decimals=self.decimals)

    def _draw(self) -> bool:
        got = self.core.html(self.paused, self.view_stats.last_error)
        if got is None:
            return False
        text, rows = got
        self.view_stats.rows += rows
        return self._set_html(text)


class Controls(W.HBox):
    """Pause/resume, window size and a column filter for a subscription and its views."""

    def __init__(self, sub: Any, filter_column: str | None = None, *, fps: float = 1) -> None:
        self.sub = sub
        self.loop = current_loop(getattr(sub, "loop", None))
        self.closed = False
        self.filter_column = filter_column or guess_filter_column(sub)
        self._choices = FilterChoices(self.filter_column)
        self.pause_button = W.ToggleButton(value=bool(getattr(sub, "paused", False)),
                                           description="Pause", icon="pause",
                                           tooltip="pause/resume the subscription and its views")
        self.window_box = W.BoundedIntText(value=int(getattr(sub, "window", None) or 0),
                                           min=1, max=10_000_000, step=1000,
                                           description="window", layout=W.Layout(width="190px"))
        self.filter_box = W.SelectMultiple(options=[], value=(), rows=3,
                                           description=self.filter_column or "filter",
                                           layout=W.Layout(width="260px"))
        children: list[W.Widget] = [self.pause_button, self.window_box]
        if self.filter_column:
            children.append(self.filter_box)
        super().__init__(children=children)
        self.pause_button.observe(self._on_pause, names="value")
        self.window_box.observe(self._on_window, names="value")
        self.filter_box.observe(self._on_filter, names="value")
        self._timer = FrameTimer(self.loop, fps, self._refresh_options)
        self._refresh_options()
        self._timer.start()
        track(self)

    def view_spec(self) -> ViewSpec:
        """What these controls act on, for a dashboard."""
        return ViewSpec.of(self.sub, "controls", live=self, filter_column=self.filter_column)

    # handlers may run on a subshell thread: hand over to the loop
    def _on_pause(self, change: dict) -> None:
        on_loop(self.loop, self._apply_pause, bool(change["new"]))

    def _apply_pause(self, paused: bool) -> None:
        sub = self.sub
        self.pause_button.description = "Resume" if paused else "Pause"
        self.pause_button.icon = "play" if paused else "pause"
        if paused:
            sub.pause()
        else:
            sub.resume()
        for v in getattr(sub, "views", []):
            (v.pause if paused else v.resume)()

    def _on_window(self, change: dict) -> None:
        on_loop(self.loop, self.sub.set_window, int(change["new"]))

    def _on_filter(self, change: dict) -> None:
        values = list(change["new"])
        on_loop(self.loop, self.sub.set_filter, self.filter_column, values or None)

    def _refresh_options(self) -> None:
        if self.closed:
            return
        merged = self._choices.update(self.sub)
        if merged is not None:
            selected = self.filter_box.value
            self.filter_box.options = merged
            self.filter_box.value = tuple(v for v in selected if v in merged)

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        if self.closed:
            return
        self.closed = True
        self._timer.stop()
        for c in (self.pause_button, self.window_box, self.filter_box):
            c.close()
        super().close()


# -- connection status ---------------------------------------------------------------------

STATE_COLORS = {
    "live": "#1b8a5a",
    "open": "#1b8a5a",
    "connecting": "#b7791f",
    "reconnecting": "#b7791f",
    "paused": "#6b7280",
    "closed": "#6b7280",
    "error": "#c62828",
}


def _subscriptions(conn: Any) -> list[Any]:
    subs = getattr(conn, "subscriptions", None)
    if subs is None:
        return []
    if isinstance(subs, dict):
        return list(subs.values())
    try:
        return list(subs)
    except TypeError:
        return []


class ConnectionStatus(_HTMLView):
    """A connection's status line: state, server, rows/s, lag, reconnects, gaps, errors.

    Reads ``conn.url``, ``conn.state`` (or ``conn.stats.state``), ``conn.stats``
    (``rows_per_s``, ``lag_ms``, ``reconnects``, ``gaps``, optionally ``errors`` and
    ``last_error``) and ``conn.subscriptions`` (their ``stats`` errors, e.g. a
    failing ``on_update`` callback or chart). Redraws twice a second while the
    connection is open.
    """

    def __init__(self, conn: Any, *, fps: float = 2, start: bool = True) -> None:
        super().__init__(value="")
        self.connection = conn
        self._view_init(None, fps, loop=current_loop(getattr(conn, "loop", None)))
        self._final = False
        self.refresh()
        if start:
            self._start()

    def snapshot(self) -> dict[str, Any]:
        """The figures shown, as a dict (for tests and logs)."""
        conn = self.connection
        stats = getattr(conn, "stats", None)
        state = getattr(conn, "state", None) or getattr(stats, "state", None) or "unknown"
        subs = _subscriptions(conn)
        errors = int(getattr(stats, "errors", 0) or 0)
        messages = []
        if getattr(stats, "last_error", None):
            messages.append(str(stats.last_error))
        for s in subs:
            ss = getattr(s, "stats_data", None) or getattr(s, "stats", None)
            if ss is not None and getattr(ss, "errors", 0):
                errors += int(ss.errors)
                if ss.last_error:
                    messages.append(f"{getattr(s, 'name', '?')}: {ss.last_error}")
        last_error = " | ".join(messages) if messages else None

        def num(name: str, default: float | None = 0.0) -> float | None:
            v = getattr(stats, name, default)
            return default if v is None else float(v)

        return {
            "state": str(state),
            "url": str(getattr(conn, "url", "")),
            "rows_per_s": num("rows_per_s"),
            "lag_ms": num("lag_ms", None),
            "reconnects": int(num("reconnects") or 0),
            "gaps": int(num("gaps") or 0),
            "subscriptions": len(subs),
            "errors": errors,
            "last_error": last_error,
        }

    def _finished(self) -> bool:
        return self._final

    def _draw(self) -> bool:
        snap = self.snapshot()
        if snap["state"] == "closed":
            self._final = True
        color = STATE_COLORS.get(snap["state"], "#6b7280")
        lag = "–" if snap["lag_ms"] is None else f"{snap['lag_ms']:,.0f} ms"
        err = ""
        if snap["errors"]:
            err = (f"<span class='ls-err' title='{html.escape(str(snap['last_error']))}'>"
                   f"⚠ {snap['errors']} error{'s' if snap['errors'] != 1 else ''}: "
                   f"{html.escape(str(snap['last_error'])[:400])}</span>")
        body = (
            f"{_CSS}<div class='ls-status' data-state='{html.escape(snap['state'])}'>"
            f"<span class='ls-pill' style='background:{color}'>{html.escape(snap['state'])}</span>"
            f"<span>{html.escape(snap['url'])}</span>"
            f"<span><b>{snap['rows_per_s']:,.0f}</b> rows/s</span>"
            f"<span>lag <b>{lag}</b></span>"
            f"<span>reconnects <b>{snap['reconnects']}</b></span>"
            f"<span>gaps <b>{snap['gaps']}</b></span>"
            f"<span>subscriptions <b>{snap['subscriptions']}</b></span>{err}</div>"
        )
        return self._set_html(body)


def status_widget(connection: Any) -> ConnectionStatus:
    """The live status widget of a connection (what showing a ``Connection`` displays).

    The connection is expected to have ``url``, ``state`` (connecting, live,
    reconnecting, closed), ``stats`` with ``rows_per_s``, ``lag_ms``,
    ``reconnects``, ``gaps`` (and optionally ``errors``, ``last_error``), and
    ``subscriptions`` (a dict or list of Subscriptions). Missing attributes show
    as zero. Suggested use in ``Connection``::

        def _repr_mimebundle_(self, include=None, exclude=None):
            from livestream.notebook import status_widget
            return status_widget(self)._repr_mimebundle_(include=include, exclude=exclude)
    """
    return ConnectionStatus(connection)


__all__ = ["ConnectionStatus", "Controls", "LiveTable", "Ticker", "status_widget"]

