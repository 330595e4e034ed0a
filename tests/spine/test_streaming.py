"""Fan-out over real sockets: every row exactly once, in order; late joiners; keyed; derived."""

from __future__ import annotations

import pandas as pd
import pytest
from spine_util import async_test, trades, until

import livestream as ls


@pytest.mark.parametrize("encoding", ["json", "arrow"])
@async_test()
async def test_many_subscribers_get_every_row_once_in_order(encoding):
    srv = ls.serve(port=0)
    srv.topic("trades")
    conns = [ls.connect(srv.url, encoding=encoding) for _ in range(5)]
    seen: list[list[int]] = [[] for _ in conns]
    subs = []
    for i, c in enumerate(conns):
        s = c.subscribe("trades", window=10_000)
        s.on_update(lambda sub, frame, kind, i=i: seen[i].extend(frame["seq"].tolist()))
        subs.append(s)
    await until(lambda: sum(len(v) for v in srv.core.subscribers.values()) == 5, what="5 subs")
    total = 0
    for _ in range(40):
        srv.publish("trades", trades(25, total))
        total += 25
    for s in subs:
        await s.wait_async(rows=total)
    for i, s in enumerate(subs):
        assert s.df["seq"].tolist() == list(range(total))
        assert seen[i] == list(range(total))
        assert s.offset == total and s.epoch == srv.core.backplane.get("trades").epoch
    # encoded once per update (the first as the snapshot that starts every subscriber),
    # whatever the number of subscribers
    assert srv.metrics.encodes == 40
    for c in conns:
        c.close()
    await srv.aclose()


@async_test()
async def test_late_joiner_gets_snapshot_then_stream():
    srv = ls.serve(port=0, retention_rows=1000)
    srv.publish("trades", trades(300))
    conn = ls.connect(srv.url)
    sub = conn.subscribe("trades", window=5000)
    await sub.wait_async(rows=300)
    srv.publish("trades", trades(50, 300))
    await sub.wait_async(rows=350)
    assert sub.df["seq"].tolist() == list(range(350))
    assert sub.df.dtypes.to_dict() == trades(1).dtypes.to_dict() | {"symbol": sub.df.symbol.dtype}
    conn.close()
    await srv.aclose()


@async_test()
async def test_subscribing_before_the_topic_exists_starts_with_its_first_rows():
    srv = ls.serve(port=0)
    conn = ls.connect(srv.url)
    sub = conn.subscribe("later")
    await until(lambda: sub.stats.state == "waiting", what="waiting state")
    srv.publish("later", trades(7))
    await sub.wait_async(rows=7)
    srv.publish("later", trades(3, 7))
    await sub.wait_async(rows=10)
    assert sub.df["seq"].tolist() == list(range(10))
    conn.close()
    await srv.aclose()


@async_test()
async def test_keyed_subscriber_ends_with_the_server_table():
    srv = ls.serve(port=0)
    srv.topic("quotes", key="symbol")
    conn = ls.connect(srv.url)
    sub = conn.subscribe("quotes")
    for i in range(30):
        t = trades(40, 40 * i)
        srv.publish("quotes", t[["symbol", "price", "seq"]])
    server_table = srv.snapshot("quotes")
    topic = srv.core.backplane.get("quotes")
    await until(lambda: sub.offset == topic.next_offset, what="all upserts applied")
    pd.testing.assert_frame_equal(
        sub.df.sort_values("symbol").reset_index(drop=True),
        server_table.sort_values("symbol").reset_index(drop=True))
    conn.close()
    await srv.aclose()


@async_test()
async def test_derived_topic_updates_and_survives_an_exception():
    srv = ls.serve(port=0)
    state = {"fail": False}

    def last_price(w: pd.DataFrame) -> pd.DataFrame:
        if state["fail"]:
            raise RuntimeError("boom")
        return w.groupby("symbol", as_index=False, observed=True).agg(
            price=("price", "last"), seq=("seq", "max"))

    srv.publish("trades", trades(100))
    srv.derive("last", "trades", last_price, key="symbol", rate=50)
    conn = ls.connect(srv.url)
    sub = conn.subscribe("last")
    await until(lambda: len(sub) > 0 and sub.df["seq"].max() == 99, what="first derived table")
    state["fail"] = True
    srv.publish("trades", trades(10, 100))
    await until(lambda: sub.stats.errors >= 1, what="derive_failed error frame")
    assert "derive_failed" in sub.stats.last_error and "boom" in sub.stats.last_error
    # the server and other topics are unaffected; the derived topic recovers
    state["fail"] = False
    srv.publish("trades", trades(10, 110))
    await until(lambda: sub.df["seq"].max() == 119, what="recovered derived table")
    expected = last_price(srv.snapshot("trades"))
    got = sub.df.sort_values("symbol").reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["symbol", "price", "seq"]],
                                  expected.sort_values("symbol").reset_index(drop=True),
                                  check_dtype=False)
    conn.close()
    await srv.aclose()


@async_test()
async def test_derived_without_key_replaces_its_table():
    srv = ls.serve(port=0)
    srv.publish("trades", trades(10))
    srv.derive("count", "trades", lambda w: pd.DataFrame({"n": [len(w)]}), rate=50)
    conn = ls.connect(srv.url)
    sub = conn.subscribe("count")
    await until(lambda: len(sub) == 1 and sub.df["n"].iloc[0] == 10, what="first count")
    srv.publish("trades", trades(5, 10))
    await until(lambda: sub.df["n"].tolist() == [15], what="replaced count")
    conn.close()
    await srv.aclose()


def test_script_mode_runs_on_a_background_loop():
    """No running loop: server and client run on the livestream-io thread; wait() blocks."""
    srv = ls.serve(port=0)
    try:
        srv.publish("trades", trades(10))
        with ls.connect(srv.url) as conn:
            sub = conn.subscribe("trades").wait(rows=10, timeout=10)
            srv.publish("trades", trades(5, 10))
            sub.wait(rows=15, timeout=10)
            assert sub.df["seq"].tolist() == list(range(15))
            with pytest.raises(ls.SchemaError) as e:
                srv.publish("trades", trades(2).assign(size=1.5))
            assert e.value.column == "size"
            with pytest.raises(TimeoutError):
                sub.wait(rows=10**6, timeout=0.2)
    finally:
        srv.close()


@async_test()
async def test_subscribing_to_a_declared_empty_keyed_topic_learns_its_key():
    srv = ls.serve(port=0)
    srv.topic("quotes", key="symbol")
    conn = ls.connect(srv.url)
    sub = conn.subscribe("quotes")
    await until(lambda: sub.stats.state == "waiting", what="waiting")
    srv.publish("quotes", pd.DataFrame({"symbol": ["A", "B"], "px": [1.0, 2.0]}))
    srv.publish("quotes", pd.DataFrame({"symbol": ["A"], "px": [3.0]}))
    await until(lambda: sub.offset == 3, what="upserts applied")
    assert sub.key == ("symbol",)
    assert dict(zip(sub.df.symbol, sub.df.px, strict=True)) == {"A": 3.0, "B": 2.0}
    conn.close()
    await srv.aclose()
