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
    events = proto.connection_lost("connection lost")   # fails the requests in flight

It keeps what a connection must remember across sockets (``docs/protocol.md`` §10):
the topics and their tokens, which are paused, and each topic's
:class:`~livestream.client.state.SubscriptionState`, whose resume point goes into
the ``subscribe`` it sends after every reconnect. Messages for a topic are handed
to that topic's state (which applies the dedupe rules) and its events are
returned; messages for topics not subscribed (in flight after ``unsubscribe``, or
paused) are dropped (§10.7).

Events of the connection itself: :class:`Welcomed`, :class:`Replied` (``ack``,
``pong``), :class:`Refused` (an ``error`` answering a request, or a request lost
with the connection), :class:`ServerError` (an ``error`` frame that answers no
request), :class:`BadFrame` (a frame that does not decode). Events of a topic come
from :mod:`livestream.client.state`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..core.schema import Schema
from ..errors import ConnectionClosed, LivestreamError, RemoteError
from ..protocol import (
    PROTOCOL_VERSION,
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
class BadFrame:
    """A frame that could not be decoded (it is dropped)."""

    error: LivestreamError


ConnectionEvent = Welcomed | Replied | Refused | ServerError | BadFrame
Event = ConnectionEvent | RowsApplied | GapDetected | StateChanged | ErrorReported


class ClientProtocol:
    """One livestream client connection as a state machine (see the module doc).

    ``encoding`` (``"arrow"`` or ``"json"``) and ``token`` go into ``hello``.
    ``state`` is the connection's state as the user sees it: ``connecting``, ``live``
    (after ``welcome``), and whatever the driver sets with :meth:`set_state`
    (``reconnecting``, ``closed``); topics that are not paused follow it.
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

    def __repr__(self) -> str:
        return f"<ClientProtocol {self.state} topics={len(self.topics)} open={self.open}>"

    # -- the socket -------------------------------------------------------------------------

    def connection_made(self) -> None:
        """A socket opened: queue ``hello`` and a ``subscribe`` (with its resume point)
        for every topic that is not paused (§10.5)."""
        self.open = True
        self.welcome = None
        hello: dict[str, Any] = {"type": "hello", "v": PROTOCOL_VERSION,
                                 "encoding": self.encoding, "client": self.client}
        if self.token:
            hello["token"] = self.token
        self._send(hello)
        for name, st in self.topics.items():
            if name not in self._paused and not st.closed:
                self._subscribe(st)

    def connection_lost(self, reason: str = "connection lost") -> list[Event]:
        """The socket closed: every request in flight fails with ``ConnectionClosed``
        (:class:`Refused` events). Queued frames are dropped."""
        self.open = False
        self._out.clear()
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
        """Queue a ``publish`` of ``df`` to ``topic``; returns the request id (its answer
        is a :class:`Replied` or :class:`Refused` event). Raises ``ConnectionClosed``
        when no socket is open."""
        if not self.open:
            raise ConnectionClosed("not connected; publish again when live")
        mid = self._request()
        header: dict[str, Any] = {"type": "publish", "topic": topic, "id": mid}
        if self.token:
            header["token"] = self.token
        if self.encoding == "arrow":
            self._out.append(pack_binary(header, frame_to_arrow(df)))
        else:
            schema = Schema.from_frame(df)
            cols, cats = encode_columns_json(schema.conform(df), schema)
            header["schema"] = schema.to_json()
            header["columns"] = cols
            if cats:
                header["categories"] = cats
            self._send(header)
        return mid

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
            return [Welcomed(msg), *self.set_state("live")]
        if mtype in ("ack", "pong"):
            mid = msg.get("id")
            if mid in self._pending:
                self._pending.discard(mid)
                return [Replied(mid, msg)]
            return []
        if mtype == "error":
            code, text = str(msg.get("code")), str(msg.get("message"))
            mid = msg.get("id")
            if mid is not None and mid in self._pending:
                self._pending.discard(mid)
                return [Refused(mid, RemoteError(code, text, topic))]
            events: list[Event] = [ServerError(code, text, topic if st is not None else None)]
            if st is not None:
                events += st.receive(msg)
            return events
        return []  # unknown types are ignored (§10.9)
