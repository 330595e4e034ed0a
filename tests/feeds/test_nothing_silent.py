"""Outside feeds fail loudly and lose nothing they received (issue 11, "Feeds").

Every message the client received reaches the window, including the batch
pending at a close, a reconnect, a pause and ``feed.close()``; a stream that gets
no data is detected even while the feed answers pings; a feed's refusal is shown,
logged and counts against ``max_retries``; a column whose field never appears is
warned about; converters, envelope fields and array-position selectors shape rows.
"""

from __future__ import annotations

import logging

import pytest
from conftest import run, until
from fakefeed import FakeExchange

from livestream.client.feed import Backoff, open_feed
from livestream.client.feeds.parse import Column

SUB = {"op": "subscribe", "channel": "trades"}
TRADES = {"seq": int, "price": ("px", float), "qty": int, "ts": "datetime", "sym": "category"}
FAST = (0.005, 0.05)


def trades_stream(feed, **kw):
    return feed.stream({"channel": "trades"}, path="data", columns=TRADES, **kw)


# -- nothing received is lost ---------------------------------------------------------------


@pytest.mark.parametrize("reconnect", [False, True])
def test_the_batch_pending_when_the_feed_closes_reaches_the_window(reconnect):
    async def main():
        f = await FakeExchange().start()
        # a long batch interval: a batch is always pending when the close arrives
        feed = open_feed(f.url, on_open=SUB, ack={"event": "subscribed"}, reconnect=reconnect,
                         backoff=FAST, batch_interval=0.5)
        st = trades_stream(feed)
        await feed.opened()
        sent = 0
        for i in range(5):
            sent += f.send_trades(400, per_message=2)
            f.disconnect_all(1000, "bye")
            if not reconnect:
                break
            await until(lambda i=i: feed.state == "live" and f.subscribes == i + 2
                        and len(f.clients) == 1, "live again")
        await until(lambda: feed.stats.messages >= sent // 2, "every message received")
        await until(lambda: len(st) == sent, f"{sent} rows in the window")
        assert sorted(st.df["seq"]) == list(range(sent))
        feed.close()
        await f.stop()

    run(main())


def test_the_batch_pending_at_pause_and_at_feed_close_reaches_the_window():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=SUB, ack={"event": "subscribed"}, batch_interval=0.5)
        st = trades_stream(feed)
        await feed.opened()
        sent = f.send_trades(300, per_message=2)
        await until(lambda: feed.stats.messages >= 300, "received")
        st.pause()  # the pending batch was received before the pause: it is kept
        assert len(st) == sent
        st.resume()
        sent += f.send_trades(300, per_message=2)
        await until(lambda: feed.stats.messages >= 600, "received")
        feed.close()
        assert len(st) == sent
        assert sorted(st.df["seq"]) == list(range(sent))
        await f.stop()

    run(main())


# -- stalls are judged by data ----------------------------------------------------------------


def test_a_stream_that_gets_no_data_is_stale_even_while_the_feed_answers_pings(caplog):
    async def main():
        f = await FakeExchange(answer_heartbeats=True).start()
        feed = open_feed(f.url, on_open=SUB, ack={"event": "subscribed"}, backoff=FAST,
                         app_ping={"op": "hb"}, app_ping_interval=0.02)
        st = trades_stream(feed, stale_after=0.4)
        await feed.opened()
        f.send_trades(5)
        await until(lambda: len(st) == 15, "first rows")
        f.stall_all()  # no more data; heartbeats are still answered
        await until(lambda: st.stats.extra["stale"] >= 1, "the stream is stale")
        await until(lambda: feed.stats.reconnects >= 1 and feed.state == "live",
                    "reconnected and live")
        assert feed.stats.stale >= 1
        assert "stale: stream 'channel=trades' got no data for 0.4s" in (
            feed.stats.last_failure or "")
        assert f.heartbeats > 0  # pongs kept coming all along
        assert any("got no data" in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records)
        await until(lambda: len(f.clients) == 1 and f.subscribed(), "resubscribed")
        f.send_trades(2)
        await until(lambda: len(st) == 21, "data flows again")
        feed.close()
        await f.stop()

    run(main())


def test_control_traffic_alone_keeps_the_connection_but_not_the_stream():
    async def main():
        f = await FakeExchange(answer_heartbeats=True).start()
        feed = open_feed(f.url, on_open=SUB, ack={"event": "subscribed"}, backoff=FAST,
                         app_ping={"op": "hb"}, app_ping_interval=0.02, max_retries=2)
        st = trades_stream(feed, stale_after=0.2)
        await feed.opened()
        f.stall_all()
        # every session only ever sees pongs: each is a failure, so max_retries ends it
        f.known_channels = {"chat"}  # resubscribing is refused from now on
        await until(lambda: feed.state == "failed", "failed after the retries")
        assert st.stats.extra["stale"] == 1
        assert feed.stats.attempts == 3

    run(main())


# -- rejection reasons are visible -----------------------------------------------------------


def test_a_feed_that_refuses_us_shows_its_reason_and_max_retries_applies(caplog):
    async def main():
        refusal = {"type": "error", "reason": "no subscribe within 5s"}
        f = await FakeExchange(refuse=(refusal, 1008)).start()
        feed = open_feed(f.url, on_open=SUB, backoff=FAST, max_retries=2)
        st = trades_stream(feed)
        await until(lambda: feed.state == "failed", "failed after the retries")
        s = feed.stats
        assert s.attempts == 3 and s.connects == 3
        assert s.feed_errors == 3
        assert s.last_feed_error == '{"type":"error","reason":"no subscribe within 5s"}'
        assert "closed by the feed (code 1008)" in s.last_failure
        assert "no subscribe within 5s" in s.last_failure
        assert "no subscribe within 5s" in repr(feed)
        assert "no subscribe within 5s" in feed._repr_html_()
        from livestream.client import registry

        row = next(r for r in registry.subscriptions() if r["obj"] is feed)
        assert "no subscribe within 5s" in row["last_error"]
        warned = [r for r in caplog.records if r.levelno == logging.WARNING
                  and "no subscribe within 5s" in r.getMessage()]
        assert len(warned) == 3
        assert len(st) == 0 and st.stats.errors == 0  # the error is not a data message
        await f.stop()

    run(main())


def test_backoff_grows_over_sessions_that_end_before_their_first_data():
    async def main():
        f = await FakeExchange(refuse=({"event": "error", "msg": "busy"}, 1013)).start()
        feed = open_feed(f.url, backoff=Backoff(0.01, 10.0, jitter=0.0))
        await until(lambda: feed.stats.failures >= 4, "four failures")
        # consecutive: each session ended without data, so the delay doubles each time
        assert feed.stats.next_retry_in >= 0.08
        feed.close()
        await f.stop()

    run(main())


# -- no silent NaN columns or swallowed exceptions --------------------------------------------


def test_a_column_whose_field_never_appears_is_warned_about_once_and_counted(caplog):
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=SUB, ack={"event": "subscribed"})
        st = feed.stream({"channel": "trades"}, path="data",
                         columns={"seq": int, "prise": float, "qty": int})  # a typo: "px"
        await feed.opened()
        f.send_trades(10)
        await until(lambda: len(st) == 30, "rows")
        f.send_trades(10)
        await until(lambda: len(st) == 60, "more rows")
        assert st.df["prise"].isna().all()
        assert st.missing_counts == {"prise": 60}
        assert st.stats.extra["never_seen_columns"] == 1
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                  and "prise" in r.getMessage()]
        assert len(warned) == 1
        assert "field 'prise' was absent or null in all" in warned[0]
        assert "px" in warned[0]  # the fields a record has, to spot the typo
        assert "field 'prise'" in st.stats.last_error
        feed.close()
        await f.stop()

    run(main())


def test_an_on_update_exception_is_logged_with_its_traceback(caplog):
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=SUB, ack={"event": "subscribed"})
        st = trades_stream(feed)

        @st.on_update
        def broken(sub, frame, kind):
            raise ValueError("my callback is broken")

        await feed.opened()
        f.send_trades(2)
        await until(lambda: st.stats.errors >= 1, "the error counted")
        logged = [r for r in caplog.records if r.exc_info and "broken" in str(r.exc_info[1])]
        assert logged and logged[0].levelno == logging.ERROR
        assert "my callback is broken" in st.stats.last_error
        assert len(st) == 6  # the rows are kept
        feed.close()
        await f.stop()

    run(main())


def test_errors_are_counted_per_stream():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB, {"op": "subscribe", "channel": "chat"}],
                         ack={"event": "subscribed"})
        trades = trades_stream(feed, name="trades")
        chat = feed.stream({"channel": "chat"}, path="data", columns={"n": int}, name="chat")
        await feed.opened()
        f.send_trades(2)
        f.send_raw({"channel": "chat", "data": [{"n": 1}, {"n": "one"}, {"n": "two"}]})
        await until(lambda: len(trades) == 6 and len(chat) == 1, "rows")
        assert trades.stats.errors == 0 and chat.stats.errors == 2
        assert feed.stats.stream_errors == {"trades": 0, "chat": 2}
        assert feed.stats.errors == 2
        feed.close()
        await f.stop()

    run(main())


# -- shaping without pandas afterwards ---------------------------------------------------------


def test_select_matches_array_positions():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url)
        # [channel id, [[price, qty, time], ...], "trade", pair], as some exchanges send
        st = feed.stream({2: "trade"}, path=1, columns={"price": (0, float), "qty": (1, float)})
        book = feed.stream({"-2": "book"}, path=1, columns={"price": (0, float)})
        await feed.opened()
        f.send_raw('[42, [["100.5", "2", 1700000000], ["101", "1", 1700000001]], "trade", "XBT/USD"]')
        f.send_raw('[43, [["99", "5"]], "book", "XBT/USD"]')
        f.send_raw('{"event": "heartbeat"}')
        await until(lambda: len(st) == 2 and len(book) == 1, "rows")
        assert st.df["price"].tolist() == [100.5, 101.0]
        assert book.df["price"].tolist() == [99.0]
        feed.close()
        await f.stop()

    run(main())


def test_converters_and_envelope_fields_shape_the_rows():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url)
        st = feed.stream(
            {2: "trade"}, path=1,
            columns={"seq": (0, int, "number"), "price": (1, float),
                     "side": Column(source=2, type="category", convert=str.upper),
                     "fee": (3, float, "percent")},
            envelope={"chan": (0, int), "pair": (-1, "category")},
        )
        await feed.opened()
        f.send_raw('[7, [["seq:1", "100.5", "b", "0.1%"], ["seq:2", "101", "s", "0.2%"]], '
                   '"trade", "XBT/USD"]')
        f.send_raw('[7, [["seq:x", "99", "b", "0"]], "trade", "ETH/USD"]')
        await until(lambda: len(st) == 2 and st.stats.errors == 1, "rows and a dead letter")
        df = st.df
        assert df["seq"].tolist() == [1, 2] and str(df["seq"].dtype) == "Int64"
        assert df["side"].tolist() == ["B", "S"]
        assert df["fee"].tolist() == pytest.approx([0.001, 0.002])
        assert df["chan"].tolist() == [7, 7]
        assert df["pair"].tolist() == ["XBT/USD", "XBT/USD"]
        dead = st.dead_letters[-1]
        assert "column 'seq': converter 'number' failed" in dead.reason
        assert list(df.columns) == ["seq", "price", "side", "fee", "chan", "pair"]
        feed.close()
        await f.stop()

    run(main())


def test_dead_letters_of_one_batch_come_in_message_order():
    """Bad values are found column by column; the dead letters still follow the messages
    (the first bad in a later column, qty, before one in an earlier column, price)."""
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, batch_interval=0.5)  # the three messages: one batch
        st = feed.stream({"type": "t"}, columns={"price": ("p", float), "qty": ("q", float)})
        await feed.opened()
        await until(lambda: len(f.clients) == 1, "connected")
        f.send_raw('{"type": "t", "p": "1.5", "q": true, "id": "first"}')
        f.send_raw('{"type": "t", "p": "abc", "q": 2, "id": "second"}')
        f.send_raw('{"type": "t", "p": "2.5", "q": 3, "id": "third"}')
        await until(lambda: len(st.dead_letters) == 2 and len(st) == 1, "one row, two dead")
        assert [d.message.split('"id": ')[1] for d in st.dead_letters] == [
            '"first"}', '"second"}']
        assert "column 'qty'" in st.dead_letters[0].reason
        assert "column 'price'" in st.dead_letters[1].reason
        feed.close()
        await f.stop()

    run(main())
