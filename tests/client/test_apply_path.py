"""The per-message apply path: Arrow payloads read with a kept schema, appends copied into
the window later and in bulk, the DataFrame built only when asked for.

Frames come from the server's own encoders, as in ``test_state.py``; what is
checked is behaviour (rows, offsets, dtypes, what is built when), never timing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from livestream.client import state as state_mod
from livestream.client.protocol import ClientProtocol
from livestream.client.state import RowsApplied, SubscriptionState
from livestream.client.subscription import Subscription
from livestream.core import window as window_mod
from livestream.core.schema import STRING_DTYPE, Schema
from livestream.core.window import ColumnWindow
from livestream.protocol import data_header, encode_data, pack_binary, unpack_binary
from livestream.protocol.codec import (
    STREAM_END,
    ArrowStreamReader,
    arrow_schema,
    encode_arrow,
    stream_batches,
    stream_head,
)

TRADES = pd.DataFrame({
    "ts": pd.Series([], dtype="int64"),
    "symbol": pd.Series([], dtype=STRING_DTYPE),
    "price": pd.Series([], dtype="float64"),
})
SCHEMA = Schema.from_frame(TRADES)


def trades(start: int, n: int) -> pd.DataFrame:
    i = np.arange(start, start + n)
    sym = pd.array([None if k % 7 == 3 else f"S{k % 5}" for k in i], dtype=STRING_DTYPE)
    return pd.DataFrame({"ts": i.astype("int64"), "symbol": sym, "price": i * 0.5})


def frame(kind: str, offset: int, n: int, *, epoch: str = "e1", schema: Schema = SCHEMA,
          data: pd.DataFrame | None = None, with_schema: bool = False) -> bytes:
    header = data_header(kind, "t", epoch, offset, offset + n, n, 1000.0,
                         schema if (with_schema or kind in ("snapshot", "replace")) else None)
    return encode_data(header, trades(offset, n) if data is None else data, schema, "arrow")


def connected(window: int | None = 1000) -> tuple[ClientProtocol, Subscription]:
    proto = ClientProtocol(encoding="arrow")
    sub = Subscription("t", window=window)
    proto.add(sub.machine)
    proto.connection_made()
    proto.data_to_send()
    sub.dispatch(proto.receive_data(frame("snapshot", 0, 5)))
    return proto, sub


def feed(proto: ClientProtocol, sub: Subscription, data: bytes) -> list:
    events = proto.receive_data(data)
    sub.dispatch(events)
    return events


@pytest.fixture
def frames_built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the DataFrames built from a client window."""
    built: list[int] = []
    real = ColumnWindow.to_frame

    def spy(self: ColumnWindow, *args, **kwargs):
        df = real(self, *args, **kwargs)
        built.append(len(df))
        return df

    monkeypatch.setattr(ColumnWindow, "to_frame", spy)
    return built


# -- the DataFrame only when asked for -------------------------------------------------------


def test_appends_build_no_dataframe_until_someone_asks(frames_built):
    proto, sub = connected()
    frames_built.clear()
    for k in range(20):
        events = feed(proto, sub, frame("append", 5 + 10 * k, 10))
        assert [type(e) for e in events] == [RowsApplied]
    assert frames_built == []
    assert len(sub) == 205 and sub.offset == 205 and sub.stats_data.rows == 205
    df = sub.df
    assert frames_built == [205]
    pd.testing.assert_frame_equal(df, trades(0, 205))


def test_the_frame_is_kept_until_the_next_update(frames_built):
    proto, sub = connected()
    frames_built.clear()
    first = sub.df
    again = sub.df
    assert frames_built == [5]  # built once
    pd.testing.assert_frame_equal(first, again)
    feed(proto, sub, frame("append", 5, 3))
    after = sub.df
    assert frames_built == [5, 8]
    assert after["ts"].tolist() == list(range(8))


def test_a_frame_handed_out_is_the_callers_own():
    _, sub = connected()
    mine = sub.df
    mine.loc[0, "price"] = -1.0
    mine["extra"] = 1
    mine.loc[1, "symbol"] = "changed"
    pd.testing.assert_frame_equal(sub.df, trades(0, 5))


def test_an_on_update_callback_gets_each_batch_as_a_dataframe(frames_built):
    proto, sub = connected()
    got: list[pd.DataFrame] = []
    sub.on_update(lambda s, df, kind: got.append(df))
    feed(proto, sub, frame("append", 5, 4))
    pd.testing.assert_frame_equal(got[0], trades(5, 4).reset_index(drop=True))
    assert sub.df["ts"].tolist() == list(range(9))


# -- pending appends keep every rule -----------------------------------------------------------


def test_pending_appends_keep_offsets_len_and_rows_since():
    proto, sub = connected(window=50)
    for k in range(7):
        feed(proto, sub, frame("append", 5 + 10 * k, 10))
    assert len(sub) == 50  # 75 received, a window of 50
    df, end, reset = sub.rows_since(60)
    assert end == 75 and not reset and df["ts"].tolist() == list(range(60, 75))
    assert sub.df["ts"].tolist() == list(range(25, 75))


def test_an_overlap_and_a_duplicate_are_trimmed_against_pending_rows():
    proto, sub = connected()
    feed(proto, sub, frame("append", 5, 10))  # pending, not in the window yet
    assert feed(proto, sub, frame("append", 5, 10)) == []  # held already
    events = feed(proto, sub, frame("append", 10, 10))  # 10..19 overlaps 10..14
    assert [e.rows for e in events if isinstance(e, RowsApplied)] == [5]
    assert sub.df["ts"].tolist() == list(range(20))


def test_a_hole_after_pending_rows_is_a_gap_and_restarts_the_window():
    proto, sub = connected()
    feed(proto, sub, frame("append", 5, 10))
    events = feed(proto, sub, frame("append", 30, 5))
    assert [type(e).__name__ for e in events] == ["GapDetected", "RowsApplied"]
    assert sub.df["ts"].tolist() == list(range(30, 35))
    assert sub.offset == 35


def test_more_pending_rows_than_the_window_fold_into_it(monkeypatch):
    monkeypatch.setattr(state_mod, "MAX_PENDING_BATCHES", 4)
    proto, sub = connected(window=12)
    for k in range(9):
        feed(proto, sub, frame("append", 5 + 3 * k, 3))
        assert len(sub.machine._pending) <= 4
        assert sub.machine._pending_rows <= 12
    assert sub.df["ts"].tolist() == list(range(20, 32))


def test_larger_batches_wait_for_a_read_longer_than_small_ones(monkeypatch):
    monkeypatch.setattr(state_mod, "MAX_PENDING_BATCHES", 4)
    monkeypatch.setattr(state_mod, "MAX_PENDING_LARGE_BATCHES", 8)
    monkeypatch.setattr(state_mod, "LARGE_BATCH_ROWS", 3)
    proto, sub = connected(window=1000)
    seen = []
    for k in range(10):  # 3-row batches: "large" here, they wait until 8 are pending
        feed(proto, sub, frame("append", 5 + 3 * k, 3))
        seen.append(len(sub.machine._pending))
    assert seen == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]
    seen = []
    for k in range(6):  # 1-row batches bring the average below 3: copied at 4 pending
        feed(proto, sub, frame("append", 35 + k, 1))
        seen.append(len(sub.machine._pending))
    assert seen == [3, 0, 1, 2, 3, 0]
    assert sub.df["ts"].tolist() == list(range(41))


def test_batches_hidden_by_a_window_of_newer_rows_are_never_copied(frames_built, monkeypatch):
    copied: list[int] = []
    real = ColumnWindow.append

    def spy(self: ColumnWindow, df) -> None:
        copied.append(len(df) if not isinstance(df, dict) else -1)
        real(self, df)

    proto, sub = connected(window=20)
    monkeypatch.setattr(ColumnWindow, "append", spy)
    for k in range(30):
        feed(proto, sub, frame("append", 5 + 4 * k, 4))
    assert copied == []  # nobody read: nothing copied into the window
    assert sum(b.num_rows for b in sub.machine._pending) <= 24
    assert len(sub) == 20 and sub.offset == 125
    df, end, reset = sub.rows_since(0)
    assert reset and end == 125 and df["ts"].tolist() == list(range(105, 125))
    assert copied == [20]  # one copy of what is still visible
    feed(proto, sub, frame("append", 125, 4))  # the window goes on from there
    assert sub.df["ts"].tolist() == list(range(109, 129))
    assert feed(proto, sub, frame("append", 100, 10)) == []  # held (offsets) already


def test_resizing_with_pending_rows_keeps_the_newest():
    proto, sub = connected(window=100)
    for k in range(4):
        feed(proto, sub, frame("append", 5 + 10 * k, 10))
    sub.set_window(8)
    assert sub.df["ts"].tolist() == list(range(37, 45))
    feed(proto, sub, frame("append", 45, 2))
    assert sub.df["ts"].tolist() == list(range(39, 47))


def test_a_script_waiting_for_rows_sees_pending_rows():
    proto, sub = connected()
    feed(proto, sub, frame("append", 5, 20))
    assert sub.wait(25, timeout=1.0) is sub


# -- the schema read once ----------------------------------------------------------------------


def test_the_schema_is_parsed_once_per_topic():
    proto, sub = connected()
    dec = sub.machine.decoder
    misses = dec.misses
    for k in range(10):
        feed(proto, sub, frame("append", 5 + 2 * k, 2))
    assert dec.misses == misses and dec.hits >= 10
    assert sub.df["ts"].tolist() == list(range(25))


def test_a_schema_change_mid_stream_is_picked_up():
    proto, sub = connected()
    feed(proto, sub, frame("append", 5, 5))
    other = pd.DataFrame({"ts": np.arange(10, 13, dtype="int64"), "size": [1.5, 2.5, 3.5]})
    schema2 = Schema.from_frame(other)
    events = feed(proto, sub, frame("append", 10, 3, schema=schema2, data=other,
                                    with_schema=True))
    assert [type(e) for e in events] == [RowsApplied]
    assert sub.schema == schema2
    pd.testing.assert_frame_equal(sub.df, other)
    feed(proto, sub, frame("append", 13, 1, schema=schema2,
                           data=pd.DataFrame({"ts": [13], "size": [4.5]})))
    assert sub.df["size"].tolist() == [1.5, 2.5, 3.5, 4.5]


def test_a_gap_and_a_new_epoch_forget_the_kept_schema():
    proto, sub = connected()
    dec = sub.machine.decoder
    assert dec.cached
    proto.receive_message({"type": "gap", "topic": "t", "epoch": "e1", "offset": 5,
                           "new_epoch": "e2", "until": 0, "reason": "epoch"})
    assert not dec.cached
    feed(proto, sub, frame("snapshot", 0, 4, epoch="e2"))
    assert dec.cached
    misses = dec.misses
    feed(proto, sub, frame("append", 0, 2, epoch="e3"))  # a new history without a gap first
    assert dec.misses == misses + 1
    assert sub.epoch == "e3"


def test_the_reader_reads_other_streams_in_full():
    reader = ArrowStreamReader()
    df = trades(0, 4)
    one = encode_arrow(df, SCHEMA)
    assert reader.read(one, 4).num_rows == 4 and reader.cached
    # two record batches written by pyarrow's stream writer: its schema message carries
    # pandas metadata, so it is not the kept one and the stream is read in full
    table = pa.Table.from_pandas(trades(0, 4), schema=arrow_schema(SCHEMA),
                                 preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        for b in table.to_batches(max_chunksize=2):
            w.write_batch(b)
    two = sink.getvalue().to_pybytes()
    misses = reader.misses
    got = reader.read(two, 4)
    assert reader.misses == misses + 1 and got.num_rows == 4
    assert reader.read(one, None).num_rows == 4  # no row count: read in full
    # categories: dictionary batches, never read with a kept schema
    cat = pd.DataFrame({"c": pd.Categorical(["a", "b", "a"])})
    cs = Schema.from_frame(cat)
    r2 = ArrowStreamReader()
    for _ in range(2):
        assert r2.read(encode_arrow(cat, cs), 3).num_rows == 3
    assert not r2.cached and r2.hits == 0


def merged(offset: int, sizes: list[int], epoch: str = "e1") -> bytes:
    """The frame of appends of ``sizes`` rows from ``offset`` merged into one, as the server
    sends them to a client that fell behind (docs/protocol.md §3.3)."""
    head = stream_head(SCHEMA)
    parts, at = [], offset
    for n in sizes:
        body = stream_batches(frame("append", at, n, epoch=epoch), head)
        assert body is not None
        parts.append(bytes(body))
        at += n
    header = data_header("append", "t", epoch, offset, at, at - offset, 1000.0)
    return pack_binary(header, head + b"".join(parts) + STREAM_END)


def test_a_merged_append_is_read_with_the_kept_schema():
    reader = ArrowStreamReader()
    assert reader.read(unpack_binary(frame("append", 0, 4))[1], 4).num_rows == 4
    header, payload = unpack_binary(merged(4, [3, 1, 5]))
    hits, misses = reader.hits, reader.misses
    got = reader.read(payload, header["rows"])
    assert (reader.hits, reader.misses) == (hits + 1, misses)
    assert got.num_rows == 9 and got.schema == arrow_schema(SCHEMA)
    assert got.column("ts").to_pylist() == list(range(4, 13))
    # rows that do not add up to the header's: read in full, never half
    assert reader.read(payload, 8).num_rows == 9 and reader.misses == misses + 1


def test_a_merged_append_applies_like_the_appends_it_holds():
    proto, sub = connected()
    ref_proto, ref = connected()
    dec = sub.machine.decoder
    misses = dec.misses
    feed(proto, sub, merged(5, [10, 20, 7]))
    feed(proto, sub, frame("append", 42, 3))
    for at, n in ((5, 10), (15, 20), (35, 7), (42, 3)):
        feed(ref_proto, ref, frame("append", at, n))
    assert dec.misses == misses
    assert sub.offset == ref.offset == 45 and sub.stats.rows == ref.stats.rows
    pd.testing.assert_frame_equal(sub.df, ref.df)
    # a merged frame that overlaps what is held applies only its new rows
    feed(proto, sub, merged(40, [5, 5]))
    feed(ref_proto, ref, frame("append", 45, 5))
    pd.testing.assert_frame_equal(sub.df, ref.df)


# -- the encoder writes what pyarrow's stream writer writes ------------------------------------


def test_encode_arrow_writes_the_stream_writers_bytes():
    df = trades(0, 9)
    got = encode_arrow(df, SCHEMA)
    table = pa.ipc.open_stream(got).read_all()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, arrow_schema(SCHEMA)) as w:
        for b in table.to_batches():
            w.write_batch(b)
    assert got == sink.getvalue().to_pybytes()
    _, payload = unpack_binary(frame("append", 0, 9))
    assert bytes(payload) == got


def test_every_type_round_trips_through_a_subscription():
    df = pd.DataFrame({
        "b": [True, False, True],
        "i": pd.array([1, None, 3], dtype="Int64"),
        "f": [1.5, np.nan, np.inf],
        "s": pd.array(["x", None, "z"], dtype=STRING_DTYPE),
        "c": pd.Categorical(["a", None, "a"]),
        "t": pd.to_datetime([1, 2, 3], unit="s", utc=True),
    })
    schema = Schema.from_frame(df)
    st = SubscriptionState("t")
    st.receive(*unpack_binary(frame("snapshot", 0, 3, schema=schema, data=df)))
    for k in range(3):
        st.receive(*unpack_binary(frame("append", 3 + 3 * k, 3, schema=schema, data=df)))
    out = st.frame()
    expected = pd.concat([df] * 4, ignore_index=True)
    expected["c"] = expected["c"].astype(out["c"].dtype)
    pd.testing.assert_frame_equal(out, expected)


# -- Arrow string columns in a window --------------------------------------------------------


@pytest.mark.parametrize("max_rows", [None, 7, 40])
def test_arrow_string_columns_match_the_numpy_window(max_rows):
    rng = np.random.default_rng(3)
    plain = ColumnWindow(SCHEMA, max_rows)
    arrow = ColumnWindow(SCHEMA, max_rows, arrow_strings=True)
    start = 0
    for step in range(120):
        n = int(rng.integers(0, 30))
        df = trades(start, n)
        table = pa.Table.from_pandas(df, schema=arrow_schema(SCHEMA), preserve_index=False)
        plain.append(df)
        arrow.append(table if step % 2 else df)
        start += n
        if step % 17 == 5:
            plain.reset(start)
            arrow.reset(start)
        if step % 9 == 0:
            pd.testing.assert_frame_equal(arrow.to_frame(), plain.to_frame())
            cut = start - 3
            pd.testing.assert_frame_equal(arrow.to_frame(from_offset=cut),
                                          plain.to_frame(from_offset=cut))
    assert len(arrow) == len(plain)
    pd.testing.assert_frame_equal(arrow.to_frame(), plain.to_frame())
    assert arrow.to_frame()["symbol"].dtype == STRING_DTYPE


def test_arrow_string_windows_refuse_positional_writes():
    if not window_mod.ARROW_STRINGS:
        pytest.skip("pandas' string dtype is not Arrow-backed here")
    w = ColumnWindow(SCHEMA, None, arrow_strings=True)
    w.append(trades(0, 3))
    with pytest.raises(TypeError, match="appending only"):
        w.overwrite(np.array([0]), trades(0, 1))


def test_steady_appends_take_the_one_step_path(monkeypatch):
    proto, sub = connected()
    general = []
    real = SubscriptionState._receive_data
    monkeypatch.setattr(SubscriptionState, "_receive_data",
                        lambda self, *a, **kw: general.append(a[0]) or real(self, *a, **kw))
    for off in range(5, 305, 10):
        feed(proto, sub, frame("append", off, 10))
    assert general == []
    assert sub.machine.offset == 305 and len(sub) == 305
    # anything out of the ordinary still goes the general way
    feed(proto, sub, frame("append", 300, 10))  # an overlap
    feed(proto, sub, frame("append", 310, 5, with_schema=True))  # a schema in the header
    assert general == ["append", "append"]
    assert sub.machine.offset == 315
    assert sub.df["ts"].tolist() == list(range(315))


def test_the_one_step_path_and_the_general_path_hold_the_same_rows():
    """The same frames, to one subscription through the protocol (steady appends take
    the one-step path) and to another through the general path only."""
    wide = pd.DataFrame({"ts": np.arange(3, dtype="int64"), "symbol": ["a", "b", None],
                         "price": [1.0, 2.0, 3.0], "size": np.arange(3, dtype="int64")})
    wide["symbol"] = wide["symbol"].astype(STRING_DTYPE)
    wide_schema = Schema.from_frame(wide)
    frames = [frame("append", off, 7) for off in range(5, 75, 7)]
    frames += [frame("append", 70, 7),  # overlap
               frame("append", 40, 7),  # duplicate
               frame("append", 90, 3),  # hole: a gap, the window restarts
               frame("append", 93, 4)]
    frames += [encode_data(data_header("append", "t", "e1", 97, 100, 3, 1000.0, wide_schema),
                           wide, wide_schema, "arrow"),  # a new schema mid-stream
               encode_data(data_header("append", "t", "e1", 100, 103, 3, 1000.0, None),
                           wide, wide_schema, "arrow")]
    frames += [frame("snapshot", 0, 4, epoch="e2"), frame("append", 4, 6, epoch="e2"),
               frame("append", 10, 6, epoch="e1")]  # an old epoch's append after e2
    frames += [frame("append", off, 3, epoch="e2") for off in range(10, 40, 3)]
    proto, fast = connected(window=50)
    _, slow = connected(window=50)
    for data in frames:
        feed(proto, fast, data)
        header, payload = unpack_binary(data)
        slow.dispatch(slow.machine._receive_data(header["type"], header, payload))
        a, b = fast.machine, slow.machine
        assert (a.offset, a.epoch, a.stats.rows, a.stats.messages, a.stats.gaps, len(fast)) \
            == (b.offset, b.epoch, b.stats.rows, b.stats.messages, b.stats.gaps, len(slow))
        pd.testing.assert_frame_equal(fast.df, slow.df)
    assert fast.machine.epoch == "e2" and fast.machine.offset == 40
