"""Tornado internals the client side relies on, checked at import.

:func:`abort` closes a client WebSocket's TCP stream at once: a feed that stalls
may never answer a close frame, and ``WebSocketClientConnection.close`` only sends
one. The stream is the connection's ``protocol.stream`` (not public API), so
:func:`check` makes sure the attributes are still there.
"""

from __future__ import annotations

import contextlib
from typing import Any

import tornado
from tornado.websocket import WebSocketClientConnection, WebSocketProtocol

__all__ = ["abort", "abort_offloop", "check"]


def abort(ws: Any) -> bool:
    """Close ``ws``'s TCP stream now (after any close frame was queued); whether there
    was one to close."""
    proto = getattr(ws, "protocol", None)
    stream = getattr(proto, "stream", None)
    if stream is None:
        return False
    with contextlib.suppress(Exception):
        stream.close()
    return True


def check() -> None:
    """Raise ImportError if the attributes :func:`abort` reads are gone."""
    missing = []
    if "protocol" not in getattr(WebSocketClientConnection, "__annotations__", {}):
        missing.append("WebSocketClientConnection.protocol")
    if "stream" not in WebSocketProtocol.__init__.__code__.co_names:
        missing.append("WebSocketProtocol.stream")
    if missing:
        raise ImportError(
            f"livestream's feed client needs tornado {tornado.version} WebSocket internals that "
            f"are gone: {', '.join(missing)} (see livestream/_compat)")



def abort_offloop(ws: Any) -> None:
    """Close ``ws``'s socket without its event loop (the loop has stopped: interpreter
    exit); nothing is sent."""
    stream = getattr(getattr(ws, "protocol", None), "stream", None)
    sock = getattr(stream, "socket", None)
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.close()


check()
