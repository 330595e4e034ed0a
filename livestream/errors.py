"""Exceptions raised by livestream.

Every error a user can provoke is a subclass of :class:`LivestreamError`, so
``except livestream.LivestreamError`` catches all of them. Errors that travel over
the wire carry a machine-readable ``code`` (see ``docs/protocol.md``).
"""

from __future__ import annotations


class LivestreamError(Exception):
    """Base class of every livestream exception."""

    code = "error"


class SchemaError(LivestreamError, ValueError):
    """A batch does not match its topic's schema. ``column`` names the culprit."""

    code = "schema_mismatch"

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class TopicError(LivestreamError, ValueError):
    """A topic name is invalid, or a topic is unknown or misused."""

    code = "bad_topic"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class LimitError(LivestreamError):
    """A documented limit was hit (rows per publish, subscriptions, message size)."""

    code = "limit_exceeded"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ProtocolError(LivestreamError):
    """A message that does not follow the livestream protocol.

    ``code`` is one of the error codes of ``docs/protocol.md``.
    """

    def __init__(self, code: str, message: str, *, id: object = None, topic: str | None = None):
        super().__init__(message)
        self.code = code
        self.id = id
        self.topic = topic


class BackplaneUnavailable(LivestreamError):
    """The shared backplane (Redis) cannot take the publish now: it is unreachable, did
    not answer within the publish timeout (``publish_timeout``, default 5 s), or too
    many publishes are already waiting for it (``max_pending_publishes``, default 1000).
    When Redis was unreachable or too many publishes were waiting, nothing of the batch was
    applied. After a timeout the batch may still reach the log (Redis may have taken it
    without answering in time): like any timed-out request, its outcome is unknown; every
    subscriber still sees the log once and in order."""

    code = "backplane_unavailable"


class AuthError(LivestreamError):
    """A token was missing or wrong."""

    code = "unauthorized"


class ConnectionClosed(LivestreamError):
    """The connection was closed and will not reconnect."""

    code = "closed"


class RemoteError(LivestreamError):
    """The server answered a request with an error frame."""

    def __init__(self, code: str, message: str, topic: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.topic = topic
