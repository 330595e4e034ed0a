"""ChartCore: the transport-independent chart (figure + frames), and its JSON spec."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from bokeh.document import Document

from livestream.client.subscription import Subscription
from livestream.views import ChartCore


def trades(start: int, n: int) -> pd.DataFrame:
    off = np.arange(start, start + n)
    return pd.DataFrame({
        "ts": pd.to_datetime(off, unit="ms", utc=True),
        "symbol": np.array(["AAPL", "MSFT", "GOOG"], dtype=object)[off % 3],
        "price": 100.0 + off,
    })


def feed(sub: Subscription, n: int, batch: int = 100) -> None:
    start = sub.offset or 0
    for s in range(start, start + n, batch):
        sub.apply("append", trades(s, batch), offset=s, next_offset=s + batch)


def test_core_draws_frames_into_a_plain_bokeh_document():
    sub = Subscription("trades", window=1000)
    feed(sub, 300)
    core = ChartCore(sub, "ts", "price", by="symbol", window=50)
    doc = Document()
    doc.add_root(core.figure)
    events: list = []
    doc.on_change(lambda e: events.append(e))
    core.draw()
    assert core.points() == 150 and set(core.sources) == {"AAPL", "MSFT", "GOOG"}
    events.clear()
    feed(sub, 30, batch=10)
    core.draw()
    # one stream per series, rolled over at the window
    assert sorted(type(e).__name__ for e in events) == ["ColumnsStreamedEvent"] * 3
    assert {len(s.data["x"]) for s in core.sources.values()} == {50}
    events.clear()
    core.draw()  # nothing new: no events
    assert events == []


def test_status_goes_to_the_title():
    sub = Subscription("trades")
    feed(sub, 10, batch=10)
    core = ChartCore(sub, "ts", "price")
    core.draw(paused=True)
    assert "paused" in core.figure.title.text and core.points() == 0
    core.draw()
    assert "paused" not in core.figure.title.text and core.points() == 10


def test_a_status_that_is_not_bad_keeps_the_title_colour():
    """"paused" (or a saved page's "connecting…") shows in the title's own colour, the
    served app's dark theme's included. A title without a colour is not drawn at all, and
    BokehJS gives it no room: the red status that followed was cut off above the plot."""
    from bokeh.themes import built_in_themes

    for theme in (None, "dark_minimal"):
        sub = Subscription("trades")
        feed(sub, 10, batch=10)
        core = ChartCore(sub, "ts", "price")
        doc = Document()
        doc.add_root(core.figure)
        if theme:
            doc.theme = built_in_themes[theme]
        own = core.figure.title.text_color
        assert own is not None
        core.draw(paused=True)
        assert core.figure.title.text_color == own, theme
        core.set_status("reconnecting", bad=True)
        assert core.figure.title.text_color == "#ef5350"
        core.draw()
        assert core.figure.title.text == "trades: price"
        assert core.figure.title.text_color == own, theme


def test_spec_is_json_and_names_the_figure_sources():
    sub = Subscription("bars", window=1000)
    core = ChartCore(sub, "ts", kind="candlestick", by="symbol", window=77, fps=5)
    core.add_series("AAPL")
    spec = json.loads(json.dumps(core.spec))
    assert spec["topic"] == "bars" and spec["kind"] == "candlestick"
    assert spec["ohlc"] == ["open", "high", "low", "close"]
    assert spec["window"] == 77 and spec["fps"] == 5.0 and spec["x_type"] == "datetime"
    assert spec["columns"] == ["x", "open", "high", "low", "close", "inc"]
    src = core.sources["AAPL"]
    assert spec["series"]["AAPL"]["source"] == src.id
    assert spec["colors"]["AAPL"] == spec["series"]["AAPL"]["color"]
    assert spec["figure"] == core.figure.id and spec["mode"] == "append"


def test_live_chart_is_built_on_the_core():
    sub = Subscription("trades")
    feed(sub, 30, batch=10)
    chart = sub.chart(x="ts", y="price", by="symbol", start=False)
    chart.send = lambda content, buffers=None: None
    assert isinstance(chart.core, ChartCore) and chart.figure is chart.core.figure
    assert chart.refresh() and chart.points() == 30
    assert chart.spec["by"] == "symbol" and chart.options["y"] == "price"
    chart.close()


def test_an_empty_chart_gives_its_auto_ranges_an_extent_until_data_comes():
    """BokehJS logs "could not set initial ranges" at each paint of a plot whose auto ranges
    have no data: a hidden renderer holds two points exactly while no series holds one."""
    from livestream.views.chart_core import EMPTY_RANGES_NAME

    for kind, extra in (("line", {}), ("candlestick", {}), ("bar", {"x": "symbol"})):
        sub = Subscription("trades")
        opts = {"x": "ts", "y": "price", "kind": kind, **extra}
        if kind == "candlestick":
            opts.pop("y")
        core = ChartCore(sub, **opts)
        hidden = [r for r in core.figure.renderers if r.name == EMPTY_RANGES_NAME]
        assert len(hidden) == 1 and hidden[0].visible is False
        assert hidden[0].data_source is core.empty_ranges
        assert len(core.empty_ranges.data["px"]) == 2, kind
        core.draw()  # nothing yet: still two points
        assert len(core.empty_ranges.data["px"]) == 2, kind
        df = trades(0, 10).assign(open=1.0, high=2.0, low=0.5, close=1.5)
        sub.apply("append", df, offset=0, next_offset=10)
        core.draw()
        assert core.points() > 0 and len(core.empty_ranges.data["px"]) == 0, kind
        # a snapshot without rows: empty again, the extent comes back
        sub.apply("snapshot", df.iloc[:0], offset=10, next_offset=10)
        core.redraw()
        core.draw()
        assert core.points() == 0, kind
        assert len(core.empty_ranges.data["px"]) == 2, kind
