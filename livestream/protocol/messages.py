"""Message types of protocol version 1, and validation of what clients send.

Every message is a JSON object with a ``type``. Clients send ``hello``,
``subscribe``, ``unsubscribe``, ``publish``, ``ping`` and ``refresh``; servers
send ``welcome``, ``subscribed``, ``snapshot``, ``append``, ``upsert``,
``replace``, ``gap``, ``unsubscribed``, ``ack``, ``error``, ``pong``,
``refreshed`` and ``deleted``. The fields are
specified in ``docs/protocol.md``; this module is the executable form of that
document for the client-to-server direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ..errors import ProtocolError
from .codec import ENCODINGS, PROTOCOL_VERSION


class CloseCode(IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down
    PROTOCOL_ERROR = 1002  # a frame breaking RFC 6455 (unmasked, invalid close code, ...)
    INVALID_PAYLOAD = 1007  # a text frame or close reason that is not UTF-8
    MESSAGE_TOO_BIG = 1009  # a frame above max_message_size
    INTERNAL_ERROR = 1011  # the client did not answer a WebSocket ping within ping_timeout
    SLOW_CONSUMER = 4000  # the client's send queue exceeded its limit
    UNSUPPORTED_VERSION = 4001  # hello asked for a protocol version the server lacks
    TOO_MANY_ERRORS = 4002  # too many malformed messages in a row
    UNAUTHORIZED = 4003  # the connection's token expired (no refresh in time)


#: Error codes of ``error`` frames.
ERROR_CODES = {
    "bad_json": "the text frame is not valid JSON",
    "bad_message": "valid JSON of the wrong shape (not an object, a field missing or mistyped)",
    "unknown_type": "the message's type is not one the server knows",
    "bad_frame": "a binary frame that is not a valid publish frame",
    "bad_topic_name": "the topic name breaks the naming rules",
    "unknown_topic": "the topic does not exist (HTTP endpoints, unsubscribe)",
    "unauthorized": "the token is missing, wrong, expired, or does not grant this action on "
                    "this topic",
    "too_many_topics": "creating the topic would exceed max_topics; nothing was created",
    "schema_mismatch": "a published batch does not match the topic's schema",
    "too_many_subscriptions": "the connection has reached max_subscriptions",
    "too_many_rows": "a publish holds more than max_rows_per_publish rows, or more cells "
                     "(rows x columns) than max_message_size",
    "too_many_columns": "a publish or schema has more than max_columns columns",
    "not_subscribed": "unsubscribe of a topic this connection is not subscribed to",
    "derived_topic": "a publish to a derived topic",
    "unsupported_version": "hello asked for a protocol version the server lacks (then close 4001)",
    "derive_failed": "a derived topic's function raised; the topic keeps its last table",
    "unsupported_encoding": "hello asked for an encoding the server lacks",
    "bad_resume": "subscribe gave an epoch without an offset, or the reverse",
    "internal": "the server failed while handling the message",
}

CLIENT_TYPES = ("hello", "subscribe", "unsubscribe", "publish", "ping", "refresh")


@dataclass(frozen=True)
class Hello:
    v: int
    encoding: str | None  # None: keep the connection's (``?encoding=``)
    token: str | None
    client: str | None


@dataclass(frozen=True)
class Subscribe:
    topic: str
    id: Any
    epoch: str | None
    offset: int | None
    token: str | None


@dataclass(frozen=True)
class Unsubscribe:
    topic: str
    id: Any


@dataclass(frozen=True)
class Publish:
    topic: str
    id: Any
    token: str | None
    message: dict  # the whole message: columns (JSON) or header (binary)


@dataclass(frozen=True)
class Ping:
    id: Any
    t: Any


@dataclass(frozen=True)
class Refresh:
    """A new token for the connection, sent before the current one expires."""

    token: str
    id: Any


ClientMessage = Hello | Subscribe | Unsubscribe | Publish | Ping | Refresh


def _opt_str(msg: dict, name: str, mid: Any) -> str | None:
    v = msg.get(name)
    if v is not None and not isinstance(v, str):
        raise ProtocolError("bad_message", f"'{name}' must be a string", id=mid)
    return v


def _topic(msg: dict, mid: Any) -> str:
    t = msg.get("topic")
    if not isinstance(t, str):
        raise ProtocolError("bad_message", "'topic' must be a string", id=mid)
    return t


def parse_client_message(msg: Any) -> ClientMessage:
    """Validate a decoded client message; raises :class:`ProtocolError` with its code."""
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object")
    mtype = msg.get("type")
    mid = msg.get("id")
    if "id" in msg and (not isinstance(mid, int | str) or isinstance(mid, bool)):
        raise ProtocolError("bad_message", "'id' must be a string or an integer")
    if not isinstance(mtype, str):
        raise ProtocolError("bad_message", "a message needs a string 'type'", id=mid)
    if mtype == "hello":
        v = msg.get("v", PROTOCOL_VERSION)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ProtocolError("bad_message", "'v' must be an integer", id=mid)
        enc = msg.get("encoding")
        if enc is not None and enc not in ENCODINGS:
            raise ProtocolError(
                "unsupported_encoding", f"encoding must be one of {list(ENCODINGS)}", id=mid
            )
        return Hello(v, enc, _opt_str(msg, "token", mid), _opt_str(msg, "client", mid))
    if mtype == "subscribe":
        topic = _topic(msg, mid)
        epoch = _opt_str(msg, "epoch", mid)
        offset = msg.get("offset")
        if offset is not None and (
            not isinstance(offset, int) or isinstance(offset, bool) or offset < 0
        ):
            raise ProtocolError("bad_message", "'offset' must be a non-negative integer", id=mid)
        if (epoch is None) != (offset is None):
            raise ProtocolError(
                "bad_resume", "give both 'epoch' and 'offset' to resume, or neither", id=mid,
                topic=topic,
            )
        return Subscribe(topic, mid, epoch, offset, _opt_str(msg, "token", mid))
    if mtype == "unsubscribe":
        return Unsubscribe(_topic(msg, mid), mid)
    if mtype == "publish":
        return Publish(_topic(msg, mid), mid, _opt_str(msg, "token", mid), msg)
    if mtype == "ping":
        t = msg.get("t")
        if t is not None and not isinstance(t, int | float | str):  # bool is an int
            raise ProtocolError(
                "bad_message", "'t' must be a number, a string, a boolean or null", id=mid
            )
        return Ping(mid, t)
    if mtype == "refresh":
        token = msg.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError("bad_message", "refresh needs a non-empty string 'token'", id=mid)
        return Refresh(token, mid)
    raise ProtocolError(
        "unknown_type", f"unknown message type {mtype!r}; expected one of {list(CLIENT_TYPES)}",
        id=mid,
    )


def error_message(code: str, message: str, *, id: Any = None, topic: str | None = None) -> dict:
    """An ``error`` frame."""
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if id is not None:
        out["id"] = id
    if topic is not None:
        out["topic"] = topic
    return out
