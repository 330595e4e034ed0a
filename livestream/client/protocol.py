"""The livestream client protocol, without I/O: frames in, events and frames out.

:class:`ClientProtocol` is one connection to a livestream server as a state
machine, in the manner of python-websockets' ``protocol.py`` and h11. It opens no
socket and runs no loop. Whatever moves the bytes (livestream's Tornado adapter,
:class:`~livestream.client.connection.Connection`; another WebSocket library
later) drives it like this::

    proto = ClientProtocol(encoding="arrow", token=None)
    proto.add(state)                         # a SubscriptionState per topic
    # the socket opened:
    proto.connection_made()                  # queues hello + a subscribe per topic
    send(proto.data_to_send())               # str → text frame, bytes → binary frame
    # a message arrived:
    for event in proto.receive_data(message):
        ...                                  # RowsApplied, Welcomed, Replied, ...
    send(proto.data_to_send())
    # the socket closed:
    events = proto.connection_lost("connection lost", code)   # fails the requests in flight
    if proto.needs_token():                  # closed with 4003: the token expired
        ...                                  # get a new one (proto.refresh(t)), then reconnect

It keeps what a connection must remember across sockets (``docs/protocol.md`` §10):
the topics and their tokens, which are paused, and each topic's
:class:`~livestream.client.state.SubscriptionState`, whose resume point goes into
the ``subscribe`` it sends after every reconnect. Messages for a topic are handed
to that topic's state (which applies the dedupe rules) and its events are
returned; messages for topics not subscribed (in flight after ``unsubscribe``, or
paused) are dropped (§10.7).

Tokens that expire (signed tokens, ``docs/protocol.md`` §4.10, §5.6) are decided
here too: :attr:`ClientProtocol.token_exp` comes from ``welcome``/``refreshed``,
:meth:`ClientProtocol.refresh` queues a ``refresh`` (or, with no live socket, only
takes the token for the next connect), :meth:`ClientProtocol.refresh_delay` says when
to ask for a new token before the current one expires, and after a close with 4003
:meth:`ClientProtocol.needs_token` is true until a new token is given: reconnecting
with the expired one would only be refused again. A topic the server ends (an
``error unauthorized`` answering its ``subscribe``, an unsolicited ``unsubscribed``)
goes to state ``unauthorized`` and is subscribed again after the next ``refreshed``;
a ``deleted`` topic goes to ``waiting`` (its re-creation arrives as a gap and a
snapshot).

Events of the connection itself: :class:`Welcomed`, :class:`Replied` (``ack``,
``pong``, ``refreshed``), :class:`Refused` (an ``error`` answering a request, or a
request lost with the connection), :class:`TokenRefreshed` (the server took a new
token), :class:`TopicDeleted`, :class:`ServerError` (an ``error`` frame that answers
no request), :class:`BadFrame` (a frame that does not decode). Events of a topic
come from :mod:`livestream.client.state`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..core.schema import Schema
from ..errors import ConnectionClosed, LimitError, LivestreamError, RemoteError
from ..protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    dumps,
    encode_columns_json,
    frame_to_arrow,
    loads,
    pack_binary,
    unpack_binary,
)
from .state import (
    DATA_TYPES,
    ErrorReported,
    GapDetected,
    RowsApplied,
    StateChanged,
    SubscriptionState,
)

__all__ = [
    "BadFrame",
    "ClientProtocol",
    "ConnectionEvent",
    "Refused",
    "Replied",
    "ServerError",
    "TokenRefreshed",
    "TopicDeleted",
    "Welcomed",
]

CLIENT_NAME = "livestream-py"


@dataclass(frozen=True)
class Welcomed:
    """The server accepted ``hello``: the connection is live."""

    message: dict


@dataclass(frozen=True)
class Replied:
    """The server answered request ``id`` (``ack`` of a publish, ``pong`` of a ping)."""

    id: int
    message: dict


@dataclass(frozen=True)
class Refused:
    """Request ``id`` failed: ``error`` is a :class:`~livestream.errors.RemoteError` (the
    server's error frame) or :class:`~livestream.errors.ConnectionClosed` (the socket
    closed first)."""

    id: int
    error: LivestreamError


@dataclass(frozen=True)
class ServerError:
    """An ``error`` frame that answers no request (``topic`` names the subscription it
    concerns, if any; that subscription also gets an ``ErrorReported``)."""

    code: str
    message: str
    topic: str | None = None


@dataclass(frozen=True)
class TokenRefreshed:
    """The server accepted a new token (``refreshed``); ``exp`` is its expiry (seconds
    since the epoch, None for a token that does not expire)."""

    exp: float | None
    message: dict


@dataclass(frozen=True)
class TopicDeleted:
    """The server deleted ``topic``; its subscription waits for it to be created again
    (state ``waiting``)."""

    topic: str


@dataclass(frozen=True)
class BadFrame:
    """A frame that could not be decoded (it is dropped)."""

    error: LivestreamError


ConnectionEvent = Welcomed | Replied | Refused | TokenRefreshed | TopicDeleted | ServerError \
    | BadFrame
Event = ConnectionEvent | RowsApplied | GapDetected | StateChanged | ErrorReported


class ClientProtocol:
    """One livestream client connection as a state machine (see the module doc).

    ``encoding`` (``"arrow"`` or ``"json"``) and ``token`` go into ``hello``.
    ``state`` is the connection's state as the user sees it: ``connecting``, ``live``
    (after ``welcome``), and whatever the driver sets with :meth:`set_state`
    (``reconnecting``, ``unauthorized``, ``closed``); topics that are not paused
    follow it.
    """

    def __init__(self, *, encoding: str = "arrow", token: str | None = None,
                 client: str = CLIENT_NAME) -> None:
        if encoding not in ("json", "arrow"):
            raise ValueError("encoding must be 'json' or 'arrow'")
        self.encoding = encoding
        self.token = token
        self.client = client
        self.state = "connecting"
        #: a socket is up (between :meth:`connection_made` and :meth:`connection_lost`)
        self.open = False
        #: the last ``welcome`` message
        self.welcome: dict | None = None
        self.topics: dict[str, SubscriptionState] = {}
        self._tokens: dict[str, str | None] = {}
        self._paused: set[str] = set()
        self._pending: set[int] = set()
        self._ids: Iterator[int] = itertools.count(1)
        self._out: list[str | bytes] = []
        #: when :attr:`token` expires (seconds since the epoch; from ``welcome``/``refreshed``)
        self.token_exp: float | None = None
        #: the close code of the last socket (None: not closed by the server with a code)
        self.close_code: int | None = None
        self._expired_token: str | None = None  # the token a 4003 close said expired
        self._expired = False
        self._refreshing: dict[int, tuple[str, str | None]] = {}  # id → (new, previous)

    def __repr__(self) -> str:
        return f"<ClientProtocol {self.state} topics={len(self.topics)} open={self.open}>"

    # -- the socket -------------------------------------------------------------------------

    def connection_made(self) -> None:
        """A socket opened: queue ``hello`` and a ``subscribe`` (with its resume point)
        for every topic that is not paused (§10.5)."""
        self.open = True
        self.welcome = None
        self.close_code = None
        hello: dict[str, Any] = {"type": "hello", "v": PROTOCOL_VERSION,
                                 "encoding": self.encoding, "client": self.client}
        if self.token:
            hello["token"] = self.token
        self._send(hello)
        for name, st in self.topics.items():
            if name not in self._paused and not st.closed:
                self._subscribe(st)

    def connection_lost(self, reason: str = "connection lost",
                        code: int | None = None) -> list[Event]:
        """The socket closed (``code``: the server's close code, if any): every request
        in flight fails with ``ConnectionClosed`` (:class:`Refused` events). Queued
        frames are dropped. A refresh in flight keeps its token for the next connect.
        Close code 4003 (the token expired) makes :meth:`needs_token` true until a
        new token is given."""
        self.open = False
        self.close_code = code
        if code == CloseCode.UNAUTHORIZED:
            self._expired, self._expired_token = True, self.token
        self._out.clear()
        self._refreshing.clear()
        lost = sorted(self._pending)
        self._pending.clear()
        return [Refused(i, ConnectionClosed(f"{reason} before the reply")) for i in lost]

    def data_to_send(self) -> list[str | bytes]:
        """The frames to write now, in order (``str``: text frame; ``bytes``: binary)."""
        out, self._out = self._out, []
        return out

    def set_state(self, state: str) -> list[Event]:
        """Set the connection's state; every topic that is not paused follows it."""
        if state == self.state:
            return []
        self.state = state
        events: list[Event] = []
        for name, st in self.topics.items():
            if name not in self._paused:
                events += st.set_state(state)
        return events

    # -- tokens ---------------------------------------------------------------------------

    def needs_token(self) -> bool:
        """True after the server closed with 4003 (token expired) and no other token
        was given since: a reconnect with the same token would be refused."""
        return self._expired and self.token == self._expired_token

    def set_token(self, token: str | None) -> None:
        """Use ``token`` from the next connect on (nothing is sent)."""
        self.token = token

    def refresh(self, token: str) -> int | None:
        """Renew the connection's token (§4.10).

        With a welcomed socket, queues a ``refresh`` and returns its request id: the
        answer is :class:`Replied` + :class:`TokenRefreshed`, or :class:`Refused`
        (the token is then given back: the server keeps the current one). Without
        one, only takes the token for the next connect and returns None. Either way
        later connects use it (and a 4003 wait ends).
        """
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        previous, self.token = self.token, token
        if not self.open or self.welcome is None:
            return None
        mid = self._request()
        self._refreshing[mid] = (token, previous)
        self._send({"type": "refresh", "token": token, "id": mid})
        return mid

    def refresh_delay(self, now: float) -> float | None:
        """Seconds from ``now`` (epoch seconds) until a new token should be asked for:
        a little before :attr:`token_exp` (25 % of the time left, between 0.5 and
        30 s). None when the token does not expire."""
        if self.token_exp is None:
            return None
        left = self.token_exp - now
        margin = min(30.0, max(0.5, 0.25 * left))
        return max(0.0, left - margin)

    # -- subscriptions ----------------------------------------------------------------------

    def add(self, state: SubscriptionState, token: str | None = None) -> list[Event]:
        """Subscribe to ``state.name`` (now if open, else on the next connect).

        Replaces a topic of the same name. Returns the topic's state change to the
        connection's state.
        """
        name = state.name
        self.topics[name] = state
        self._tokens[name] = token
        self._paused.discard(name)
        if self.open:
            self._subscribe(state)
        return state.set_state(self.state)

    def remove(self, name: str) -> None:
        """Unsubscribe from ``name`` and forget it (its data in flight is dropped)."""
        if self.topics.pop(name, None) is None:
            return
        self._tokens.pop(name, None)
        self._paused.discard(name)
        if self.open:
            self._send({"type": "unsubscribe", "topic": name})

    def pause(self, name: str) -> list[Event]:
        """Unsubscribe from ``name`` but keep it (and its resume point) for :meth:`resume`."""
        st = self.topics.get(name)
        if st is None or name in self._paused:
            return []
        self._paused.add(name)
        if self.open:
            self._send({"type": "unsubscribe", "topic": name})
        return st.set_state("paused")

    def resume(self, name: str) -> list[Event]:
        """Subscribe to a paused topic again, from its resume point (nothing is lost
        while the rows are retained)."""
        st = self.topics.get(name)
        if st is None or name not in self._paused:
            return []
        self._paused.discard(name)
        if self.open:
            self._subscribe(st)
        return st.set_state(self.state)

    def paused(self, name: str) -> bool:
        """Whether topic ``name`` is paused."""
        return name in self._paused

    def _subscribe(self, st: SubscriptionState) -> None:
        msg: dict[str, Any] = {"type": "subscribe", "topic": st.name, "id": next(self._ids)}
        resume = st.resume_point()
        if resume is not None:
            msg["epoch"], msg["offset"] = resume
        token = self._tokens.get(st.name)
        if token:
            msg["token"] = token
        self._send(msg)

    # -- requests -------------------------------------------------------------------------

    def publish(self, topic: str, df: pd.DataFrame) -> int:
        """Queue a ``publish`` of ``df`` to ``topic`` as one message; returns the request
        id (its answer is a :class:`Replied` or :class:`Refused` event). Raises
        ``ConnectionClosed`` when no socket is open. See :meth:`publish_parts` for
        frames above the server's limits."""
        ((mid, frame, _),) = self.publish_parts(topic, df, split=False)
        self.queue_request(mid, frame)
        return mid

    def queue_request(self, mid: int, frame: str | bytes) -> None:
        """Queue one message made by :meth:`publish_parts` (its answer is a
        :class:`Replied` or :class:`Refused` event for ``mid``). Raises
        ``ConnectionClosed`` when no socket is open."""
        if not self.open:
            raise ConnectionClosed("not connected; publish again when live")
        self._pending.add(mid)
        self._out.append(frame)

    def publish_parts(self, topic: str, df: pd.DataFrame, *, split: bool = True,
                      ) -> list[tuple[int, str | bytes, int]]:
        """Encode a ``publish`` of ``df`` to ``topic`` as as many messages as the
        server's limits (``welcome.limits``: ``max_message_size`` bytes,
        ``max_rows_per_publish`` rows, ``max_message_size`` cells) need, in row order:
        ``(request id, message, rows)`` each, for :meth:`queue_request` (nothing is
        queued here).

        Raises :class:`~livestream.errors.LimitError` when one row alone encodes above
        ``max_message_size``, and ``ConnectionClosed`` when no socket is open. Before
        ``welcome`` the limits are unknown: one message.
        """
        if not self.open:
            raise ConnectionClosed("not connected; publish again when live")
        limits = (self.welcome or {}).get("limits") or {} if split else {}
        max_bytes = limits.get("max_message_size")
        max_rows = limits.get("max_rows_per_publish")
        step = len(df)
        if isinstance(max_rows, int) and max_rows > 0:
            step = min(step, max_rows)
        if isinstance(max_bytes, int) and max_bytes > 0 and len(df.columns):
            step = min(step, max(1, max_bytes // len(df.columns)))  # the cells limit
        frames: list[tuple[int, str | bytes, int]] = []
        starts = range(0, len(df), max(step, 1)) if len(df) else [0]
        for start in starts:
            self._encode_within(topic, df.iloc[start:start + step] if len(df) else df,
                                max_bytes, frames)
        return frames

    def _encode_within(self, topic: str, df: pd.DataFrame, max_bytes: Any,
                       out: list) -> None:
        """Encode ``df`` as publish message(s) of at most ``max_bytes`` each, appending
        ``(id, message)`` to ``out``; a message too big is split in as many parts as its
        size needs (plus a margin) and each part checked again."""
        mid = next(self._ids)
        frame = self._encode_publish(topic, df, mid)
        if not isinstance(max_bytes, int) or max_bytes <= 0 or len(frame) <= max_bytes:
            out.append((mid, frame, len(df)))
            return
        if len(df) <= 1:
            raise LimitError(
                f"publish to {topic!r}: one row encodes to {len(frame)} bytes, above the "
                f"server's max_message_size of {max_bytes} bytes; nothing was sent",
                "message_too_big",
            )
        parts = min(len(df), -(-len(frame) * 11 // (max_bytes * 10)))  # ceil, 10% margin
        bounds = [len(df) * i // parts for i in range(parts + 1)]
        for a, b in itertools.pairwise(bounds):
            if b > a:
                self._encode_within(topic, df.iloc[a:b], max_bytes, out)

    def _encode_publish(self, topic: str, df: pd.DataFrame, mid: int) -> str | bytes:
        """One publish message of ``df`` with request id ``mid``."""
        header: dict[str, Any] = {"type": "publish", "topic": topic, "id": mid}
        if self.token:
            header["token"] = self.token
        if self.encoding == "arrow":
            return pack_binary(header, frame_to_arrow(df))
        schema = Schema.from_frame(df)
        cols, cats = encode_columns_json(schema.conform(df), schema)
        header["schema"] = schema.to_json()
        header["columns"] = cols
        if cats:
            header["categories"] = cats
        return dumps(header).decode()

    def ping(self, t: float | None = None) -> int:
        """Queue an application-level ``ping`` (``t``: the sender's time, echoed);
        returns the request id. Raises ``ConnectionClosed`` when no socket is open."""
        if not self.open:
            raise ConnectionClosed("not connected")
        mid = self._request()
        msg: dict[str, Any] = {"type": "ping", "id": mid}
        if t is not None:
            msg["t"] = t
        self._send(msg)
        return mid

    def _request(self) -> int:
        mid = next(self._ids)
        self._pending.add(mid)
        return mid

    def _send(self, msg: dict) -> None:
        self._out.append(dumps(msg).decode())

    # -- incoming -------------------------------------------------------------------------

    def receive_data(self, data: str | bytes) -> list[Event]:
        """Take one WebSocket message (``str``: text frame, ``bytes``: binary); returns
        what happened. A frame that does not decode gives :class:`BadFrame`."""
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                header, payload = unpack_binary(data)
                return self.receive_message(header, payload)
            return self.receive_message(loads(data), None)
        except LivestreamError as exc:
            return [BadFrame(exc)]

    def receive_message(self, msg: Any, payload: Any = None) -> list[Event]:
        """Take one decoded message (the header of a binary frame plus its payload)."""
        if not isinstance(msg, dict):
            return [BadFrame(LivestreamError(f"a message must be an object, got {msg!r:.80}"))]
        mtype = msg.get("type")
        topic = msg.get("topic")
        st = self.topics.get(topic) if isinstance(topic, str) else None
        if mtype in DATA_TYPES or mtype in ("subscribed", "gap"):
            if st is None or st.closed or topic in self._paused:
                return []  # not (or no longer) subscribed: drop (§10.7)
            return st.receive(msg, payload)
        if mtype == "welcome":
            self.welcome = msg
            self.token_exp = _exp(msg)
            self._expired = False
            return [Welcomed(msg), *self.set_state("live")]
        if mtype in ("ack", "pong"):
            mid = msg.get("id")
            if mid in self._pending:
                self._pending.discard(mid)
                return [Replied(mid, msg)]
            return []
        if mtype == "refreshed":
            return self._refreshed(msg)
        if mtype == "deleted":
            if st is None or st.closed or topic in self._paused:
                return []
            # like a topic not created yet; its re-creation comes as a gap + snapshot
            return [TopicDeleted(st.name), *st.set_state("waiting")]
        if mtype == "unsubscribed":
            if st is None or st.closed or topic in self._paused or not msg.get("reason"):
                return []
            # the server ended the subscription (its token no longer allows it)
            return [*st.error(f"unsubscribed by the server: {msg['reason']}"),
                    *st.set_state("unauthorized")]
        if mtype == "error":
            code, text = str(msg.get("code")), str(msg.get("message"))
            mid = msg.get("id")
            if mid is not None and mid in self._pending:
                self._pending.discard(mid)
                refused = self._refreshing.pop(mid, None)
                if refused is not None and self.token == refused[0]:
                    self.token = refused[1]  # the server keeps the current token
                return [Refused(mid, RemoteError(code, text, topic))]
            events: list[Event] = [ServerError(code, text, topic if st is not None else None)]
            if st is not None:
                events += st.receive(msg)
                if code == "unauthorized" and not st.closed and topic not in self._paused:
                    events += st.set_state("unauthorized")
            return events
        return []  # unknown types are ignored (§10.9)

    def _refreshed(self, msg: dict) -> list[Event]:
        self.token_exp = _exp(msg)
        events: list[Event] = []
        mid = msg.get("id")
        if mid in self._pending:
            self._pending.discard(mid)
            self._refreshing.pop(mid, None)
            events.append(Replied(mid, msg))
        events.append(TokenRefreshed(self.token_exp, msg))
        if self.open:  # subscriptions the old token ended: try again with the new one
            for name, st in self.topics.items():
                if st.stats.state == "unauthorized" and name not in self._paused \
                        and not st.closed:
                    self._subscribe(st)
        return events


def _exp(msg: dict) -> float | None:
    exp = msg.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
