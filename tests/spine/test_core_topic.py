"""The pure core: schemas, rolling windows, topics, offsets, epochs, keyed and derived topics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spine_util import trades

from livestream import SchemaError, TopicError
from livestream.core import ColumnWindow, Derivation, DeriveError, KeyedTable, Schema, Topic


def test_schema_is_fixed_by_first_batch_and_names_the_bad_column():
    t = Topic("trades")
    t.publish(trades(3))
    with pytest.raises(SchemaError) as e:
        t.publish(trades(2).drop(columns=["price"]))
    assert e.value.column == "price"
    with pytest.raises(SchemaError) as e:
        t.publish(trades(2).assign(extra=1))
    assert e.value.column == "extra"
    with pytest.raises(SchemaError) as e:
        t.publish(trades(2).assign(size="big"))
    assert e.value.column == "size" and "int64" in str(e.value)


def test_bad_batch_applies_nothing():
    t = Topic("trades")
    t.publish(trades(3))
    before = t.snapshot()
    with pytest.raises(SchemaError):
        t.publish(trades(2).assign(price="x"))
    after = t.snapshot()
    assert t.next_offset == 3
    pd.testing.assert_frame_equal(before.frame, after.frame)


def test_lossless_casts_are_accepted_lossy_ones_refused():
    t = Topic("x")
    t.publish(pd.DataFrame({"i": np.array([1], dtype=np.int64), "f": [1.5], "s": ["a"]}))
    u = t.publish(pd.DataFrame({"i": np.array([2], dtype=np.int32), "f": [2], "s": ["b"]}))
    assert u.frame.dtypes["i"] == np.int64 and u.frame.dtypes["f"] == np.float64
    u = t.publish(pd.DataFrame({"i": [3.0], "f": [1.0], "s": ["c"]}))  # whole floats into int
    assert u.frame["i"].tolist() == [3]
    with pytest.raises(SchemaError) as e:
        t.publish(pd.DataFrame({"i": [3.5], "f": [1.0], "s": ["c"]}))
    assert e.value.column == "i"
    with pytest.raises(SchemaError) as e:
        t.publish(pd.DataFrame({"i": [np.nan], "f": [1.0], "s": ["c"]}))
    assert e.value.column == "i" and "missing" in str(e.value)


def test_unsupported_columns_are_refused_by_name():
    with pytest.raises(SchemaError) as e:
        Topic("x").publish(pd.DataFrame({"ok": [1], "obj": [{"a": 1}]}))
    assert e.value.column == "obj"
    with pytest.raises(SchemaError):
        Topic("x").publish(pd.DataFrame({1: [1]}))


def test_named_index_becomes_a_column_unnamed_index_is_dropped():
    df = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"],
                                                                name="ts"))
    t = Topic("x")
    u = t.publish(df)
    assert list(u.frame.columns) == ["ts", "v"]
    u = Topic("y").publish(pd.DataFrame({"v": [1, 2]}, index=[7, 9]))
    assert list(u.frame.columns) == ["v"]


@pytest.mark.parametrize("name", ["", "a b", ".hidden", "/x", "x" * 129, "é", None, 3])
def test_bad_topic_names_are_refused(name):
    with pytest.raises(TopicError) as e:
        Topic(name)  # type: ignore[arg-type]
    assert e.value.code == "bad_topic_name"


def test_offsets_are_contiguous_and_epoch_is_random():
    a, b = Topic("t"), Topic("t")
    assert a.epoch != b.epoch
    u1 = a.publish(trades(5))
    u2 = a.publish(trades(3, 5))
    assert (u1.offset, u1.next, u2.offset, u2.next) == (0, 5, 5, 8)


def test_since_returns_exactly_the_missed_rows_within_retention():
    t = Topic("t", retention_rows=10)
    for i in range(4):
        t.publish(trades(3, 3 * i))
    r = t.since(t.epoch, 5)
    assert r.gap is None and r.update is not None
    assert r.update.frame["seq"].tolist() == list(range(5, 12))
    assert (r.update.offset, r.update.next) == (5, 12)
    assert t.since(t.epoch, 12).update is None  # up to date


def test_since_beyond_retention_or_other_epoch_is_a_gap_with_snapshot():
    t = Topic("t", retention_rows=10)
    for i in range(4):
        t.publish(trades(3, 3 * i))
    r = t.since(t.epoch, 1)
    assert r.gap is not None and r.gap.reason == "retention" and r.gap.until == 2
    assert r.snapshot.frame["seq"].tolist() == list(range(2, 12))
    r = t.since("other-epoch", 5)
    assert r.gap.reason == "epoch" and r.snapshot is not None
    r = t.since(t.epoch, 99)  # from the future: this server's history is not the client's
    assert r.gap is not None


def test_age_retention_drops_old_rows():
    now = [1000.0]
    t = Topic("t", retention_rows=100, retention_seconds=5, clock=lambda: now[0])
    t.publish(trades(3))
    now[0] += 10
    t.publish(trades(2, 3))
    assert t.snapshot().frame["seq"].tolist() == [3, 4]
    assert t.since(t.epoch, 0).gap is not None


def test_keyed_topic_upserts_and_snapshot_is_the_table():
    t = Topic("quotes", key="symbol")
    t.publish(pd.DataFrame({"symbol": ["A", "B", "A"], "px": [1.0, 2.0, 3.0]}))
    u = t.publish(pd.DataFrame({"symbol": ["C", "B"], "px": [4.0, 5.0]}))
    assert u.kind == "upsert" and u.frame["symbol"].tolist() == ["C", "B"]
    snap = t.snapshot().frame
    assert dict(zip(snap.symbol, snap.px, strict=True)) == {"A": 3.0, "B": 5.0, "C": 4.0}
    assert snap.symbol.tolist() == ["B", "A", "C"]  # first-seen order after dedupe


def test_keyed_table_with_compound_key_and_changed_rows():
    schema = Schema.from_frame(pd.DataFrame({"room": ["r"], "user": ["u"], "n": [1]}))
    k = KeyedTable(schema, ["room", "user"])
    k.upsert(schema.conform(pd.DataFrame({"room": ["a", "a"], "user": ["x", "y"], "n": [1, 2]})))
    new = schema.conform(pd.DataFrame({"room": ["a", "a", "b"], "user": ["x", "y", "x"],
                                       "n": [1, 3, 1]}))
    changed = k.changed(new)
    assert changed[["room", "user"]].values.tolist() == [["a", "y"], ["b", "x"]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(1, 50))
def test_window_always_holds_the_last_rows(batch_sizes, max_rows):
    schema = Schema.from_frame(trades(1))
    w = ColumnWindow(schema, max_rows)
    start = 0
    for n in batch_sizes:
        w.append(schema.conform(trades(n, start)))
        start += n
    assert w.end_offset == start
    expected = list(range(max(0, start - max_rows), start))
    assert w.to_frame()["seq"].tolist() == expected
    assert w.start_offset == expected[0]
    mid = expected[len(expected) // 2]
    assert w.to_frame(from_offset=mid)["seq"].tolist() == expected[len(expected) // 2:]


def test_derivation_rate_limit_and_errors():
    d = Derivation("bars", "trades", lambda w: w.groupby("symbol", as_index=False).price.last(),
                   key=("symbol",), rate=2.0)
    assert d.source_changed(10.0) == 0.0
    assert d.source_changed(10.0) is None  # already scheduled
    d.compute(trades(10), 10.0)
    assert d.source_changed(10.1) == pytest.approx(0.4)
    bad = Derivation("bad", "trades", lambda w: 1 / 0)
    with pytest.raises(DeriveError, match="ZeroDivisionError"):
        bad.compute(trades(3), 0.0)
    assert bad.errors == 1
