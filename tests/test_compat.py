"""Third-party internals livestream's client and views rely on (livestream/_compat).

Each test fails if an upgrade of pandas, Bokeh or jupyter_bokeh breaks
the reliance, instead of a chart failing somewhere later.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from livestream._compat import bokeh_internals, pandas_internals


def test_pandas_fast_frames_work_on_this_pandas():
    assert pandas_internals.FAST_FRAMES, "DataFrame._from_arrays failed its probe (see the log)"


@pytest.mark.parametrize("make", [pandas_internals.frame_from_arrays,
                                  pandas_internals.frame_from_arrays_public])
def test_both_frame_paths_build_the_same_frame(make):
    cols = pd.Index(["ts", "price", "sym", "n"])
    arrays = [pd.DatetimeIndex([0, 10**9], tz="UTC").array, np.array([1.5, np.nan]),
              pd.Categorical(["a", "b"]), pd.array([1, None], dtype="Int64")]
    df = make(arrays, cols, 2)
    expected = pd.DataFrame({"ts": pd.to_datetime([0, 10**9], utc=True),
                             "price": [1.5, np.nan], "sym": pd.Categorical(["a", "b"]),
                             "n": pd.array([1, None], dtype="Int64")})
    pd.testing.assert_frame_equal(df, expected)


def test_a_failing_probe_falls_back_to_the_constructor(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise AttributeError("_from_arrays")

    monkeypatch.setattr(pandas_internals, "_frame_from_arrays_fast", broken)
    assert pandas_internals._probe() is False
    assert "public DataFrame constructor" in caplog.text


def test_bokeh_internals_are_present():
    bokeh_internals.check()


def test_one_patch_doc_message_holds_every_event_of_a_frame():
    import json

    from bokeh.document import Document
    from bokeh.models import ColumnDataSource

    doc = Document()
    src = ColumnDataSource(data={"x": np.arange(3.0)})
    doc.add_root(src)
    events = []
    doc.on_change(lambda event: events.append(event))
    src.stream({"x": np.array([3.0, 4.0])}, rollover=4)
    src.data = {"x": np.arange(2.0)}
    header, metadata, content = bokeh_internals.patch_doc_parts(events)
    assert json.loads(metadata) == {}
    assert json.loads(header)["msgtype"] == "PATCH-DOC"
    kinds = [e["kind"] for e in json.loads(content)["events"]]
    assert kinds == ["ColumnsStreamed", "ColumnDataChanged"]


def test_a_live_chart_skips_missing_renderers_and_other_plots_still_get_it():
    from bokeh.core.validation.check import check_integrity
    from bokeh.plotting import figure

    from livestream.client.subscription import Subscription
    from livestream.views import ChartCore

    def codes(plot):
        return {w.code for w in check_integrity(plot.references()).warning}

    core = ChartCore(Subscription("trades", window=100), "ts", "price")
    assert 1000 not in codes(core.figure)  # empty until its first series: no W-1000
    assert 1000 in codes(figure())  # the user's own empty plots still warn
