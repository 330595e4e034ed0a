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

from livestream.client.feed import open_feed
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
