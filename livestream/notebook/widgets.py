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
import pandas as pd

from ..views.cards import (  # noqa: F401 - re-exported
    _CSS,
    DOWN,
    MUTED,
    UP,
    TickerState,
    _decimals,
    _numeric,
    apply_filters,
    format_column,
    frame_html,
    is_keyed,
    latest_rows,
)
from ._runtime import FrameTimer, current_loop, on_loop, track
from ._view import LiveView


def _status_suffix(sub: Any, view: LiveView) -> str:
    notes = []
    if view.paused:
        notes.append("paused")
    if getattr(sub, "closed", False):
        notes.append("closed")
    elif getattr(getattr(sub, "stats_data", None), "state", "live") not in ("live", "connecting"):
        notes.append(sub.stats_data.state)
    if view.view_stats.last_error:
        notes.append(f"⚠ {view.view_stats.last_error}")
    return " · ".join(notes)


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
    """The latest rows of a subscription (newest first), or a keyed topic's table."""

    def __init__(self, sub: Any, rows: int = 20, *, columns: Sequence[str] | None = None,
                 fps: float = 4, sort_by: str | None = None, ascending: bool = True,
                 start: bool = True, **kwargs: Any) -> None:
        super().__init__(value="", **kwargs)
        self.rows = int(rows)
        self.columns = list(columns) if columns else None
        self.sort_by = sort_by
        self.ascending = ascending
        self._seen = (-1, -1, None)
        self._view_init(sub, fps)
        self.refresh()
        if start:
            self._start()

    def _latest(self) -> pd.DataFrame:
        return latest_rows(self.sub, self.rows, self.sort_by, self.ascending)

    def _draw(self) -> bool:
        sub = self.sub
        key = (sub.version, getattr(sub, "_ls_filter_epoch", 0), _status_suffix(sub, self))
        if key == self._seen or self.paused:
            return False
        self._seen = key
        df = apply_filters(self._latest(), getattr(sub, "_ls_filters", None))
        if self.columns:
            df = df[[c for c in self.columns if c in df.columns]]
        self.view_stats.rows += len(df)
        caption = f"{getattr(sub, 'name', '')} · {len(sub):,} rows"
        suffix = _status_suffix(sub, self)
        if suffix:
            caption += f" · {suffix}"
        return self._set_html(frame_html(df, caption))


class Ticker(_HTMLView):
    """Value cards: the last ``value`` per ``by`` with its change, coloured."""

    def __init__(self, sub: Any, value: str, by: str | None = None, *, fps: float = 4,
                 decimals: int | None = None, start: bool = True, **kwargs: Any) -> None:
        super().__init__(value="", **kwargs)
        self.state = TickerState(value, by, decimals)
        self._seen = (-1, -1, None)
        self._view_init(sub, fps)
        self.refresh()
        if start:
            self._start()

    @property
    def value_column(self) -> str:
        return self.state.value_column

    @property
    def by(self) -> str | None:
        return self.state.by

    @property
    def decimals(self) -> int | None:
        return self.state.decimals

    @property
    def values(self) -> dict[object, float]:
        """Key → last value shown."""
        return dict(self.state.last)

    def _draw(self) -> bool:
        sub = self.sub
        key = (sub.version, getattr(sub, "_ls_filter_epoch", 0), _status_suffix(sub, self))
        if key == self._seen or self.paused:
            return False
        self._seen = key
        self.view_stats.rows += self.state.update(sub)
        return self._set_html(self._html())

    def _html(self) -> str:
        filters = getattr(self.sub, "_ls_filters", None) or {}
        allowed = filters.get(self.by) if self.by else None
        return self.state.html(allowed, _status_suffix(self.sub, self))


class Controls(W.HBox):
    """Pause/resume, window size and a column filter for a subscription and its views."""

    def __init__(self, sub: Any, filter_column: str | None = None, *, fps: float = 1) -> None:
        self.sub = sub
        self.loop = current_loop(getattr(sub, "loop", None))
        self.closed = False
        self.filter_column = filter_column or self._guess_filter_column()
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
        self._known: list[str] = []
        self._timer = FrameTimer(self.loop, fps, self._refresh_options)
        self._refresh_options()
        self._timer.start()
        track(self)

    def _guess_filter_column(self) -> str | None:
        key = getattr(self.sub, "key", ())
        if key:
            return key[0]
        schema = getattr(self.sub, "schema", None)
        if schema is not None:
            for f in schema:
                if f.type in ("string", "category"):
                    return f.name
        return None

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
        if self.closed or not self.filter_column:
            return
        try:
            df = self.sub.df
        except Exception:
            return
        if self.filter_column not in df.columns:
            return
        values = sorted({str(v) for v in df[self.filter_column].dropna().unique().tolist()})
        merged = sorted(set(values) | set(self._known))
        if merged != self._known:
            self._known = merged
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


__all__ = ["ConnectionStatus", "Controls", "LiveTable", "Ticker", "format_column",
           "frame_html", "status_widget"]

