"""The pure delivery planner: snapshots and resumes as slices read from the topic when sent."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from spine_util import trades

from livestream.core import Topic
from livestream.core.delivery import Delivery, slice_update


class Client:
    """Applies data messages by the rules of docs/protocol.md §10 (append topics)."""

    def __init__(self) -> None:
        self.seq: list[int] = []
        self.epoch: str | None = None
        self.next: int | None = None
        self.gaps: list[str] = []
        self.kinds: list[str] = []

    def apply(self, d: Delivery, topic: Topic, rows: int) -> bool:
        sl = d.next_slice(topic, rows)
        if sl.gap is not None:
            self.gaps.append(sl.gap.reason)
            assert sl.gap.until == sl.start  # the snapshot that follows starts there
        u = slice_update(topic, sl)
        self.kinds.append(u.kind)
        assert u.next - u.offset == u.rows or (u.kind == "snapshot" and topic.mode != "append")
        if u.kind == "snapshot":
            self.seq = u.frame["seq"].tolist()
        else:
            assert u.epoch == self.epoch and u.offset == self.next  # contiguous
            self.seq += u.frame["seq"].tolist()
        self.epoch, self.next = u.epoch, u.next
        return d.advance(topic, sl)


def test_fresh_snapshot_in_slices_then_appends_up_to_next():
    t = Topic("t")
    t.publish(trades(1000))
    d = Delivery.for_subscribe(t, None, None)
    c = Client()
    while not c.apply(d, t, 300):
        pass
    assert c.kinds == ["snapshot", "append", "append", "append"]
    assert c.seq == list(range(1000)) and c.next == 1000 and not c.gaps


def test_rows_published_during_the_delivery_are_part_of_it_in_offset_order():
    t = Topic("t")
    t.publish(trades(500))
    d = Delivery.for_subscribe(t, None, None)
    c = Client()
    n = 500
    done = False
    while not done:
        done = c.apply(d, t, 100)
        if not done and n < 800:
            t.publish(trades(60, n))
            n += 60
    assert c.seq == list(range(n)) and c.next == t.next_offset


def test_rows_evicted_before_they_were_sent_give_a_gap_and_a_fresh_snapshot():
    t = Topic("t", retention_rows=300)
    t.publish(trades(300))
    d = Delivery.for_subscribe(t, None, None)
    c = Client()
    c.apply(d, t, 100)  # holds 0..99
    t.publish(trades(250, 300))  # retention now starts at 250: rows 100..249 are gone
    while not c.apply(d, t, 100):
        pass
    assert c.gaps == ["retention"] and d.fell_behind  # the server treats it as a slow consumer
    assert c.seq == list(range(250, 550))


def test_resume_sends_the_missed_rows_in_slices_or_a_gap_and_a_snapshot():
    t = Topic("t", retention_rows=1000)
    t.publish(trades(700))
    assert Delivery.for_subscribe(t, t.epoch, 700) is None  # up to date
    d = Delivery.for_subscribe(t, t.epoch, 400)
    assert d is not None and d.resumes
    c = Client()
    c.epoch, c.next = t.epoch, 400
    while not c.apply(d, t, 128):
        pass
    assert c.seq == list(range(400, 700)) and set(c.kinds) == {"append"}
    # beyond retention, and another epoch
    t.publish(trades(1000, 700))
    for epoch, offset, reason in ((t.epoch, 10, "retention"), ("0" * 16, 5, "epoch")):
        d = Delivery.for_subscribe(t, epoch, offset)
        assert d is not None and not d.resumes
        c = Client()
        while not c.apply(d, t, 400):
            pass
        assert c.gaps == [reason] and c.seq == list(range(700, 1700))


def test_keyed_snapshot_is_one_message_and_keyed_resume_is_upsert_slices():
    t = Topic("q", key="symbol")
    for i in range(6):
        t.publish(trades(200, 200 * i))  # ~50 upserts each (deduplicated by key)
    d = Delivery.for_subscribe(t, None, None)
    assert d is not None
    sl = d.next_slice(t, 10)
    assert sl.whole and sl.kind == "snapshot" and sl.start == sl.end == t.next_offset
    u = slice_update(t, sl)
    assert u.rows == len(t) and d.advance(t, sl)
    d = Delivery.for_subscribe(t, t.epoch, 10)
    assert d is not None and d.resumes
    kinds, covered = [], []
    while True:
        sl = d.next_slice(t, 40)
        kinds.append(sl.kind)
        covered.append((sl.start, sl.end))
        if d.advance(t, sl):
            break
    assert set(kinds) == {"upsert"} and covered[0][0] == 10 and len(covered) > 3 and covered[-1][1] == t.next_offset
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))


def test_slow_consumer_resync_is_a_gap_then_a_snapshot():
    t = Topic("t")
    t.publish(trades(50))
    d = Delivery.after_slow_consumer(t)
    sl = d.next_slice(t, 1000)
    assert sl.gap is not None and sl.gap.reason == "slow_consumer" and sl.gap.offset is None
    assert sl.kind == "snapshot" and d.advance(t, sl)


@settings(max_examples=60, deadline=None)
@given(initial=st.integers(0, 400), rows=st.integers(1, 150), retention=st.integers(50, 500),
       batches=st.lists(st.integers(0, 120), max_size=12))
def test_any_interleaving_ends_with_the_topics_window(initial, rows, retention, batches):
    t = Topic("t", retention_rows=retention)
    n = 0
    if initial:
        t.publish(trades(initial))
        n = initial
    else:
        t.publish(trades(1))
        n = 1
    d = Delivery.for_subscribe(t, None, None)
    c = Client()
    pending = list(batches)
    while not c.apply(d, t, rows):
        if pending:
            k = pending.pop(0)
            if k:
                t.publish(trades(k, n))
                n += k
    # live from here: the client holds exactly the topic's retained window... or more of it
    window = t.snapshot().frame["seq"].tolist()
    assert c.next == t.next_offset
    assert c.seq[-len(window):] == window
    assert c.seq == list(range(c.seq[0], n))
