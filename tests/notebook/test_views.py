"""Live views driven directly (no kernel): what a frame draws, and how.

Frames are triggered with ``view.refresh()`` (what the frame timer calls), or run
by the timer on a real asyncio loop where the test is about the timer.
"""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pandas as pd
import pytest

from livestream.client.subscription import Subscription
from livestream.core.schema import Schema
from livestream.notebook._runtime import FrameTimer
from livestream.views.convert import to_float64


def trades(start: int, n: int) -> pd.DataFrame:
    off = np.arange(start, start + n)
    return pd.DataFrame({
        "ts": pd.to_datetime(off, unit="ms", utc=True),
        "symbol": np.array(["AAPL", "MSFT", "GOOG"], dtype=object)[off % 3],
        "price": 100.0 + off,
        "size": (off * 10**10).astype("int64"),  # does not fit int32
    })


def feed(sub: Subscription, n: int, batch: int = 100) -> None:
    start = sub.offset or 0
    for s in range(start, start + n, batch):
        sub.apply("append", trades(s, batch), offset=s, next_offset=s + batch)


class Recorder:
    """Capture what a chart sends over its comm."""

    def __init__(self, chart) -> None:
        self.sent: list[dict] = []
        chart.send = lambda content, buffers=None: self.sent.append(content)

    def events(self) -> list[dict]:
        out = []
        for i in range(2, len(self.sent), 3):
            out += json.loads(self.sent[i]["payload"])["events"]
        return out


def test_many_messages_make_one_stream_per_series_per_frame():
    sub = Subscription("t", window=100_000)
    feed(sub, 300)
    chart = sub.chart(x="ts", y="price", by="symbol", start=False)
    chart.refresh()
    rec = Recorder(chart)
    feed(sub, 3_000, batch=10)  # 300 messages between two frames
    assert chart.refresh()
    assert len(rec.sent) == 3  # one PATCH-DOC: header, metadata, content
    streamed = [e for e in rec.events() if e["kind"] == "ColumnsStreamed"]
    assert len(streamed) == 3  # one stream per series
    assert chart.points() == 3_300
    xs = np.sort(np.concatenate([s.data["x"] for s in chart.sources.values()]))
    assert np.array_equal(xs, np.arange(3_300, dtype=float))  # ms since epoch = offset
    # idle frame: nothing to send
    assert not chart.refresh()
    assert len(rec.sent) == 3


def test_window_rolls_over_per_series_and_can_change():
    sub = Subscription("t", window=100_000)
    feed(sub, 3_000)
    chart = sub.chart(x="ts", y="price", by="symbol", window=100, start=False)
    chart.refresh()
    assert {k: len(s.data["x"]) for k, s in chart.sources.items()} == {
        "AAPL": 100, "MSFT": 100, "GOOG": 100}
    feed(sub, 600)
    chart.refresh()
    assert chart.sources["AAPL"].data["x"][-1] == 3_597.0
    assert len(chart.sources["AAPL"].data["x"]) == 100
    chart.window = 10
    chart.refresh()
    assert {len(s.data["x"]) for s in chart.sources.values()} == {10}


def test_columns_are_binary_friendly():
    ts = pd.Series(pd.to_datetime([0, 1500, None], unit="ms")).dt.tz_localize("UTC")
    out = to_float64(ts)
    assert out.dtype == np.float64 and out[1] == 1500.0 and np.isnan(out[2])
    ny = pd.Series(pd.to_datetime(["2024-01-02 09:30"])).dt.tz_localize("America/New_York")
    assert to_float64(ny)[0] == pd.Timestamp("2024-01-02 09:30").value / 1e6  # wall clock
    big = pd.Series([2**40, 3], dtype="int64")
    assert to_float64(big).dtype == np.float64
    masked = pd.Series([1, None], dtype="Int64")
    assert np.isnan(to_float64(masked)[1])

    sub = Subscription("t")
    feed(sub, 100)
    chart = sub.chart(x="ts", y="size", start=False)
    rec = Recorder(chart)
    chart.refresh()
    text = "".join(m["payload"] for m in rec.sent)
    assert '"dtype":"float64"' in text and '"type":"ndarray"' in text
    assert str(10**10 * 99) not in text  # no JSON list of the int64 values


def test_keyed_topic_bars_update_in_place():
    sub = Subscription("quotes", key=["symbol"])
    q = pd.DataFrame({"symbol": ["A", "B"], "last": [1.0, 2.0]})
    sub.apply("snapshot", q, schema=Schema.from_frame(q), offset=0, next_offset=2)
    chart = sub.chart(x="symbol", y="last", kind="bar", start=False)
    chart.refresh()
    rec = Recorder(chart)
    sub.apply("upsert", pd.DataFrame({"symbol": ["A"], "last": [5.0]}), offset=2, next_offset=3)
    chart.refresh()
    kinds = [e["kind"] for e in rec.events()]
    assert kinds == ["ColumnsPatched"]  # patched in place, not appended
    assert list(chart.sources[None].data["y"]) == [5.0, 2.0]
    sub.apply("upsert", pd.DataFrame({"symbol": ["C"], "last": [3.0]}), offset=3, next_offset=4)
    chart.refresh()
    assert chart.sources[None].data["x"] == ["A", "B", "C"]
    assert list(chart.figure.x_range.factors) == ["A", "B", "C"]


def test_bar_counts_rows_per_category_of_an_append_topic():
    sub = Subscription("chat")
    feed(sub, 300)
    chart = sub.chart(x="symbol", kind="bar", agg="count", start=False)
    chart.refresh()
    data = chart.sources[None].data
    assert dict(zip(data["x"], data["y"], strict=True)) == {"AAPL": 100, "GOOG": 100, "MSFT": 100}


def test_candlestick_of_keyed_bars_and_where():
    sub = Subscription("bars", key=["ts", "symbol"])
    bars = pd.DataFrame({
        "ts": pd.to_datetime([0, 0, 1000, 1000], unit="ms", utc=True),
        "symbol": ["A", "B", "A", "B"],
        "open": [1.0, 5.0, 2.0, 5.0], "high": [3.0, 6.0, 2.5, 7.0],
        "low": [0.5, 4.0, 1.0, 4.5], "close": [2.0, 4.5, 1.5, 6.0],
    })
    sub.apply("snapshot", bars, schema=Schema.from_frame(bars), offset=0, next_offset=4)
    chart = sub.chart(x="ts", kind="candlestick", where={"symbol": "A"}, start=False)
    chart.refresh()
    d = chart.sources[None].data
    assert list(d["x"]) == [0.0, 1000.0] and list(d["inc"]) == [1.0, 0.0]
    assert chart.figure.renderers[1].glyph.width == pytest.approx(700.0)


def test_filter_and_pause_apply_to_views():
    sub = Subscription("t")
    feed(sub, 300)
    chart = sub.chart(x="ts", y="price", by="symbol", start=False)
    table = sub.table(rows=5, start=False)
    chart.refresh()
    sub.set_filter("symbol", ["MSFT"])
    chart.refresh()
    table.refresh()
    assert {k: len(s.data["x"]) for k, s in chart.sources.items()} == {
        "AAPL": 0, "MSFT": 100, "GOOG": 0}
    assert "AAPL" not in table.value and "MSFT" in table.value
    sub.set_filter("symbol", None)
    chart.pause()
    feed(sub, 300)
    chart.refresh()
    assert chart.points() == 100 and "paused" in chart.figure.title.text
    chart.resume()
    chart.refresh()
    assert chart.points() == 600 and "paused" not in chart.figure.title.text


def test_closed_and_gapped_subscriptions_say_so():
    sub = Subscription("t")
    feed(sub, 100)
    chart = sub.chart(x="ts", y="price", start=False)
    chart.refresh()
    sub.receive({"type": "gap", "topic": "t", "reason": "retention"})
    chart.refresh()
    assert "gap" in chart.figure.title.text
    sub.close()
    chart.refresh()
    assert "closed" in chart.figure.title.text


def test_ticker_shows_last_value_and_change():
    sub = Subscription("t")
    feed(sub, 6, batch=6)
    ticker = sub.ticker(value="price", by="symbol", start=False)
    assert ticker.values == {"AAPL": 103.0, "MSFT": 104.0, "GOOG": 105.0}
    feed(sub, 3, batch=3)
    ticker.refresh()
    assert ticker.values["AAPL"] == 106.0
    assert "+3.00" in ticker.value and "▲" in ticker.value


def test_frame_timer_runs_on_its_loop_at_most_fps():
    async def main():
        loop = asyncio.get_running_loop()
        calls: list[float] = []
        done = asyncio.Event()

        def frame():
            calls.append(loop.time())
            assert threading.current_thread() is threading.main_thread()
            if len(calls) == 6:
                done.set()

        timer = FrameTimer(loop, 50, frame)
        threading.Thread(target=timer.start).start()  # start from another thread
        await asyncio.wait_for(done.wait(), 10)
        timer.stop()
        gaps = np.diff(calls)
        assert (gaps >= 1 / 50 - 1e-3).all()  # never closer than one interval

    asyncio.run(main())


def test_chart_created_on_a_loop_draws_by_itself():
    async def main():
        sub = Subscription("t")
        feed(sub, 100)
        chart = sub.chart(x="ts", y="price", fps=50)
        assert chart.loop is asyncio.get_running_loop()
        for _ in range(500):
            if chart.points() == 100:
                break
            await asyncio.sleep(0.01)  # yield to the loop; the condition decides
        assert chart.points() == 100
        chart.close()
        assert not chart._timer.running and chart.points() == 0

    asyncio.run(main())


def test_the_browser_echo_of_a_frame_is_not_applied_again():
    """jupyter_bokeh's browser view sends back the document changes a PATCH-DOC made (seen in
    real JupyterLab: one ColumnsStreamed per stream): the kernel must not re-apply them."""
    sub = Subscription("t", window=100_000)
    feed(sub, 300)
    chart = sub.chart(x="ts", y="price", by="symbol", start=False)
    chart.refresh()
    rec = Recorder(chart)
    feed(sub, 600)
    assert chart.refresh()
    before = chart.points()
    echoes = [e for e in rec.events() if e["kind"] == "ColumnsStreamed"]
    assert echoes
    for e in echoes:
        chart._sync_model(chart, {**e, "event": "jsevent"}, [])
    assert chart.points() == before == 900
