"""Relaying a feed stream into a livestream topic: publish_to() and ``livestream bridge``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner
from conftest import run, until, wait_for
from fakefeed import FakeExchange

import livestream
from livestream.cli.bridge import bridge
from livestream.client.feed import open_feed

SUB = {"op": "subscribe", "channel": "trades"}
TRADES = {"seq": int, "price": ("px", float), "ts": "datetime", "sym": "category"}


def test_publish_to_a_server_handle_reaches_livestream_subscribers():
    async def main():
        f = await FakeExchange().start()
        srv = livestream.serve(port=0)
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"})
        st = feed.stream({"channel": "trades"}, path="data", columns=TRADES)
        await feed.opened()
        f.send_trades(2)
        await until(lambda: len(st) == 6)
        relay = st.publish_to(srv, "trades")  # the rows already there go first
        f.send_trades(3)
        await until(lambda: len(st) == 15)
        conn = livestream.connect(srv.url)
        sub = conn.subscribe("trades")
        await until(lambda: len(sub) == 15, "15 rows at the subscriber")
        df = sub.df
        assert df.seq.tolist() == list(range(15))
        assert df.dtypes.astype(str).tolist() == st.df.dtypes.astype(str).tolist()
        assert relay.stats.rows == 15 and relay.stats.errors == 0
        relay.stop()
        f.send_trades(1)
        await until(lambda: len(st) == 18)
        assert relay.stats.rows == 15
        conn.close()
        feed.close()
        srv.close()
        await f.stop()

    run(main())


def test_publish_to_a_url_opens_and_owns_a_connection():
    async def main():
        f = await FakeExchange().start()
        srv = livestream.serve(port=0)
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"})
        st = feed.stream({"channel": "trades"}, path="data", columns=TRADES)
        relay = st.publish_to(srv.url, "ticks")
        await feed.opened()
        f.send_trades(4)
        await until(lambda: relay.stats.rows == 12, "12 rows relayed")
        def topic_rows() -> int:
            try:
                return len(srv.snapshot("ticks"))
            except livestream.TopicError:  # not created until the first batch lands
                return 0

        await until(lambda: topic_rows() == 12, "12 rows in the topic")
        assert srv.snapshot("ticks").seq.tolist() == list(range(12))
        target = relay.target
        feed.close()  # closing the stream stops the relay and its own connection
        assert target.closed
        srv.close()
        await f.stop()

    run(main())


def test_publish_to_refuses_what_cannot_publish():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url)
        st = feed.stream(columns=["x"])
        with pytest.raises(TypeError, match="needs a livestream server"):
            st.publish_to(object(), "t")
        with pytest.raises(ValueError, match="ws:// or wss://"):
            st.publish_to("http://x", "t")
        with pytest.raises(ValueError, match="topic must be"):
            st.publish_to("ws://x", "")
        feed.close()
        await f.stop()

    run(main())


class _Background:
    """A loop on a thread holding the fake feed and a livestream server (like other hosts)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn, *args):
        async def go():
            r = fn(*args)
            return await r if asyncio.iscoroutine(r) else r

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(20)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_bridge_command_relays_a_feed_into_a_topic():
    bg = _Background()
    try:
        f = bg.call(lambda: FakeExchange().start())
        srv = bg.call(lambda: livestream.serve(port=0))
        env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.Popen(
            [sys.executable, "-m", "livestream.cli.bridge", f.url, "--server", srv.url,
             "--topic", "trades", "--on-open", '{"op": "subscribe", "channel": "trades"}',
             "--ack", "event=subscribed", "--select", "channel=trades", "--path", "data",
             "--column", "seq:int", "--column", "price=px:float", "--column", "ts:datetime",
             "--column", "sym:category", "--stale-after", "30"],
            stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            wait_for(lambda: f.subscribes == 1 or proc.poll() is not None, "bridge subscribed")
            assert proc.poll() is None
            bg.call(f.send_trades, 5)

            def rows():
                try:
                    return len(bg.call(srv.snapshot, "trades"))
                except livestream.TopicError:
                    return 0

            wait_for(lambda: rows() == 15, "15 rows in the topic")
            df = bg.call(srv.snapshot, "trades")
            assert df.seq.tolist() == list(range(15))
            assert df.dtypes.astype(str).tolist() == [
                "Int64", "float64", "datetime64[ns, UTC]", "category"]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "stopped; rows=15 published=15 relay_errors=0" in err
        bg.call(srv.close)
        bg.call(f.stop)
    finally:
        bg.stop()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["http://x", "--server", "ws://s", "--topic", "t"], "must start with ws://"),
        (["ws://x", "--server", "http://s", "--topic", "t"], "must start with ws://"),
        (["ws://x", "--server", "ws://s", "--topic", "t", "--column", "a:complex"],
         "unknown type 'complex'"),
        (["ws://x", "--server", "ws://s", "--topic", "t", "--select", "type"], "KEY=VALUE"),
        (["ws://x", "--server", "ws://s", "--topic", "t", "--on-open", "{bad"], "not JSON"),
        (["ws://x", "--server", "ws://s", "--topic", "t", "--header", "nocolon"], "Name: value"),
        (["ws://x", "--server", "ws://s", "--topic", "t", "--ping-match", "ping"],
         "--ping-match needs --pong"),
    ],
)
def test_bridge_refuses_bad_arguments_clearly(args, error):
    result = CliRunner().invoke(bridge, args)
    assert result.exit_code == 2
    assert error in result.output
