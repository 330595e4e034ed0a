"""Live ipywidgets: a table, ticker cards, controls and the connection status.

Each is an ordinary ipywidget (usable in ``VBox``/``HBox``/``Tab``) driven by a
frame timer on the kernel's loop, like the charts: it redraws at most ``fps``
times a second, only when its subscription changed, and one redraw is one comm
message (an ``HTML`` value update). Widget callbacks (buttons, text boxes) may
arrive on an ipykernel 7 subshell thread; they are handed over to the loop.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd

from ._runtime import FrameTimer, current_loop, on_loop, track
from ._view import LiveView
from .convert import is_datetime

UP = "#1b8a5a"
DOWN = "#c62828"
MUTED = "#6b7280"

_CSS = (
    "<style>"
    ".ls-table{border-collapse:collapse;font:12px/1.4 var(--jp-code-font-family,monospace)}"
    ".ls-table th{text-align:right;padding:2px 8px;border-bottom:1px solid #999}"
    ".ls-table td{text-align:right;padding:1px 8px;white-space:nowrap}"
    ".ls-table td.s,.ls-table th.s{text-align:left}"
    ".ls-table tr:nth-child(even){background:rgba(127,127,127,.08)}"
    ".ls-cards{display:flex;flex-wrap:wrap;gap:8px}"
    ".ls-card{border:1px solid rgba(127,127,127,.35);border-radius:6px;padding:6px 10px;"
    "min-width:110px;font:13px var(--jp-ui-font-family,sans-serif)}"
    ".ls-card .k{font-size:11px;color:#6b7280}.ls-card .v{font-size:20px;font-weight:600}"
    ".ls-status{font:12px var(--jp-ui-font-family,sans-serif);display:flex;gap:14px;"
    "align-items:center;flex-wrap:wrap}"
    ".ls-pill{border-radius:10px;padding:1px 9px;color:white;font-weight:600}"
    ".ls-err{color:#c62828}"
    "</style>"
)


# -- formatting -------------------------------------------------------------------------

def _decimals(values: np.ndarray) -> int:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return 2
    m = float(np.median(np.abs(finite)))
    if m == 0 or m >= 100:
        return 2
    if m >= 1:
        return 3
    return max(2, min(8, 2 - math.floor(math.log10(m)) + 1))


def format_column(s: pd.Series) -> list[str]:
    """Human-friendly strings for one column (thousands separators, times)."""
    if is_datetime(s):
        vals = s.dt.tz_localize(None) if isinstance(s.dtype, pd.DatetimeTZDtype) else s
        if len(vals) and vals.notna().any():
            span = vals.max() - vals.min()
            fmt = "%H:%M:%S.%f" if span < pd.Timedelta(days=1) else "%Y-%m-%d %H:%M:%S"
        else:
            fmt = "%H:%M:%S.%f"
        out = vals.dt.strftime(fmt).fillna("")
        if fmt.endswith("%f"):
            return [v[:-3] if v else v for v in out.tolist()]
        return out.tolist()
    if pd.api.types.is_bool_dtype(s.dtype):
        return ["" if pd.isna(v) else ("✓" if v else "·") for v in s.tolist()]
    if pd.api.types.is_integer_dtype(s.dtype):
        return ["" if pd.isna(v) else f"{int(v):,}" for v in s.tolist()]
    if pd.api.types.is_float_dtype(s.dtype):
        arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
        d = _decimals(arr)
        return ["" if not math.isfinite(v) else f"{v:,.{d}f}" for v in arr.tolist()]
    return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in s.tolist()]


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def frame_html(df: pd.DataFrame, caption: str = "") -> str:
    """An HTML table of ``df`` with formatted columns (no index)."""
    cols = list(df.columns)
    formatted = {c: format_column(df[c]) for c in cols}
    cls = {c: "" if _numeric(df[c]) or is_datetime(df[c]) else "s" for c in cols}
    head = "".join(f'<th class="{cls[c]}">{html.escape(str(c))}</th>' for c in cols)
    body = []
    for i in range(len(df)):
        cells = "".join(f'<td class="{cls[c]}">{html.escape(formatted[c][i])}</td>' for c in cols)
        body.append(f"<tr>{cells}</tr>")
    cap = f"<caption style='text-align:left;color:{MUTED}'>{html.escape(caption)}</caption>"
    return (f"{_CSS}<table class='ls-table'>{cap if caption else ''}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


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
        sub = self.sub
        keyed = bool(getattr(sub, "key", ())) or getattr(sub, "mode", None) in ("keyed", "replace")
        if keyed:
            df = sub.df
            if self.sort_by and self.sort_by in df.columns:
                df = df.sort_values(self.sort_by, ascending=self.ascending, kind="stable")
            return df.head(self.rows)
        end = getattr(sub, "offset", None) or 0
        frame, _, _ = sub.rows_since(max(0, end - self.rows))
        if frame is None:
            return pd.DataFrame()
        return frame.tail(self.rows).iloc[::-1]

    def _draw(self) -> bool:
        sub = self.sub
        key = (sub.version, getattr(sub, "_ls_filter_epoch", 0), _status_suffix(sub, self))
        if key == self._seen or self.paused:
            return False
        self._seen = key
        df = self._latest()
        filters = getattr(sub, "_ls_filters", None) or {}
        for col, allowed in filters.items():
            if col in df.columns:
                df = df[df[col].astype(str).isin(allowed)]
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
        self.value_column = value
        self.by = by
        self.decimals = decimals
        self._offset: int | None = None
        self._first: dict[object, float] = {}
        self._last: dict[object, float] = {}
        self._dir: dict[object, int] = {}
        self._seen = (-1, -1, None)
        self._view_init(sub, fps)
        self.refresh()
        if start:
            self._start()

    @property
    def values(self) -> dict[object, float]:
        """Key → last value shown."""
        return dict(self._last)

    def _take(self, df: pd.DataFrame) -> None:
        if df is None or len(df) == 0 or self.value_column not in df.columns:
            return
        if self.by is not None and self.by in df.columns:
            last = df.drop_duplicates(subset=[self.by], keep="last")
            keys = last[self.by].tolist()
            vals = last[self.value_column].to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            keys = [self.value_column]
            vals = df[self.value_column].iloc[-1:].to_numpy(dtype=np.float64, na_value=np.nan)
        for k, v in zip(keys, vals.tolist(), strict=True):
            prev = self._last.get(k)
            self._first.setdefault(k, v)
            if prev is not None and v != prev:
                self._dir[k] = 1 if v > prev else -1
            self._last[k] = v

    def _draw(self) -> bool:
        sub = self.sub
        key = (sub.version, getattr(sub, "_ls_filter_epoch", 0), _status_suffix(sub, self))
        if key == self._seen or self.paused:
            return False
        self._seen = key
        keyed = bool(getattr(sub, "key", ())) or getattr(sub, "mode", None) in ("keyed", "replace")
        if keyed:
            df = sub.df
            self.view_stats.rows += len(df)
            self._take(df)
        else:
            frame, end, _ = sub.rows_since(self._offset)
            self._offset = end
            if frame is not None:
                self.view_stats.rows += len(frame)
                self._take(frame)
        return self._set_html(self._html())

    def _fmt(self, v: float) -> str:
        if not math.isfinite(v):
            return "–"
        d = self.decimals if self.decimals is not None else _decimals(np.array([v]))
        return f"{v:,.{d}f}"

    def _html(self) -> str:
        filters = getattr(self.sub, "_ls_filters", None) or {}
        allowed = filters.get(self.by) if self.by else None
        cards = []
        for k in sorted(self._last, key=str):
            if allowed is not None and str(k) not in allowed:
                continue
            v, first = self._last[k], self._first[k]
            ch = v - first
            pct = (ch / first * 100.0) if first else 0.0
            color = UP if ch > 0 else DOWN if ch < 0 else MUTED
            arrow = {1: "▲", -1: "▼"}.get(self._dir.get(k, 0), "")
            acol = UP if self._dir.get(k, 0) > 0 else DOWN
            cards.append(
                f"<div class='ls-card' data-key='{html.escape(str(k))}'>"
                f"<div class='k'>{html.escape(str(k))}</div>"
                f"<div class='v'>{self._fmt(v)} <span style='color:{acol};font-size:12px'>"
                f"{arrow}</span></div>"
                f"<div style='color:{color}'>{'+' if ch > 0 else ''}{self._fmt(ch)} "
                f"({'+' if pct > 0 else ''}{pct:.2f}%)</div></div>"
            )
        suffix = _status_suffix(self.sub, self)
        note = f"<div style='color:{DOWN}'>{html.escape(suffix)}</div>" if suffix else ""
        return f"{_CSS}<div class='ls-cards'>{''.join(cards)}</div>{note}"


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

