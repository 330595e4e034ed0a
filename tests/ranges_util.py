"""Helpers of the "could not set initial ranges" tests (saved pages and the served app): one
chart of every kind over a topic that has no rows yet, the rows published later, and page
probes of the charts' ranges."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from livestream.views.spec import ViewSpec

#: What BokehJS logs while a plot's auto-ranges have no data to follow.
RANGES_WARNING = "could not set initial ranges"

TOPIC = "ticks"

#: (title, chart options): every chart kind, a by= chart (its series appear in the
#: browser), and categorical bars.
CHARTS: list[tuple[str, dict[str, Any]]] = [
    ("line", {"x": "ts", "y": "price", "kind": "line"}),
    ("step", {"x": "ts", "y": "price", "kind": "step"}),
    ("scatter", {"x": "ts", "y": "price", "kind": "scatter"}),
    ("by", {"x": "ts", "y": "price", "by": "sym"}),
    ("candles", {"x": "ts", "kind": "candlestick"}),
    ("bars", {"x": "sym", "y": "price", "kind": "bar", "agg": "last"}),
]

T0 = pd.Timestamp("2024-01-02T09:30:00")


def specs(url: str) -> list[ViewSpec]:
    """The charts of :data:`CHARTS`, as view specs of :data:`TOPIC` on ``url`` (made
    without a subscription: the topic does not exist yet)."""
    return [ViewSpec("chart", TOPIC, {**opts, "title": title}, url=url, window=10_000)
            for title, opts in CHARTS]


def rows(start: int, n: int) -> pd.DataFrame:
    """``n`` ticks one second apart from row ``start``: ts, sym, price and OHLC columns."""
    i = np.arange(start, start + n)
    price = 100.0 + np.sin(i / 5.0)
    return pd.DataFrame({
        "ts": T0 + pd.to_timedelta(i, unit="s"),
        "sym": np.array(["AAPL", "MSFT", "GOOG"], dtype=object)[i % 3],
        "price": price,
        "open": price - 0.5, "high": price + 1.0, "low": price - 1.0, "close": price + 0.5,
    })


def ts_ms(i: int) -> float:
    """Epoch milliseconds of row ``i``'s ts (what a datetime x range holds)."""
    return (T0 + pd.Timedelta(seconds=i)).value / 1e6


#: Per chart title (status cut off): its title text, its x and y range (start, end), and
#: the points its visible series hold.
RANGES_JS = """() => {
  const out = {};
  for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values()) {
    if (m.type !== "Figure" || m.title == null) continue;
    let n = 0;
    for (const r of m.renderers) if (r.visible && r.data_source && r.data_source.data.x)
      n += r.data_source.get_length() || 0;
    const xr = m.x_range, yr = m.y_range;
    out[m.title.text.split(" — ")[0].split("\\n")[0]] = {
      text: m.title.text, points: n, factors: xr.factors ?? null,
      x: [xr.start ?? null, xr.end ?? null], y: [yr.start, yr.end],
    };
  }
  return out;
}"""


def charts(page: Any) -> dict[str, dict[str, Any]]:
    return page.evaluate(RANGES_JS) or {}


def _problems(c: dict[str, dict[str, Any]], first: int, last: int) -> list[str]:
    """What is wrong with the charts ``c`` once rows ``first``..``last`` are drawn: a chart
    without points, or auto ranges that do not cover the rows' extent or reach far past it
    (a placeholder's extent left in)."""
    out = []
    lo, hi = ts_ms(first), ts_ms(last)
    for title, _ in CHARTS:
        v = c.get(title)
        if v is None or v["points"] == 0:
            out.append(f"{title}: no points")
            continue
        if title == "bars":
            if sorted(v["factors"] or []) != ["AAPL", "GOOG", "MSFT"]:
                out.append(f"{title}: factors {v['factors']}")
        elif not (lo - (hi - lo) < v["x"][0] <= lo and hi <= v["x"][1] < hi + (hi - lo)):
            out.append(f"{title}: x range {v['x']} for rows at {lo}..{hi}")
        if not (95 < v["y"][1] < 110 and v["y"][0] < 100 and v["y"][0] > -10):
            out.append(f"{title}: y range {v['y']} for prices 98..102")
    return out


def check_ranges_follow(page: Any, publish: Any, poll: Any) -> None:
    """Rows arrive (``publish(start, n)``): every chart draws them, and each chart's auto
    ranges cover the data (not a placeholder extent), then move on as more rows stream."""
    last: list[Any] = [None]

    def settled(first: int, end: int) -> Any:
        last[0] = _problems(charts(page), first, end)
        return not last[0]

    publish(0, 30)
    try:
        poll(lambda: settled(0, 29), 60, "every chart drawn, its ranges following the rows")
        publish(30, 30)
        poll(lambda: settled(0, 59), 60, "the ranges following the new rows")
    except AssertionError as e:
        raise AssertionError(f"{e}: {last[0]}") from None
