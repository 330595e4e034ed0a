"""An outside feed's options and decisions, without a socket: FeedOptions and FeedSession."""

from __future__ import annotations

import ssl

import pytest

from livestream.client.backoff import Backoff
from livestream.client.feeds.options import FeedOptions, encode_message
from livestream.client.feeds.session import FeedError, FeedSession

URL = "ws://feed.example/ws"


def session(clock: list[float] | None = None, **options) -> FeedSession:
    t = clock if clock is not None else [0.0]
    return FeedSession(FeedOptions.of(URL, **options), clock=lambda: t[0], wall=lambda: 1e9,
                       rng=lambda: 0.0)


# -- options ------------------------------------------------------------------------------


def test_options_build_the_request_and_keep_messages():
    o = FeedOptions.of(URL + "?a=1", params={"token": "t k"}, headers={"X-A": 1},
                       cookies={"s": "v"}, on_open=[{"op": "sub"}, "text", b"\x01"],
                       backoff=(1, 4))
    assert o.request_url == URL + "?a=1&token=t+k"
    assert o.headers == {"X-A": "1", "Cookie": "s=v"}
    assert o.on_open_messages == ({"op": "sub"}, "text", b"\x01")
    assert o.backoff == Backoff(1, 4) and o.ssl is None


def test_wss_gets_a_verifying_tls_context():
    o = FeedOptions.of("wss://feed.example/ws")
    assert isinstance(o.ssl, ssl.SSLContext) and o.ssl.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("options, error, words", [
    ({"url": "http://x"}, ValueError, "ws:// or wss://"),
    ({"stale_after": 0}, ValueError, "stale_after"),
    ({"ack_count": 2}, ValueError, "ack_count needs ack="),
    ({"ping_match": "ping"}, ValueError, "ping_match needs pong="),
    ({"pong": "pong"}, ValueError, "pong= needs ping_match="),
    ({"app_ping": {"op": "ping"}}, ValueError, "go together"),
    ({"backoff": 3}, TypeError, "backoff must be"),
    ({"max_retries": -1}, ValueError, "max_retries"),
    ({"batch_interval": 2}, ValueError, "batch_interval"),
    ({"subprotocols": "v1"}, TypeError, "subprotocols"),
    ({"on_open": 42}, TypeError, "on_open must be"),
    ({"on_open": [{"t": object()}]}, TypeError, "cannot send"),
    ({"ack": 5}, TypeError, "ack:"),
    ({"ca": "bundle.pem"}, ValueError, "wss:// URLs only"),
])
def test_bad_options_are_refused_naming_the_option(options, error, words):
    url = options.pop("url", URL)
    with pytest.raises(error, match=words):
        FeedOptions.of(url, **options)


def test_messages_are_encoded_by_type():
    assert encode_message({"a": 1}) == '{"a":1}'
    assert encode_message("ping") == "ping"
    assert encode_message(bytearray(b"\x00")) == b"\x00"


# -- the session ----------------------------------------------------------------------------


def test_attempts_connects_and_reconnects():
    s = session()
    assert s.attempt() == "connecting"
    assert s.connected() is False
    assert s.attempt() == "reconnecting"
    assert s.connected() is True
    assert (s.stats.attempts, s.stats.connects, s.stats.reconnects) == (2, 2, 1)


def test_without_ack_the_session_is_live_at_once():
    s = session()
    assert s.subscribing(2) is False and s.check_ack({"type": "x"}) is None


def test_acks_are_counted_one_per_message_by_default():
    s = session(ack={"type": "subscribed"}, ack_error={"type": "error"})
    assert s.subscribing(2) is True
    assert s.check_ack({"type": "ticker"}) is None  # not an ack: goes to the streams
    assert s.check_ack({"type": "subscribed"}) == "ack"
    assert s.check_ack({"type": "subscribed"}) == "acked"
    assert s.stats.acks == 2 and s.check_ack({"type": "subscribed"}) is None


def test_an_error_ack_refuses_the_subscription():
    s = session(ack={"type": "subscribed"}, ack_error={"type": "error"}, ack_count=3)
    s.subscribing(1)
    assert s.check_ack({"type": "error", "why": "no such channel"}) == "refused"
    err = s.refusal({"type": "error", "why": "no such channel"})
    assert isinstance(err, FeedError) and "no such channel" in str(err)


def test_backoff_grows_with_failures_and_restarts_after_a_live_session():
    s = session(backoff=(1.0, 8.0))
    delays = []
    for _ in range(5):
        s.failed("connect failed")
        delays.append(s.next_attempt(was_live=False))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]  # jitter 0 (rng), capped
    assert s.stats.last_failure == "connect failed" and s.stats.last_failure_at == 1e9
    s.attempt()
    s.live()
    assert s.stats.failures == 5 and s.stats.next_retry_in is None  # live, but no data yet
    s.data()
    assert s.stats.failures == 0  # data flows: the series of failures ends
    s.failed("closed by the feed")
    assert s.next_attempt(was_live=True) == 1.0  # a session with data starts a new series


def test_a_live_session_without_data_continues_the_series_of_failures():
    s = session(backoff=(1.0, 8.0), max_retries=2)
    delays = []
    for _ in range(3):
        s.attempt()
        s.connected()
        s.live()  # accepted, maybe acknowledged, but no data message
        s.failed("closed by the feed (code 1008)")
        delays.append(s.next_attempt(was_live=True))
    assert delays == [1.0, 2.0, "failed"]


def test_the_feeds_error_message_is_kept_and_added_to_the_reason():
    s = session()
    s.attempt()
    assert s.feed_error({"type": "error", "reason": "no subscribe within 5s"}) == (
        '{"type":"error","reason":"no subscribe within 5s"}')
    s.failed("closed by the feed (code 1008)")
    assert s.stats.last_failure == (
        'closed by the feed (code 1008); the feed said: '
        '{"type":"error","reason":"no subscribe within 5s"}')
    assert s.stats.feed_errors == 1
    s.attempt()  # a new session: its own error only
    s.failed("connection lost")
    assert s.stats.last_failure == "connection lost"
    assert s.stats.last_feed_error == '{"type":"error","reason":"no subscribe within 5s"}'


def test_error_messages_are_recognised_by_default_and_ack_error_false_turns_it_off():
    from livestream.client.feeds.options import FeedOptions, looks_like_error

    assert looks_like_error({"type": "error"}) and looks_like_error({"event": "Error"})
    assert not looks_like_error({"type": "trade", "error": None})
    assert not looks_like_error(["error"])
    assert FeedOptions.of("ws://x/ws").ack_error is looks_like_error
    assert FeedOptions.of("ws://x/ws", ack_error=False).ack_error is None


def test_giving_up_and_not_reconnecting():
    s = session(max_retries=1)
    s.failed("x")
    assert isinstance(s.next_attempt(False), float)
    s.failed("x")
    assert s.next_attempt(False) == "failed"
    assert session(reconnect=False).next_attempt(True) == "closed"


def test_a_silent_feed_is_stale_after_stale_after():
    t = [100.0]
    s = session(clock=t, stale_after=5)
    s.connected()
    t[0] = 104.0
    assert not s.is_stale()
    s.seen()  # at 104: silent since then
    t[0] = 108.5
    assert not s.is_stale()
    t[0] = 109.5
    assert s.is_stale() and s.stats.stale == 1
    assert s.stale_reason() == "stale: no message for 5s"


def test_pings_get_their_pong_and_app_pings_their_message():
    s = session(ping_match={"op": "ping"}, pong=lambda m: {"op": "pong", "id": m["id"]},
                app_ping="hb", app_ping_interval=1)
    assert s.pong({"op": "ping", "id": 7}) == '{"op":"pong","id":7}'
    assert s.app_ping(None) == "hb"
    quiet = session(ping_match="ping", pong=lambda m: None, app_ping=lambda c: None,
                    app_ping_interval=1)
    assert quiet.pong("ping") is None and quiet.app_ping(None) is None
    assert quiet.options.ping_text == "ping" and quiet.options.ping is None


def test_states_change_once():
    s = session()
    assert s.set_state("live") is True and s.set_state("live") is False and s.state == "live"
