"""FeedConnection against fake public feeds on loopback: handshake, subscribe, heartbeats,
reconnects, dead letters, streams as Subscriptions."""

from __future__ import annotations

import asyncio
import socket

import pandas as pd
import pytest
from conftest import run, until, wait_for
from fakefeed import FakeExchange

from livestream.client.feed import Backoff, FeedConnection, open_feed
from livestream.client.feeds.stream import FeedStream
from livestream.client.subscription import Subscription
from livestream.errors import ConnectionClosed

SUB = {"op": "subscribe", "channel": "trades"}
TRADES = {"seq": int, "price": ("px", float), "qty": int, "ts": "datetime", "sym": "category"}
FAST = (0.005, 0.05)  # backoff for tests: reconnect quickly


def trades_stream(feed: FeedConnection, **kw) -> FeedStream:
    return feed.stream({"channel": "trades"}, path="data", columns=TRADES, **kw)


def test_handshake_carries_headers_cookies_query_token_and_subprotocol():
    async def main():
        f = await FakeExchange(require_token="s3cret", accept_subprotocols=("feed.v2",)).start()
        feed = open_feed(f.url, headers={"X-Api-Key": "k1"}, cookies={"session": "abc", "u": "7"},
                         params={"token": "s3cret"}, subprotocols=["feed.v3", "feed.v2"])
        await feed.opened()
        hs = f.handshakes[0]
        assert hs["headers"]["X-Api-Key"] == "k1"
        assert hs["cookies"] == {"session": "abc", "u": "7"}
        assert hs["query"] == {"token": "s3cret"}
        assert f.subprotocols_offered == [["feed.v3", "feed.v2"]]
        assert hs["subprotocol"] == "feed.v2"
        feed.close()
        await f.stop()

    run(main())


def test_refused_handshake_is_retried_and_the_reason_shown():
    async def main():
        f = await FakeExchange(require_token="s3cret").start()
        feed = open_feed(f.url, params={"token": "wrong"}, backoff=FAST)
        await until(lambda: feed.stats.attempts >= 3, "three attempts")
        s = feed.stats
        assert feed.state in ("connecting", "reconnecting")
        assert s.connects == 0
        assert s.last_failure == "handshake refused: HTTP 401 Unauthorized"
        assert s.failures >= 2 and s.next_retry_in is not None
        with pytest.raises(TimeoutError, match="HTTP 401"):
            await feed.opened(timeout=0.01)
        feed.close()
        await f.stop()

    run(main())


def test_max_retries_gives_up_with_state_failed():
    async def main():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there
        feed = open_feed(f"ws://127.0.0.1:{port}/ws", backoff=FAST, max_retries=2)
        await until(lambda: feed.state == "failed", "failed state")
        assert feed.stats.attempts == 3
        assert feed.stats.last_failure.startswith("connect failed")
        with pytest.raises(ConnectionClosed, match="failed"):
            await feed.opened()
        feed.close()

    run(main())


def test_subscribe_messages_are_sent_on_open_and_the_ack_awaited():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB, {"op": "subscribe", "channel": "chat"}],
                         ack={"event": "subscribed"}, backoff=FAST)
        st = trades_stream(feed)
        assert feed.state in ("connecting", "subscribing")
        await feed.opened()
        assert f.subscribes == 2 and feed.stats.acks == 2 and feed.stats.subscribes == 1
        f.send_trades(4, per_message=5)
        await until(lambda: len(st) == 20, "20 rows")
        assert st.stats.messages == 4 and st.stats.state == "live"
        # acks are consumed by the connection, never streamed
        assert not any("subscribed" in d.message for d in st.dead_letters)
        feed.close()
        await f.stop()

    run(main())


def test_on_open_function_gets_the_connection_and_runs_after_every_connect():
    async def main():
        f = await FakeExchange().start()
        calls = []

        async def subscribe(conn):
            calls.append(conn.stats.connects)
            conn.send({"op": "hb"})  # sending from on_open works
            return [SUB]

        feed = open_feed(f.url, on_open=subscribe, ack={"event": "subscribed"}, backoff=FAST)
        await feed.opened()
        f.disconnect_all()
        await until(lambda: feed.stats.reconnects == 1 and feed.state == "live", "reconnect")
        assert calls == [1, 2]
        assert f.subscribes == 2 and f.heartbeats == 2
        feed.close()
        await f.stop()

    run(main())


def test_error_ack_fails_the_session_with_the_feeds_message():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[{"op": "subscribe", "channel": "nope"}],
                         ack={"event": "subscribed"}, ack_error={"event": "error"},
                         backoff=FAST)
        await until(lambda: feed.stats.attempts >= 2, "a retry")
        assert feed.stats.last_failure.startswith("subscription refused:")
        assert "unknown channel 'nope'" in feed.stats.last_failure
        assert feed.stats.connects >= 1 and feed.state != "live"
        feed.close()
        await f.stop()

    run(main())


def test_missing_ack_times_out_and_reconnects():
    async def main():
        f = await FakeExchange(ack=False).start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"}, ack_timeout=0.05,
                         backoff=FAST)
        await until(lambda: feed.stats.attempts >= 2, "a retry")
        assert feed.stats.last_failure == "no acknowledgement within 0.05s"
        feed.close()
        await f.stop()

    run(main())


def test_app_level_pings_are_answered_and_not_streamed():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"}, ping_match={"op": "ping"},
                         pong=lambda m: {"op": "pong", "id": m["id"]})
        st = feed.stream(columns=["seq"])  # every message, so pings would show if streamed
        await feed.opened()
        for i in range(5):
            f.ping_clients(i)
        await until(lambda: f.pongs == [0, 1, 2, 3, 4], "five pongs")
        assert feed.stats.pings_answered == 5
        assert len(st) == 0 and st.stats.errors == 0
        feed.close()
        await f.stop()

    run(main())


def test_text_pings_and_periodic_app_pings_and_ws_pings():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, ping_match="ping", pong="pong", app_ping={"op": "hb"},
                         app_ping_interval=0.01, ws_ping_interval=0.01, ws_ping_timeout=5)
        await feed.opened()
        f.send_raw("ping")
        await until(lambda: "pong" in f.received_text, "text pong")
        await until(lambda: f.heartbeats >= 3, "three app heartbeats")
        await until(lambda: f.ws_pings >= 3, "three websocket pings")
        assert feed.stats.pings_sent >= 3 and feed.stats.not_json == 0
        feed.close()
        await f.stop()

    run(main())


def test_a_silent_feed_is_treated_as_dropped_and_reconnected():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"}, stale_after=0.1,
                         backoff=FAST)
        st = trades_stream(feed)
        await feed.opened()
        f.send_trades(1)
        await until(lambda: len(st) == 3)
        f.stall_all()
        await until(lambda: feed.stats.stale == 1 and feed.state == "live", "stale reconnect")
        assert feed.stats.reconnects == 1 and f.subscribes == 2
        assert feed.stats.last_failure == "stale: no message for 0.1s"
        assert st.stats.reconnects == 1
        f.send_trades(1)
        await until(lambda: len(st) == 6)
        feed.close()
        await f.stop()

    run(main())


def test_server_disconnect_reason_is_recorded():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, backoff=FAST)
        await feed.opened()
        f.disconnect_all(4000, "going for lunch")
        await until(lambda: feed.stats.reconnects == 1 and feed.state == "live")
        assert feed.stats.last_failure == "closed by the feed (code 4000: going for lunch)"
        feed.close()
        await f.stop()

    run(main())


def test_malformed_messages_are_dead_lettered_and_the_stream_keeps_going():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"}, dead_letter_limit=3)
        st = feed.stream({"channel": "trades"}, path="data", columns=TRADES, required=["seq"])
        await feed.opened()
        f.send_trades(1)
        f.send_raw("{not json")
        f.send_raw({"channel": "trades"})  # no data
        f.send_raw({"channel": "trades", "data": [{"px": "1"}]})  # seq missing
        f.send_raw({"channel": "trades", "data": [{"seq": 9, "px": "n/a"}, {"seq": 10, "px": 1}]})
        f.send_raw({"channel": "trades", "data": ["x"]})
        f.send_trades(1)
        await until(lambda: len(st) == 7, "seven good rows")
        extra = st.stats.extra
        assert extra["dead_letters"] == 5, list(st.dead_letters)
        assert (extra["not_json"], extra["bad_path"], extra["missing_field"], extra["bad_value"],
                extra["bad_record"]) == (1, 1, 1, 1, 1)
        assert st.stats.errors == 5
        assert len(st.dead_letters) == 3  # bounded: the newest three
        # (rows failing coercion are found at the end of their batch, so the
        # newest three are these, in either order)
        by_kind = {d.kind: d for d in st.dead_letters}
        assert set(by_kind) == {"missing_field", "bad_value", "bad_record"}
        assert "'price'" in by_kind["bad_value"].reason and "n/a" in by_kind["bad_value"].message
        assert "missing required field 'seq'" in by_kind["missing_field"].reason
        assert st.df.seq.tolist() == [0, 1, 2, 10, 3, 4, 5]
        assert feed.stats.not_json == 1 and feed.stats.dead_letters == 5
        feed.close()
        await f.stop()

    run(main())


def test_stream_is_a_subscription_with_callbacks_pause_resume_and_close():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"})
        st = trades_stream(feed, window=4)
        assert isinstance(st, Subscription)
        seen = []
        st.on_update(lambda sub, frame, kind: seen.append((kind, len(frame))))
        await feed.opened()
        f.send_trades(1)
        await until(lambda: len(st) == 3)
        assert seen == [("append", 3)]
        st.pause()
        assert st.stats.state == "paused"
        f.send_trades(2)
        f.send_raw({"op": "marker"})
        await until(lambda: feed.stats.messages >= 5, "messages while paused")
        assert st.stats.dropped == 2 and len(st) == 3
        st.resume()
        assert st.stats.state == "live"
        f.send_trades(1)
        await until(lambda: st.stats.rows == 6)
        assert len(st) == 4  # window
        assert st.df.seq.tolist() == [5, 9, 10, 11][-4:] or st.df.seq.tolist() == [2, 9, 10, 11]
        st.close()
        assert st.closed and "trades" not in " ".join(feed.subscriptions)
        f.send_trades(1)
        await until(lambda: feed.stats.messages >= 7)
        assert st.stats.state == "closed"
        feed.close()
        await f.stop()

    run(main())


def test_close_closes_the_socket_and_every_stream():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url)
        st = feed.stream(columns=["x"])
        await feed.opened()
        feed.close()
        feed.close()  # twice is fine
        assert feed.state == "closed" and st.closed
        await until(lambda: f.closes, "server sees the close")
        assert f.closes == [(1000, "client closed")]
        with pytest.raises(ConnectionClosed):
            feed.stream(columns=["x"])
        await f.stop()

    run(main())


def test_in_a_plain_script_the_feed_runs_on_a_background_loop():
    # the fake feed runs on its own thread's loop; the test's thread has no loop,
    # like a script's main thread
    import threading

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        f = asyncio.run_coroutine_threadsafe(FakeExchange().start(), loop).result(10)
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"})
        assert feed.loop is not loop
        st = trades_stream(feed)
        feed.wait_open()
        loop.call_soon_threadsafe(f.send_trades, 2)
        st.wait(6)
        df = st.df
        assert df.seq.tolist() == list(range(6))
        assert df.dtypes["ts"] == "datetime64[ns, UTC]"
        feed.send({"op": "hb"})
        wait_for(lambda: f.heartbeats == 1, "heartbeat sent from the script thread")
        feed.close()
        assert feed.state == "closed" and st.closed
        asyncio.run_coroutine_threadsafe(f.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        loop.close()


def test_backoff_is_capped_exponential_with_jitter():
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.5)
    assert [b.delay(n, rng=lambda: 0.0) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert [b.delay(n, rng=lambda: 1.0) for n in (1, 3, 10)] == [0.25, 1.0, 2.0]
    assert b.delay(10_000, rng=lambda: 0.0) == 4.0
    with pytest.raises(ValueError, match="initial <= maximum"):
        Backoff(initial=5, maximum=1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"url": "http://x"}, "starts with ws:// or wss://"),
        ({"on_open": 5}, "on_open must be a message"),
        ({"ping_match": {"op": "ping"}}, "ping_match needs pong="),
        ({"pong": "pong"}, "pong= needs ping_match="),
        ({"app_ping": {"op": "hb"}}, "app_ping and app_ping_interval go together"),
        ({"stale_after": 0}, "stale_after must be a positive number"),
        ({"ca": "/nonexistent.pem", "url": "wss://127.0.0.1:1/ws"}, "does not exist"),
        ({"ca": "/x.pem"}, "apply to wss:// URLs only"),
        ({"ack_count": 2}, "ack_count needs ack="),
        ({"subprotocols": "v1"}, "subprotocols must be a list"),
        ({"backoff": 3}, "backoff must be a Backoff"),
        ({"on_open": [{"a": {1, 2}}]}, "cannot send"),
        ({"batch_messages": 0}, "batch_messages must be a whole number"),
        ({"batch_messages": 2.5}, "batch_messages must be a whole number"),
    ],
)
def test_bad_options_are_refused_with_a_clear_error(kwargs, error):
    kwargs = {"url": "ws://127.0.0.1:1/ws", **kwargs}
    url = kwargs.pop("url")
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=error):
        FeedConnection(url, **kwargs)


def test_stream_names_default_from_the_selector_and_stay_unique():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url)
        a = feed.stream({"channel": "trades"})
        b = feed.stream({"channel": "trades"})
        c = feed.stream(lambda m: True)
        assert (a.name, b.name, c.name) == ("channel=trades", "channel=trades#2", "stream3")
        assert list(feed.subscriptions) == [a.name, b.name, c.name]
        feed.close()
        await f.stop()

    run(main())


def test_empty_window_has_the_streams_schema_after_the_first_rows():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"})
        st = trades_stream(feed)
        assert isinstance(st.df, pd.DataFrame) and len(st.df) == 0
        await feed.opened()
        f.send_trades(1)
        await until(lambda: len(st) == 3)
        assert st.schema is not None and st.schema.names == list(TRADES)
        feed.close()
        await f.stop()

    run(main())


EVENT_COLUMNS = {"price": ("p", float), "qty": ("q", float), "time": ("T", "datetime"),
                 "symbol": ("s", "category"), "bid": ("book.0.0", float)}


def event(i: int, **kw) -> dict:
    e = {"type": "trade", "p": f"{100 + i}.5", "q": 0.5, "T": 1_700_000_000_000 + i,
         "s": "BTC" if i % 2 else "ETH", "book": [[99.5 + i, 1]]}
    e.update(kw)
    return e


def test_one_event_per_message_streams_take_the_generated_handler_and_keep_every_rule():
    """No path and a one-field select: the stream's generated per-message handler. A
    message it cannot read directly (a missing field, another shape) still becomes a
    row or a dead letter exactly as on the general path."""
    async def main():
        f = await FakeExchange(ack=False).start()
        feed = open_feed(f.url)
        st = feed.stream({"type": "trade"}, columns=EVENT_COLUMNS)
        assert feed._dispatch == st._feed  # the one stream's handler, called directly
        await feed.opened()
        f.send_raw(event(0))
        f.send_raw({"type": "quote", "p": "1"})  # not selected
        f.send_raw(event(1, q=None, book=[]))  # null and missing → NaN
        ev = event(2)
        del ev["s"]
        f.send_raw(ev)  # missing category → null
        f.send_raw(event(3, p="n/a"))  # bad value: dead letter with the message text
        f.send_raw(event(4, T="2023-11-14T22:13:20.004Z"))  # an ISO time among epoch numbers
        f.send_raw(event(5, p=7))
        await until(lambda: st.stats.messages == 6 and len(st) == 5, "five rows")
        df = st.df
        assert df.price.tolist()[:2] == [100.5, 101.5] and df.price.iloc[-1] == 7.0
        assert df.qty.isna().tolist() == [False, True, False, False, False]
        assert df.bid.isna().tolist() == [False, True, False, False, False]
        assert df.symbol.isna().tolist() == [False, False, True, False, False]
        assert str(df.dtypes["time"]) == "datetime64[ns, UTC]"
        assert df.time.iloc[3] == pd.Timestamp("2023-11-14 22:13:20.004", tz="UTC")
        (dead,) = st.dead_letters
        assert dead.kind == "bad_value" and "'price'" in dead.reason
        assert '"p":"n/a"' in dead.message.replace(" ", "")
        # paused: the general handler counts and drops; resumed: the fast one again
        fast = st._feed
        st.pause()
        assert st._feed != fast and feed._dispatch == st._feed
        f.send_raw(event(6))
        await until(lambda: st.stats.dropped == 1, "dropped while paused")
        st.resume()
        f.send_raw(event(7))
        await until(lambda: len(st) == 6, "a row after resume")
        assert st.stats.messages == 8 and st.stats.extra["dead_letters"] == 1
        feed.close()
        await f.stop()

    run(main())


def test_a_predicate_select_other_shapes_and_inferred_columns_on_the_generated_handler():
    async def main():
        f = await FakeExchange(ack=False).start()
        feed = open_feed(f.url)
        seen = []
        st = feed.stream(lambda m: m["kind"] == "t", columns={"x": float, "y": ("a.b", int)})
        auto = feed.stream(lambda m: isinstance(m, dict) and m.get("kind") == "t")
        feed.on_message(seen.append)  # a raw callback: messages go through the general loop
        assert feed._dispatch == feed._dispatch_all
        await feed.opened()
        f.send_raw({"kind": "t", "x": 1, "a": {"b": 2}})
        f.send_raw({"other": 1})  # the predicate raises: select_error
        f.send_raw('[{"kind": "t"}]')  # not an object at the top: the general path
        f.send_raw({"kind": "t", "x": "2.5", "a": {"b": "3"}})
        await until(lambda: len(st) == 2 and len(auto) == 2, "rows in both streams")
        assert st.df.x.tolist() == [1.0, 2.5] and st.df.y.tolist() == [2, 3]
        assert st.stats.extra["select_error"] == 2  # {"other": 1} and the list
        assert list(auto.df.columns) == ["kind", "x"]  # inferred from the first record
        assert len(seen) == 4
        feed.close()
        await f.stop()

    run(main())
