"""The sans-I/O client protocol: what it sends, and what it makes of what it receives.

No socket and no loop: frames are strings and bytes, made with the server's own
encoders, and each test reads the frames the protocol queued.
"""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from livestream.client.protocol import (
    BadFrame,
    ClientProtocol,
    Refused,
    Replied,
    ServerError,
    TokenRefreshed,
    TopicDeleted,
    Welcomed,
)
from livestream.client.state import (
    ErrorReported,
    GapDetected,
    RowsApplied,
    StateChanged,
    SubscriptionState,
)
from livestream.core.schema import Schema
from livestream.errors import ConnectionClosed, RemoteError
from livestream.protocol import (
    PROTOCOL_VERSION,
    data_header,
    encode_data,
    unpack_binary,
)

FRAME = pd.DataFrame({"i": [0, 1, 2], "price": [1.0, 2.0, 3.0]})
SCHEMA = Schema.from_frame(FRAME)


def sent(proto: ClientProtocol) -> list[dict]:
    """The messages queued, decoded (binary frames: their header)."""
    out = []
    for data in proto.data_to_send():
        out.append(unpack_binary(data)[0] if isinstance(data, bytes) else orjson.loads(data))
    return out


def data_frame(kind: str, topic: str, offset: int, n: int, *, encoding: str = "json",
               epoch: str = "e1") -> str | bytes:
    """A data message as it arrives on the socket (JSON as text, Arrow as binary)."""
    schema = SCHEMA if kind == "snapshot" else None
    header = data_header(kind, topic, epoch, offset, offset + n, n, 0.0, schema)
    frame = pd.DataFrame({"i": range(offset, offset + n),
                          "price": [float(i) for i in range(offset, offset + n)]})
    data = encode_data(header, frame, SCHEMA, encoding)
    return data.decode() if encoding == "json" else data


def opened(*topics: str, encoding: str = "json") -> tuple[ClientProtocol, dict]:
    proto = ClientProtocol(encoding=encoding)
    states = {t: SubscriptionState(t) for t in topics}
    for st in states.values():
        proto.add(st)
    proto.connection_made()
    proto.receive_data(orjson.dumps({"type": "welcome", "v": 1}).decode())
    proto.data_to_send()
    return proto, states


def test_connecting_sends_hello_then_a_subscribe_per_topic():
    proto = ClientProtocol(encoding="arrow", token="s3cret")
    proto.add(SubscriptionState("a"), token="topic-token")
    proto.add(SubscriptionState("b"))
    assert proto.data_to_send() == []  # nothing before a socket
    proto.connection_made()
    hello, sub_a, sub_b = sent(proto)
    assert hello == {"type": "hello", "v": PROTOCOL_VERSION, "encoding": "arrow",
                     "client": "livestream-py", "token": "s3cret"}
    assert (sub_a["type"], sub_a["topic"], sub_a["token"]) == ("subscribe", "a", "topic-token")
    assert "epoch" not in sub_a  # no resume point yet: a fresh subscribe
    assert sub_b["topic"] == "b" and "token" not in sub_b
    assert isinstance(proto.data_to_send(), list) and proto.data_to_send() == []


def test_welcome_makes_the_connection_and_its_topics_live():
    proto = ClientProtocol()
    proto.add(SubscriptionState("a"))
    proto.connection_made()
    events = proto.receive_data('{"type": "welcome", "v": 1, "server": "x"}')
    assert isinstance(events[0], Welcomed) and events[0].message["server"] == "x"
    assert StateChanged("a", "live") in events
    assert proto.state == "live" and proto.welcome is not None


def test_data_goes_to_its_topic_and_a_reconnect_resumes_from_it():
    proto, states = opened("a", "b")
    events = proto.receive_data(data_frame("snapshot", "a", 0, 3))
    assert [type(e) for e in events] == [RowsApplied] and events[0].topic == "a"
    proto.receive_data(data_frame("append", "a", 3, 2))
    assert len(states["a"]) == 5 and len(states["b"]) == 0
    assert proto.connection_lost() == []
    proto.set_state("reconnecting")
    proto.connection_made()
    _hello, sub_a, sub_b = sent(proto)
    assert (sub_a["topic"], sub_a["epoch"], sub_a["offset"]) == ("a", "e1", 5)  # §10.5
    assert "offset" not in sub_b


@pytest.mark.parametrize("encoding", ["json", "arrow"])
def test_duplicates_after_a_resume_are_dropped(encoding):
    proto, states = opened("a", encoding=encoding)
    proto.receive_data(data_frame("snapshot", "a", 0, 3, encoding=encoding))
    assert proto.receive_data(data_frame("append", "a", 0, 3, encoding=encoding)) == []
    events = proto.receive_data(data_frame("append", "a", 2, 3, encoding=encoding))
    assert events[0].rows == 2 and states["a"].frame()["i"].tolist() == [0, 1, 2, 3, 4]


def test_data_for_topics_not_subscribed_or_paused_is_dropped():
    proto, _ = opened("a")
    assert proto.receive_data(data_frame("snapshot", "zzz", 0, 3)) == []  # §10.7
    assert proto.pause("a") == [StateChanged("a", "paused")]
    assert sent(proto) == [{"type": "unsubscribe", "topic": "a"}]
    assert proto.receive_data(data_frame("snapshot", "a", 0, 3)) == []
    assert proto.resume("a") == [StateChanged("a", "live")]
    (sub,) = sent(proto)
    assert sub["type"] == "subscribe" and sub["topic"] == "a"
    assert proto.paused("a") is False


def test_paused_topics_stay_paused_across_reconnects():
    proto, _ = opened("a", "b")
    proto.pause("a")
    proto.connection_lost()
    proto.connection_made()
    assert [m["topic"] for m in sent(proto) if m["type"] == "subscribe"] == ["b"]


def test_removing_a_topic_unsubscribes_and_forgets_it():
    proto, _ = opened("a")
    proto.remove("a")
    assert sent(proto) == [{"type": "unsubscribe", "topic": "a"}]
    assert proto.receive_data(data_frame("snapshot", "a", 0, 1)) == []
    proto.connection_made()
    assert [m["type"] for m in sent(proto)] == ["hello"]


def test_adding_a_topic_while_open_subscribes_at_once():
    proto, _ = opened()
    events = proto.add(SubscriptionState("late"))
    assert events == [StateChanged("late", "live")]
    (sub,) = sent(proto)
    assert sub["topic"] == "late"


def test_publish_is_answered_by_ack_or_refused_by_error():
    proto, _ = opened(encoding="json")
    mid = proto.publish("t", FRAME)
    (msg,) = sent(proto)
    assert msg["type"] == "publish" and msg["id"] == mid and msg["columns"]["i"] == [0, 1, 2]
    assert proto.receive_data(orjson.dumps({"type": "ack", "id": mid, "rows": 3}).decode()) == \
        [Replied(mid, {"type": "ack", "id": mid, "rows": 3})]
    bad = proto.publish("t", FRAME)
    (ev,) = proto.receive_data(orjson.dumps({"type": "error", "id": bad, "topic": "t",
                                             "code": "schema_mismatch",
                                             "message": "no"}).decode())
    assert isinstance(ev, Refused) and isinstance(ev.error, RemoteError)
    assert ev.error.code == "schema_mismatch"
    # a reply nobody waits for is ignored
    assert proto.receive_data(orjson.dumps({"type": "ack", "id": 999}).decode()) == []


def test_arrow_publish_is_one_binary_frame():
    proto, _ = opened(encoding="arrow")
    proto.publish("t", FRAME)
    (data,) = proto.data_to_send()
    assert isinstance(data, bytes) and unpack_binary(data)[0]["type"] == "publish"


def test_requests_in_flight_fail_when_the_connection_is_lost():
    proto, _ = opened()
    a, b = proto.publish("t", FRAME), proto.ping(1.0)
    events = proto.connection_lost("connection lost")
    assert [e.id for e in events] == [a, b]
    assert all(isinstance(e, Refused) and isinstance(e.error, ConnectionClosed) for e in events)
    with pytest.raises(ConnectionClosed):
        proto.publish("t", FRAME)
    assert proto.data_to_send() == []


def test_errors_go_to_their_topic_or_to_the_connection():
    proto, states = opened("a")
    events = proto.receive_data('{"type": "error", "topic": "a", "code": "unauthorized", '
                                '"message": "bad token"}')
    assert events == [ServerError("unauthorized", "bad token", "a"),
                      ErrorReported("a", "unauthorized: bad token"),
                      StateChanged("a", "unauthorized")]  # waits for a better token
    assert states["a"].stats.errors == 1
    assert proto.receive_data('{"type": "error", "code": "bad_message", "message": "?"}') == \
        [ServerError("bad_message", "?", None)]


def test_frames_that_do_not_decode_are_reported_not_raised():
    proto, _ = opened()
    for data in ("{not json", b"\x00\x00\x00\x09{}", "[1, 2]"):
        (ev,) = proto.receive_data(data)
        assert isinstance(ev, BadFrame)


def test_gaps_reach_their_topic():
    proto, _ = opened("a")
    (ev,) = proto.receive_data('{"type": "gap", "topic": "a", "epoch": "e1", "offset": 3, '
                               '"new_epoch": "e2", "until": 9, "reason": "epoch"}')
    assert isinstance(ev, GapDetected) and ev.gap["reason"] == "epoch"


def test_unknown_messages_are_ignored():
    proto, _ = opened("a")
    assert proto.receive_data('{"type": "something-new", "topic": "a"}') == []


def test_state_changes_reach_topics_that_are_not_paused():
    proto, _ = opened("a", "b")
    proto.pause("b")
    assert proto.set_state("reconnecting") == [StateChanged("a", "reconnecting")]
    assert proto.set_state("reconnecting") == []


# -- expiring tokens, server-ended subscriptions, deleted topics (§4.10, §4.11, §5.6) --------


def msg(**fields) -> str:
    return orjson.dumps(fields).decode()


def test_welcome_and_refreshed_give_the_token_expiry_and_when_to_renew():
    proto = ClientProtocol(token="t1")
    proto.connection_made()
    proto.receive_data(msg(type="welcome", v=1, exp=1000.0))
    assert proto.token_exp == 1000.0
    assert proto.refresh_delay(now=900.0) == 75.0  # 25 % of the 100 s left, early
    assert proto.refresh_delay(now=0.0) == 970.0  # at most 30 s early
    assert proto.refresh_delay(now=999.9) == 0.0  # due now
    proto.receive_data(msg(type="welcome", v=1, exp=None))
    assert proto.token_exp is None and proto.refresh_delay(now=0.0) is None


def test_refresh_queues_a_request_and_refreshed_resubscribes_ended_topics():
    proto, states = opened("a", "b")
    proto.token = "t1"
    proto.receive_data(msg(type="error", topic="b", code="unauthorized", message="no"))
    assert states["b"].stats.state == "unauthorized"
    mid = proto.refresh("t2")
    assert proto.token == "t2"
    assert sent(proto) == [{"type": "refresh", "token": "t2", "id": mid}]
    events = proto.receive_data(msg(type="refreshed", id=mid, exp=2000.0))
    assert events[:2] == [Replied(mid, {"type": "refreshed", "id": mid, "exp": 2000.0}),
                          TokenRefreshed(2000.0, {"type": "refreshed", "id": mid,
                                                  "exp": 2000.0})]
    assert proto.token_exp == 2000.0
    (again,) = sent(proto)  # only the topic the old token had ended
    assert (again["type"], again["topic"]) == ("subscribe", "b")


def test_a_refused_refresh_keeps_the_current_token():
    proto, _ = opened()
    proto.token = "good"
    mid = proto.refresh("bad")
    sent(proto)
    (ev,) = proto.receive_data(msg(type="error", id=mid, code="unauthorized", message="x"))
    assert isinstance(ev, Refused) and isinstance(ev.error, RemoteError)
    assert proto.token == "good"
    with pytest.raises(ValueError):
        proto.refresh("")


def test_refresh_without_a_socket_only_takes_the_token_for_the_next_connect():
    proto = ClientProtocol(token="t1")
    assert proto.refresh("t2") is None and proto.data_to_send() == []
    proto.connection_made()
    assert sent(proto)[0]["token"] == "t2"


def test_close_4003_needs_a_new_token_before_reconnecting():
    proto, _ = opened("a")
    proto.token = "old"
    proto.connection_lost("closed", code=1006)
    assert not proto.needs_token()  # any other close: reconnect with the same token
    proto.connection_made()
    proto.receive_data(msg(type="welcome", v=1))
    proto.connection_lost("closed", code=4003)
    assert proto.needs_token() and proto.close_code == 4003
    proto.set_token("old")
    assert proto.needs_token()  # the expired token again does not help
    assert proto.refresh("new") is None
    assert not proto.needs_token()


def test_unsubscribed_by_the_server_and_deleted_topics_change_state():
    proto, states = opened("a", "b")
    events = proto.receive_data(msg(type="unsubscribed", topic="a", reason="unauthorized"))
    assert events == [ErrorReported("a", "unsubscribed by the server: unauthorized"),
                      StateChanged("a", "unauthorized")]
    assert states["a"].stats.errors == 1
    assert proto.receive_data(msg(type="unsubscribed", topic="zz", reason="x")) == []
    assert proto.receive_data(msg(type="deleted", topic="b")) == \
        [TopicDeleted("b"), StateChanged("b", "waiting")]
    proto.pause("b")
    assert proto.receive_data(msg(type="deleted", topic="b")) == []
