"""Tables, ticker cards and controls without a transport, as :class:`ChartCore` is for charts.

:class:`TableCore` (the latest rows or a keyed table, filtered, with a caption),
:class:`TickerCore` (the last value per key and its change) and
:class:`FilterChoices` (the values a controls filter offers) hold what a view
shows and know when it changed; :func:`status_note` says what the view's
subscription is going through. The notebook widgets
(:mod:`livestream.notebook.widgets`, HTML ipywidgets) and the Bokeh server app's
views (:mod:`livestream.dashboard.server`, Bokeh models) only ship the result.
Nothing here touches a widget, a document or a loop.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

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


def is_keyed(sub: Any) -> bool:
    """Whether ``sub`` holds a table (keyed or replaced topic) rather than a rolling window."""
    return bool(getattr(sub, "key", ())) or getattr(sub, "mode", None) in ("keyed", "replace")


def latest_rows(sub: Any, rows: int, sort_by: str | None = None,
                ascending: bool = True) -> pd.DataFrame:
    """The latest ``rows`` rows of an append window, newest first; or the first
    ``rows`` of a keyed table (sorted by ``sort_by`` if given)."""
    if is_keyed(sub):
        df = sub.df
        if sort_by and sort_by in df.columns:
            df = df.sort_values(sort_by, ascending=ascending, kind="stable")
        return df.head(rows)
    end = getattr(sub, "offset", None) or 0
    frame, _, _ = sub.rows_since(max(0, end - rows))
    if frame is None:
        return pd.DataFrame()
    return frame.tail(rows).iloc[::-1]


def apply_filters(df: pd.DataFrame, filters: dict[str, set[str]] | None) -> pd.DataFrame:
    """Rows of ``df`` whose filtered columns hold one of the allowed values."""
    for col, allowed in (filters or {}).items():
        if allowed is not None and col in df.columns:
            df = df[df[col].astype(str).isin(allowed)]
    return df


class TickerState:
    """The last ``value`` per ``by`` key, its first value and direction of change."""

    def __init__(self, value: str, by: str | None = None, decimals: int | None = None) -> None:
        self.value_column = value
        self.by = by
        self.decimals = decimals
        self.offset: int | None = None
        self.first: dict[object, float] = {}
        self.last: dict[object, float] = {}
        self.direction: dict[object, int] = {}

    def take(self, df: pd.DataFrame | None) -> None:
        """Take the last value per key from ``df`` (rows in arrival order)."""
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
            prev = self.last.get(k)
            self.first.setdefault(k, v)
            if prev is not None and v != prev:
                self.direction[k] = 1 if v > prev else -1
            self.last[k] = v

    def update(self, sub: Any) -> int:
        """Take what ``sub`` received since the last call; returns the rows read."""
        if is_keyed(sub):
            df = sub.df
            self.take(df)
            return len(df)
        frame, end, _ = sub.rows_since(self.offset)
        self.offset = end
        if frame is None:
            return 0
        self.take(frame)
        return len(frame)

    def fmt(self, v: float) -> str:
        if not math.isfinite(v):
            return "–"
        d = self.decimals if self.decimals is not None else _decimals(np.array([v]))
        return f"{v:,.{d}f}"

    def html(self, allowed: set[str] | None = None, note: str = "") -> str:
        """The cards as HTML (keys in ``allowed`` only, if given), with a status note."""
        cards = []
        for k in sorted(self.last, key=str):
            if allowed is not None and str(k) not in allowed:
                continue
            v, first = self.last[k], self.first[k]
            ch = v - first
            pct = (ch / first * 100.0) if first else 0.0
            color = UP if ch > 0 else DOWN if ch < 0 else MUTED
            # the arrow is the change shown beside it (since first seen), never the last
            # tick's direction: "▲ -0.54" contradicted itself
            arrow = "▲" if ch > 0 else "▼" if ch < 0 else ""
            cards.append(
                f"<div class='ls-card' data-key='{html.escape(str(k))}'>"
                f"<div class='k'>{html.escape(str(k))}</div>"
                f"<div class='v'>{self.fmt(v)} <span style='color:{color};font-size:12px'>"
                f"{arrow}</span></div>"
                f"<div style='color:{color}'>{'+' if ch > 0 else ''}{self.fmt(ch)} "
                f"({'+' if pct > 0 else ''}{pct:.2f}%)"
                f" <span class='k'>since first seen</span></div></div>"
            )
        note_html = f"<div style='color:{DOWN}'>{html.escape(note)}</div>" if note else ""
        return f"{_CSS}<div class='ls-cards'>{''.join(cards)}</div>{note_html}"


# -- view cores ---------------------------------------------------------------------------


class _NoFilters:
    columns: dict[str, set[str]] = {}  # noqa: RUF012 - never written
    epoch = 0


def view_filters(sub: Any) -> Any:
    """The view filters (``columns``, ``epoch``) of ``sub``, or an empty set of them."""
    return getattr(sub, "view_filters", None) or _NoFilters


def status_note(sub: Any, paused: bool = False, last_error: str | None = None) -> str:
    """What a view says after its caption: paused, closed, the subscription's state
    when it is not live, the view's last error."""
    notes = []
    if paused:
        notes.append("paused")
    if getattr(sub, "closed", False):
        notes.append("closed")
    else:
        state = getattr(getattr(sub, "stats_data", None), "state", "live")
        if state not in ("live", "connecting"):
            notes.append(state)
    if last_error:
        notes.append(f"⚠ {last_error}")
    return " · ".join(notes)


class _CardCore:
    """What a table and a ticker share: redraw only when the subscription, the view
    filters or the status note changed since the last draw, and never while paused."""

    sub: Any
    filters: Any
    _seen: tuple | None

    def _changed_note(self, paused: bool, last_error: str | None) -> str | None:
        """The status note ("" for none) when there is something new to draw, else None."""
        note = status_note(self.sub, paused, last_error)
        key = (self.sub.version, self.filters.epoch, note)
        if key == self._seen or paused:
            return None
        self._seen = key
        return note


class TableCore(_CardCore):
    """A live table of one subscription: the latest ``rows`` rows (newest first) or a
    keyed table (sorted by ``sort_by``), ``columns`` only if given, filtered by the
    view filters (``filters``: the subscription's unless a dashboard session passes its
    own)."""

    def __init__(self, sub: Any, rows: int = 20, *, columns: Sequence[str] | None = None,
                 sort_by: str | None = None, ascending: bool = True,
                 filters: Any = None) -> None:
        self.sub = sub
        self.rows = int(rows)
        self.columns = list(columns) if columns else None
        self.sort_by = sort_by
        self.ascending = bool(ascending)
        self.filters = filters if filters is not None else view_filters(sub)
        self._seen: tuple | None = None

    def frame(self, paused: bool = False, last_error: str | None = None,
              ) -> tuple[pd.DataFrame, str] | None:
        """``(rows, caption)`` to show now, or None when nothing changed since the last
        call (or the view is paused)."""
        sub = self.sub
        note = self._changed_note(paused, last_error)
        if note is None:
            return None
        df = apply_filters(latest_rows(sub, self.rows, self.sort_by, self.ascending),
                           self.filters.columns)
        if self.columns:
            df = df[[c for c in self.columns if c in df.columns]]
        caption = f"{getattr(sub, 'name', '')} · {len(sub):,} rows"
        return df, caption + (f" · {note}" if note else "")

    @staticmethod
    def cells(df: pd.DataFrame) -> dict[str, tuple[list[str], bool]]:
        """Column name → (formatted values, right-aligned?) of ``df``."""
        return {str(c): (format_column(df[c]), _numeric(df[c]) or is_datetime(df[c]))
                for c in df.columns}


class TickerCore(_CardCore):
    """Live value cards of one subscription: the last ``value`` per ``by`` (see
    :class:`TickerState`), the keys shown limited by the view filters."""

    def __init__(self, sub: Any, value: str, by: str | None = None, *,
                 decimals: int | None = None, filters: Any = None) -> None:
        self.sub = sub
        self.state = TickerState(value, by, decimals)
        self.filters = filters if filters is not None else view_filters(sub)
        self._seen: tuple | None = None

    def html(self, paused: bool = False, last_error: str | None = None,
             ) -> tuple[str, int] | None:
        """``(cards HTML, rows read)``, or None when nothing changed (or paused)."""
        sub = self.sub
        note = self._changed_note(paused, last_error)
        if note is None:
            return None
        rows = self.state.update(sub)
        by = self.state.by
        allowed = self.filters.columns.get(by) if by else None
        return self.state.html(allowed, note), rows


def guess_filter_column(sub: Any) -> str | None:
    """The column a controls filter picks values of by default: the first key column,
    else the first text or category column."""
    key = getattr(sub, "key", ())
    if key:
        return str(key[0])
    schema = getattr(sub, "schema", None)
    if schema is not None:
        for f in schema:
            if f.type in ("string", "category"):
                return str(f.name)
    return None


class FilterChoices:
    """The values a filter of ``column`` offers: every value seen so far, sorted."""

    def __init__(self, column: str | None) -> None:
        self.column = column
        self.known: list[str] = []

    def update(self, sub: Any) -> list[str] | None:
        """The choices if they changed since the last call (values never disappear),
        else None."""
        if not self.column:
            return None
        try:
            df = sub.df
        except Exception:
            return None
        if self.column not in df.columns:
            return None
        values = {str(v) for v in df[self.column].dropna().unique().tolist()}
        merged = sorted(values | set(self.known))
        if merged == self.known:
            return None
        self.known = merged
        return merged
