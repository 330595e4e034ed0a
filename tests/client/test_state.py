"""The sans-I/O subscription state: messages in, events out; no socket, no loop.

Frames are made with the server's own encoders (``livestream.protocol``), so what
is tested here is what a connection hands the state.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from livestream.client.state import (
    ErrorReported,
    GapDetected,
    RowsApplied,
    StateChanged,
    SubscriptionState,
)
from livestream.core.schema import Schema
from livestream.protocol import data_header, encode_data, loads, unpack_binary

SCHEMA = Schema.from_frame(pd.DataFrame({"i": pd.Series([], dtype="int64"),
                                         "price": pd.Series([], dtype="float64")}))


def rows(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"i": range(start, start + n), "price": [float(x) for x in
                                                                  range(start, start + n)]})


def message(kind: str, offset: int, n: int, *, epoch: str = "e1", encoding: str = "json",
            topic: str = "t", next_: int | None = None, ts: float = 1000.0,
            ) -> tuple[dict, memoryview | None]:
    """(header, payload) as a connection passes them on, for rows ``offset … offset+n-1``."""
    schema = SCHEMA if kind in ("snapshot", "replace") else None
    header = data_header(kind, topic, epoch, offset, offset + n if next_ is None else next_, n,
                         ts, schema)
    data = encode_data(header, rows(offset, n), SCHEMA, encoding)
    if encoding == "arrow":
        return unpack_binary(data)
    return loads(data), None


def live(window: int | None = 100) -> SubscriptionState:
    st = SubscriptionState("t", window=window)
    st.receive(*message("snapshot", 0, 3))
    return st


def applied(events: list) -> list[RowsApplied]:
    return [e for e in events if isinstance(e, RowsApplied)]


def test_a_snapshot_starts_the_window_and_sets_the_resume_point():
    st = SubscriptionState("t")
    assert st.resume_point() is None
    events = st.receive(*message("snapshot", 10, 3))
    assert [type(e) for e in events] == [RowsApplied]
    assert events[0].kind == "snapshot" and events[0].rows == 3
    assert st.resume_point() == ("e1", 13)
    assert st.frame()["i"].tolist() == [10, 11, 12]
    assert st.resets == 1 and st.version == 1


def test_an_update_already_held_is_dropped_without_events():
    st = live()
    version = st.version
    assert st.receive(*message("append", 0, 3)) == []  # next (3) <= held (3)
    assert st.receive(*message("append", 1, 2)) == []
    assert st.version == version and len(st) == 3


def test_an_overlapping_update_is_trimmed_to_the_new_rows():
    st = live()
    events = st.receive(*message("append", 1, 4))  # rows 1..4, holds 0..2
    assert applied(events)[0].rows == 2
    assert st.frame()["i"].tolist() == [0, 1, 2, 3, 4]
    assert st.resume_point() == ("e1", 5)


@pytest.mark.parametrize("encoding", ["json", "arrow"])
def test_appends_in_order_grow_the_window(encoding):
    st = live()
    events = st.receive(*message("append", 3, 2, encoding=encoding))
    (ev,) = applied(events)
    assert ev.frame()["i"].tolist() == [3, 4]
    if encoding == "arrow":
        assert isinstance(ev.data, pa.Table)  # no DataFrame unless asked for
    assert st.frame()["i"].tolist() == [0, 1, 2, 3, 4]


def test_an_overlapping_arrow_update_is_trimmed_too():
    st = live()
    st.receive(*message("append", 2, 3, encoding="arrow"))
    assert st.frame()["i"].tolist() == [0, 1, 2, 3, 4]


def test_a_hole_is_reported_as_a_gap_before_the_rows():
    st = live()
    events = st.receive(*message("append", 5, 2))  # holds up to 3: rows 3, 4 missing
    assert [type(e) for e in events] == [GapDetected, RowsApplied]
    gap = events[0].gap
    assert (gap["reason"], gap["offset"], gap["until"]) == ("hole", 3, 5)
    assert st.stats.gaps == 1 and st.gaps == [gap]
    assert st.frame()["i"].tolist() == [5, 6]  # the window restarts at the new rows
    assert st.resume_point() == ("e1", 7)


def test_a_gap_then_a_snapshot_of_a_new_epoch_starts_over():
    st = live()
    events = st.receive({"type": "gap", "topic": "t", "epoch": "e1", "offset": 3,
                         "new_epoch": "e2", "until": 50, "reason": "epoch"})
    assert [type(e) for e in events] == [GapDetected]
    st.receive(*message("snapshot", 50, 2, epoch="e2"))
    assert st.frame()["i"].tolist() == [50, 51]
    assert st.resume_point() == ("e2", 52) and st.resets == 2


def test_updates_of_another_epoch_are_not_deduped_against_the_held_one():
    st = live()
    st.receive(*message("snapshot", 0, 1, epoch="e2"))
    events = st.receive(*message("append", 1, 1, epoch="e2"))
    assert applied(events)[0].rows == 1 and st.resume_point() == ("e2", 2)


def test_subscribed_without_a_schema_waits_then_data_makes_it_live():
    st = SubscriptionState("t")
    events = st.receive({"type": "subscribed", "topic": "t", "exists": False, "schema": None})
    assert events == [StateChanged("t", "waiting")]
    events = st.receive(*message("snapshot", 0, 1))
    assert StateChanged("t", "live") in events and st.stats.state == "live"


def test_subscribed_announces_a_schema_used_by_json_appends():
    st = SubscriptionState("t")
    st.receive({"type": "subscribed", "topic": "t", "exists": True, "mode": "append",
                "key": [], "schema": SCHEMA.to_json(), "epoch": "e1", "offset": 0, "next": 0})
    assert st.stats.state == "live" and st.mode == "append"
    st.receive(*message("append", 0, 2))  # JSON columns need a schema to decode
    assert st.frame().dtypes["i"] == "int64" and len(st) == 2


def test_a_keyed_topic_keeps_one_row_per_key():
    st = SubscriptionState("q")
    st.receive({"type": "subscribed", "topic": "q", "mode": "keyed", "key": ["i"],
                "schema": SCHEMA.to_json()})
    st.apply("snapshot", rows(0, 2), schema=SCHEMA, epoch="e", offset=2, next_offset=2)
    st.apply("upsert", pd.DataFrame({"i": [1, 5], "price": [9.0, 5.0]}), offset=2,
             next_offset=4)
    df = st.frame().sort_values("i")
    assert df["i"].tolist() == [0, 1, 5] and df["price"].tolist() == [0.0, 9.0, 5.0]
    frame, _, reset = st.rows_since(3)
    assert reset and len(frame) == 3  # tables are always redrawn whole


def test_replace_topics_swap_the_whole_table():
    st = SubscriptionState("r")
    st.apply("replace", rows(0, 3), schema=SCHEMA, mode="replace")
    st.apply("replace", rows(7, 1), schema=SCHEMA)
    assert st.frame()["i"].tolist() == [7] and st.resets == 2


def test_rows_since_gives_what_a_view_has_not_drawn():
    st = live()
    st.receive(*message("append", 3, 2))
    frame, end, reset = st.rows_since(None)
    assert reset and end == 5 and len(frame) == 5
    frame, end, reset = st.rows_since(3)
    assert not reset and frame["i"].tolist() == [3, 4]
    assert st.rows_since(5) == (None, 5, False)


def test_the_window_is_bounded_and_resizable():
    st = SubscriptionState("t", window=3)
    st.apply("append", rows(0, 5))
    assert st.frame()["i"].tolist() == [2, 3, 4]
    st.resize(2)
    assert st.frame()["i"].tolist() == [3, 4]
    with pytest.raises(ValueError):
        st.resize(0)


def test_errors_and_states_are_counted_and_reported_once():
    st = SubscriptionState("t")
    assert st.receive({"type": "error", "topic": "t", "code": "unauthorized",
                       "message": "bad token"}) == [ErrorReported("t", "unauthorized: bad token")]
    assert st.stats.errors == 1 and st.stats.last_error == "unauthorized: bad token"
    assert st.set_state("live") == [StateChanged("t", "live")]
    assert st.set_state("live") == []


def test_a_closed_state_ignores_everything():
    st = live()
    assert st.close() == [StateChanged("t", "closed")]
    assert st.receive(*message("append", 3, 2)) == []
    assert st.apply("append", rows(3, 1)) == []
    assert len(st) == 3
    st.release()
    assert len(st) == 0


def test_lag_and_rates_come_from_the_injected_clocks():
    now = [100.0]
    st = SubscriptionState("t", clock=lambda: now[0], wall=lambda: 2.0)
    st.receive(*message("snapshot", 0, 4, ts=1.5))  # server time 1.5 s → header ts 1500 ms
    assert st.stats.lag_ms == pytest.approx(500.0)
    assert st.last_update == 100.0 and st.meter.rate() == pytest.approx(4.0)


def test_unknown_kinds_and_types():
    st = SubscriptionState("t")
    assert st.receive({"type": "future-message", "topic": "t"}) == []  # §10.9
    with pytest.raises(ValueError):
        st.apply("merge", rows(0, 1))


def test_waiters_on_other_threads_are_woken_by_updates():
    import threading

    st = SubscriptionState("t")
    got = []

    def wait() -> None:
        with st.changed:
            got.append(st.changed.wait_for(lambda: len(st) >= 2, timeout=10))

    t = threading.Thread(target=wait)
    t.start()
    st.apply("append", rows(0, 2))
    t.join(10)
    assert got == [True]
