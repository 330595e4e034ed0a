"""Many drops and stalls: every message sent after each resubscription arrives exactly once,
with the right dtypes, and the feed is resubscribed every time. Also wss with a private CA."""

from __future__ import annotations

import ssl

import numpy as np
import pandas as pd
import trustme
from conftest import run, until
from fakefeed import FakeExchange

from livestream.client.feed import open_feed

SUB = {"op": "subscribe", "channel": "trades"}
TRADES = {"seq": int, "price": ("px", float), "qty": int, "ts": "datetime", "sym": "category"}
DISCONNECTS = 20
STALLS = 3


def test_twenty_disconnects_and_three_stalls_lose_and_duplicate_nothing():
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, on_open=[SUB], ack={"event": "subscribed"}, stale_after=0.2,
                         ping_match={"op": "ping"}, pong=lambda m: {"op": "pong", "id": m["id"]},
                         backoff=(0.005, 0.05))
        st = feed.stream({"channel": "trades"}, path="data", columns=TRADES)
        stall_at = {6, 13, 19}  # cycles that end in a stall instead of a disconnect
        sent = 0
        cycles = DISCONNECTS + STALLS
        for cycle in range(cycles + 1):
            # wait for the resubscription on this session, then send
            await until(lambda c=cycle: f.subscribes == c + 1 and feed.state == "live"
                        and len(f.subscribed()) == 1, f"resubscription #{cycle}")
            f.ping_clients(cycle)
            sent += f.send_trades(7, per_message=1 + cycle % 4)
            await until(lambda n=sent: len(st) == n, f"{sent} rows in cycle {cycle}")
            if cycle == cycles:
                break
            if cycle in stall_at:
                f.stall_all()
            else:
                f.disconnect_all()
        s = feed.stats
        assert s.reconnects == cycles and st.stats.reconnects == cycles
        assert s.stale == STALLS
        assert s.subscribes == cycles + 1 and f.subscribes == cycles + 1
        assert f.pongs == list(range(cycles + 1))
        df = st.df
        assert df.seq.tolist() == list(range(sent))  # exactly once, in order
        assert df.dtypes.astype(str).tolist() == [
            "Int64", "float64", "Int64", "datetime64[ns, UTC]", "category"]
        expected_px = np.array([100 + s % 50 + 0.5 for s in range(sent)])
        assert np.array_equal(df.price.to_numpy(), expected_px)
        assert (df.ts - pd.Timestamp(1_700_000_000_000, unit="ms", tz="UTC")).dt.total_seconds(
        ).mul(1000).round().astype(int).tolist() == list(range(sent))
        assert st.stats.errors == 0 and len(st.dead_letters) == 0
        feed.close()
        await f.stop()

    run(main(), timeout=120)


def _tls_contexts():
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    return ca, server_ctx


def test_wss_with_a_custom_ca_bundle_is_verified_and_works(tmp_path):
    ca, server_ctx = _tls_contexts()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))

    async def main():
        f = await FakeExchange(ssl_ctx=server_ctx).start()
        assert f.url.startswith("wss://")
        feed = open_feed(f.url, ca=str(bundle), on_open=[SUB], ack={"event": "subscribed"})
        st = feed.stream({"channel": "trades"}, path="data", columns=TRADES)
        await feed.opened()
        f.send_trades(2)
        await until(lambda: len(st) == 6)
        assert st.df.seq.tolist() == list(range(6))
        feed.close()
        await f.stop()

    run(main())


def test_wss_with_an_untrusted_certificate_is_refused():
    _, server_ctx = _tls_contexts()

    async def main():
        f = await FakeExchange(ssl_ctx=server_ctx).start()
        feed = open_feed(f.url, on_open=[SUB], backoff=(0.005, 0.05))
        await until(lambda: feed.stats.attempts >= 2 and feed.stats.last_failure, "a failure")
        s = feed.stats
        assert s.connects == 0 and f.handshakes == []
        assert s.last_failure.startswith("TLS certificate not trusted")
        assert "ca=" in s.last_failure
        feed.close()
        await f.stop()

    run(main())


def test_wss_verification_can_be_turned_off_explicitly():
    _, server_ctx = _tls_contexts()

    async def main():
        f = await FakeExchange(ssl_ctx=server_ctx).start()
        feed = open_feed(f.url, verify=False)
        await feed.opened()
        assert len(f.handshakes) == 1
        feed.close()
        await f.stop()

    run(main())
