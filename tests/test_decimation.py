"""Display decimation (livestream/views/decimate.py) and how a ChartCore uses it: the points a
chart hands the browser are bounded by its pixel columns, not by its rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bokeh.document import Document
from bokeh.events import RangesUpdate, Reset

from livestream.client.subscription import Subscription
from livestream.views import ChartCore, ChartOptions
from livestream.views.decimate import (
    SeriesDecimator,
    bucket_ids,
    m4_indices,
    max_points,
    visible_slice,
)


def walk(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(n, dtype=np.float64), np.cumsum(rng.standard_normal(n))


# -- the pure functions ------------------------------------------------------------------------


def test_output_is_bounded_by_pixels_not_rows():
    sizes = []
    for n in (10_000, 100_000, 1_000_000):
        x, y = walk(n)
        idx = m4_indices(x, y, 500, tail=100)
        assert len(idx) <= max_points(500, 100)
        sizes.append(len(idx))
    # ten and a hundred times the rows: about the same number of points
    assert max(sizes) < 1.25 * min(sizes)


def test_few_rows_are_kept_as_they_are():
    x, y = walk(300)
    assert np.array_equal(m4_indices(x, y, 100, tail=0), np.arange(300))


def test_extremes_are_kept_in_every_bucket():
    x, y = walk(200_000, seed=3)
    y[123_457] = 1e9  # a single spike
    y[77_777] = -1e9
    idx = m4_indices(x, y, 400, tail=0)
    assert 123_457 in idx and 77_777 in idx
    ids = bucket_ids(x, 400)
    kept_ids = ids[idx]
    for b in np.unique(ids)[::37]:
        rows = y[ids == b]
        kept = y[idx][kept_ids == b]
        assert kept.max() == rows.max() and kept.min() == rows.min()


def test_the_first_and_last_rows_and_the_newest_rows_are_exact():
    x, y = walk(100_000)
    idx = m4_indices(x, y, 300, tail=250)
    assert idx[0] == 0
    assert np.array_equal(idx[-250:], np.arange(100_000 - 250, 100_000))


def test_gaps_stay_visible():
    x, y = walk(100_000)
    y[40_000:40_010] = np.nan  # a hole in the data
    y[90_000] = np.nan
    idx = m4_indices(x, y, 200, tail=0)
    assert np.isnan(y[idx]).sum() == 2  # one NaN per gap's bucket, in place
    assert 40_000 in idx and 90_000 in idx
    # a NaN x is a gap too, and does not break the bucketing
    x2 = x.copy()
    x2[50_000] = np.nan
    idx2 = m4_indices(x2, y, 200, tail=0)
    assert 50_000 in idx2


def test_output_is_in_row_order_and_x_stays_monotone():
    x, y = walk(50_000)
    idx = m4_indices(x, y, 100, tail=10)
    assert np.all(np.diff(idx) > 0)
    assert np.all(np.diff(x[idx]) >= 0)


def test_an_unsorted_x_is_bucketed_by_position():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 100_000)
    y = rng.standard_normal(100_000)
    ids = bucket_ids(x, 100)
    assert np.all(np.diff(ids) >= 0) and ids[-1] == 99
    idx = m4_indices(x, y, 100, tail=0)
    assert len(idx) <= max_points(100, 0) and y[idx].max() == y.max()


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="rows"):
        m4_indices(np.arange(3.0), np.arange(4.0), 10)
    with pytest.raises(ValueError, match="pixel columns"):
        m4_indices(np.arange(3.0), np.arange(3.0), 0)
    with pytest.raises(ValueError, match="decimate"):
        ChartOptions(y="v", decimate=-3)


def test_visible_slice_keeps_one_row_either_side():
    x = np.arange(100, dtype=np.float64)
    assert visible_slice(x, 10.5, 20.5) == slice(10, 22)
    assert visible_slice(x, -5, 500) == slice(0, 100)


# -- the incremental overview ------------------------------------------------------------------


def test_incremental_overview_matches_the_window_and_stays_bounded():
    d = SeriesDecimator(window=50_000, buckets=200, tail=50)
    x, y = walk(400_000, seed=5)
    for s in range(0, len(x), 3_000):
        d.append(x[s:s + 3_000], y[s:s + 3_000])
        ox, oy = d.overview()
        assert len(ox) <= 2 * max_points(200, 50)
        assert np.all(np.diff(ox) >= 0)
        wx, wy = d.x, d.y
        assert ox[0] == wx[0] and ox[-1] == wx[-1]
        assert oy.max() == wy.max() and oy.min() == wy.min()
        assert np.array_equal(ox[-50:], wx[-50:])  # the newest rows exactly
    assert len(d) == 50_000


def test_detail_is_finer_than_the_overview_inside_the_range():
    d = SeriesDecimator(window=200_000, buckets=100, tail=0)
    d.append(*walk(200_000))
    ox, _ = d.overview()
    dx, _ = d.detail(1_000.0, 3_000.0)
    assert dx[0] >= 1_000 - 1 and dx[-1] <= 3_000 + 1
    inside_overview = ((ox >= 1_000) & (ox <= 3_000)).sum()
    assert len(dx) > 10 * inside_overview


# -- in a ChartCore ----------------------------------------------------------------------------


def frame(start: int, n: int, symbols: int = 3) -> pd.DataFrame:
    off = np.arange(start, start + n)
    return pd.DataFrame({
        "t": off.astype(np.float64),
        "sym": np.array([f"S{i}" for i in range(symbols)], dtype=object)[off % symbols],
        "v": np.sin(off / 500.0) + (off % 7) * 0.01,
    })


def feed(sub: Subscription, n: int, batch: int = 5_000) -> None:
    start = sub.offset or 0
    for s in range(start, start + n, batch):
        sub.apply("append", frame(s, batch), offset=s, next_offset=s + batch)


def drawn_core(window: int, **kw) -> tuple[Subscription, ChartCore]:
    sub = Subscription("ticks", window=window)
    core = ChartCore(sub, "t", "v", by="sym", window=window, **kw)
    Document().add_root(core.figure)
    return sub, core


def test_a_chart_holds_points_per_pixel_not_per_row():
    sub, core = drawn_core(300_000, width=400)
    assert core.buckets == 400 and core.spec["decimate"] == 400
    sizes = []
    for _ in range(4):
        feed(sub, 75_000)
        core.draw()
        sizes.append(core.points())
    # 25k → 100k rows per series: the points stay under the bound
    assert max(sizes) <= 3 * 2 * max_points(400)
    src = core.sources["S1"].data
    assert np.all(np.diff(src["x"]) >= 0)
    rows = sub.df
    s1 = rows[rows["sym"] == "S1"]
    assert src["x"][-1] == s1["t"].iloc[-1] and np.max(src["y"]) == s1["v"].max()


def test_decimate_false_draws_every_row():
    sub, core = drawn_core(300_000, decimate=False)
    feed(sub, 60_000)
    core.draw()
    assert core.points() == 60_000 and core.spec["decimate"] == 0


def test_zoom_draws_the_visible_range_in_detail_and_reset_returns_to_the_overview():
    sub, core = drawn_core(300_000, width=200)
    feed(sub, 150_000)
    core.draw()
    overview = core.sources["S0"].data["x"]
    n_over = ((overview >= 10_000) & (overview <= 12_000)).sum()
    doc = core.figure.document
    doc.callbacks.trigger_event(RangesUpdate(core.figure, x0=10_000.0, x1=12_000.0,
                                             y0=0.0, y1=1.0))
    core.draw()
    detail = core.sources["S0"].data["x"]
    assert detail[0] >= 10_000 - 3 and detail[-1] <= 12_000 + 3
    assert len(detail) > 5 * n_over
    # new rows right of the zoomed range leave the detail alone
    feed(sub, 5_000)
    core.draw()
    assert np.array_equal(core.sources["S0"].data["x"], detail)
    doc.callbacks.trigger_event(Reset(core.figure))
    core.draw()
    back = core.sources["S0"].data["x"]
    assert back[0] == 0 and back[-1] == sub.df["t"].iloc[-1] - (sub.df["t"].iloc[-1] % 3)
    assert len(back) <= 2 * max_points(200)


def test_zooming_out_over_everything_is_the_overview():
    sub, core = drawn_core(300_000, width=200)
    feed(sub, 90_000)
    core.draw()
    doc = core.figure.document
    doc.callbacks.trigger_event(RangesUpdate(core.figure, x0=-1e9, x1=1e9, y0=0.0, y1=1.0))
    assert core.zoom is None


def test_a_frame_sends_what_changed_not_the_window():
    from bokeh.document.events import (
        ColumnDataChangedEvent,
        ColumnsPatchedEvent,
        ColumnsStreamedEvent,
    )

    sub, core = drawn_core(300_000, width=200)
    feed(sub, 90_000)
    core.draw()  # the first decimated frame draws each overview whole
    doc = core.figure.document
    events: list = []
    doc.on_change(lambda e: events.append(e))
    for _ in range(5):
        events.clear()
        feed(sub, 3_000, batch=1_000)
        core.draw()
        kinds = {type(e) for e in events}
        assert ColumnDataChangedEvent not in kinds and ColumnsPatchedEvent in kinds
        sent = sum(len(e.data["x"]) for e in events if isinstance(e, ColumnsStreamedEvent))
        sent += sum(len(v) for e in events if isinstance(e, ColumnsPatchedEvent)
                    for _, v in e.patches["x"])
        # the exact newest rows and new settled points: bounded by what arrived, not the window
        assert sent < 3 * 300 + 1_000
    rows = sub.df
    for key, src in core.sources.items():
        x, y = np.asarray(src.data["x"]), np.asarray(src.data["y"])
        part = rows[rows["sym"] == key]
        assert len(x) <= 2 * max_points(200)
        assert np.all(np.diff(x) >= 0)
        # the newest rows exactly, then the last point repeated (padding draws nothing)
        newest = part["t"].to_numpy()[-200:]
        assert np.array_equal(np.unique(x[-205:])[-200:], newest)
        assert y.max() == part["v"].max() and y.min() == part["v"].min()
