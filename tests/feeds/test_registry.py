"""livestream.subscriptions(): listing, pause/resume/close, the status widget, the re-run policy."""

from __future__ import annotations

import pytest
from conftest import run, until
from fakefeed import FakeExchange

from livestream.client import registry
from livestream.client.feed import open_feed

SUB = {"op": "subscribe", "channel": "trades"}
TRADES = {"seq": int, "price": ("px", float)}


def test_listing_shows_every_connection_and_stream_with_their_counters():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"})
        st = feed.stream({"channel": "trades"}, path="data", columns=TRADES, name="trades")
        chat = feed.stream({"channel": "chat"}, path="data", columns=["text"], name="chat")
        await feed.opened()
        f.send_trades(2)
        f.send_raw({"channel": "trades", "data": [{"seq": "x"}]})
        await until(lambda: len(st) == 6 and st.stats.errors == 1)
        listing = registry.subscriptions()
        rows = [r for r in listing if r["url"] == f.url]
        assert [(r["kind"], r["name"]) for r in rows] == [
            ("feed", "127.0.0.1"), ("stream", "trades"), ("stream", "chat")]
        conn_row, trades_row, chat_row = rows
        assert conn_row["state"] == "live" and conn_row["rows"] == 6
        assert conn_row["obj"] is feed and trades_row["obj"] is st and chat_row["obj"] is chat
        assert trades_row["rows"] == 6 and trades_row["errors"] == 1
        assert "column 'seq'" in trades_row["last_error"]
        assert trades_row["last_message_age"] is not None and chat_row["last_message_age"] is None
        assert conn_row["attempts"] == 1 and conn_row["reconnects"] == 0
        df = listing.to_frame()
        assert list(df.columns) == list(registry.COLUMNS)
        assert df[df.url == f.url].name.tolist() == ["127.0.0.1", "trades", "chat"]
        text = repr(listing)
        assert "trades" in text and "live" in text and f.url in text
        assert "<table>" in listing._repr_html_()
        feed.close()
        await f.stop()

    run(main())


def test_pause_resume_close_by_index_name_and_object():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"})
        st = feed.stream({"channel": "trades"}, path="data", columns=TRADES, name="trades")
        await feed.opened()
        registry.pause("trades")
        assert st.paused and st.stats.state == "paused"
        registry.resume(st)
        assert not st.paused and st.stats.state == "live"
        listing = registry.subscriptions()
        i = next(i for i, r in enumerate(listing) if r["obj"] is feed)
        listing.pause(i)  # a connection row pauses its streams
        assert st.paused
        assert feed.display_state == "paused" and "paused" in repr(feed)
        assert registry.subscriptions()[i]["state"] == "paused"
        with pytest.raises(IndexError, match=r"no row 99: the listing has \d+ rows \(0 to \d+\)"):
            listing.pause(99)
        listing.resume(i)
        assert registry.subscriptions()[i]["state"] == "live"
        assert not st.paused
        registry.close("trades")
        assert st.closed and "trades" not in feed.subscriptions
        assert [r["name"] for r in registry.subscriptions() if r["url"] == f.url] == ["127.0.0.1"]
        registry.close(f.url)
        assert feed.closed
        assert all(r["obj"] is not feed for r in registry.subscriptions())
        with pytest.raises(KeyError, match="no connection or subscription named 'nope'"):
            registry.close("nope")
        await f.stop()

    run(main())


def test_status_widget_has_working_buttons_per_row():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"}, params={"t": "1"})
        st = feed.stream({"channel": "trades"}, path="data", columns=TRADES, name="trades")
        await feed.opened()
        box = registry.subscriptions(feed).widget(refresh_every=None)
        lines = box.children
        assert len(lines) == 2  # the feed and its stream
        label, pause, resume, close = lines[1].children
        assert "trades" in label.value and "live" in label.value
        assert "attempts=1" in lines[0].children[0].value
        pause.click()
        assert st.paused and "paused" in box.children[1].children[0].value
        resume.click()
        assert not st.paused
        close.click()
        assert st.closed and len(box.children) == 1
        box.children[0].children[3].click()  # close the feed
        assert feed.closed
        await f.stop()

    run(main())


def test_feed_status_widget_shows_attempts_and_last_failure():
    async def main():
        f = await FakeExchange(require_token="yes").start()
        feed = open_feed(f.url, backoff=(0.005, 0.05))
        await until(lambda: feed.stats.attempts >= 2 and feed.stats.last_failure)
        box = feed.status()
        text = box.children[0].children[0].value
        assert "attempts=" in text and "HTTP 401" in text
        assert "HTTP 401" in feed._repr_html_()
        feed.close()
        await f.stop()

    run(main())


class FakeConn:
    """What a connection needs to be listed and claimed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.closed = False
        self.state = "live"
        self.subscriptions: dict = {}

        class S:
            rows = 0
            rows_per_s = 0.0
            reconnects = 0
            errors = 0

        self.stats = S()
        registry.register(self)

    def close(self) -> None:
        self.closed = True
        self.state = "closed"
        registry.unregister(self)


def test_rerunning_a_cell_replaces_the_connection_it_opened(monkeypatch):
    cell = ["cell-1"]
    monkeypatch.setattr(registry, "_cell_identity", lambda: ("cell", cell[0]))
    url = "ws://feed.invalid/ws"
    a = registry.claim(url, None, lambda: FakeConn(url))
    b = registry.claim(url, None, lambda: FakeConn(url))  # same cell again
    assert a.closed and not b.closed
    cell[0] = "cell-2"
    c = registry.claim(url, None, lambda: FakeConn(url))  # another cell, same url
    assert not b.closed and not c.closed
    d = registry.claim(url, "second", lambda: FakeConn(url))  # same cell, another key
    assert not c.closed and not d.closed
    e = registry.claim(url, None, lambda: FakeConn(url), policy="reuse")
    assert e is c
    g = registry.claim(url, None, lambda: FakeConn(url), policy="new")
    assert g is not c and not c.closed
    live = [r["obj"] for r in registry.subscriptions() if r["url"] == url]
    assert live == [b, c, d, g]
    with pytest.raises(ValueError, match="policy must be"):
        registry.claim(url, None, lambda: FakeConn(url), policy="sometimes")
    for x in (b, c, d, g):
        x.close()


def test_outside_a_kernel_every_claim_opens_its_own_connection():
    url = "ws://feed.invalid/ws"
    assert registry._cell_identity() is None
    a = registry.claim(url, None, lambda: FakeConn(url))
    b = registry.claim(url, None, lambda: FakeConn(url))
    assert not a.closed and not b.closed
    c = registry.claim(url, "k", lambda: FakeConn(url))
    d = registry.claim(url, "k", lambda: FakeConn(url))  # an explicit key applies the policy
    assert c.closed and not d.closed
    for x in (a, b, d):
        x.close()


def test_registry_holds_connections_weakly():
    import gc

    url = "ws://weak.invalid/ws"
    FakeConn(url)
    gc.collect()
    assert all(r["url"] != url for r in registry.subscriptions())


def test_close_all_closes_every_feed_with_going_away_at_shutdown():
    async def main():
        f = await FakeExchange().start()
        a = open_feed(f.url)
        b = open_feed(f.url)
        await a.opened()
        await b.opened()
        registry.close_all(reason="shutdown")
        assert a.closed and b.closed
        await until(lambda: len(f.closes) == 2)
        assert f.closes == [(1001, "shutdown")] * 2
        await f.stop()

    run(main())
