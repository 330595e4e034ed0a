"""Whether a Bokeh server session still has a browser to send to.

A dashboard session's views draw from periodic callbacks. Bokeh keeps a session
``session_expiry`` seconds after its last connection closed, and its callbacks
run all that time; worse, between the moment a tab's WebSocket closes and the
moment Tornado calls its ``on_close`` (one or more loop turns, longer on a busy
loop) every patch a callback makes is written to the closed socket, and Bokeh
logs "Failed sending message as connection was closed" for each. The public
``ServerSession.connection_count`` only drops at ``on_close``; the socket's own
state (``WebSocketHandler.ws_connection.is_closing()``, reached through the
session's private ``_subscribed_connections`` and each connection's ``_socket``)
says it at once. :func:`session_connected` uses the socket state when those
attributes exist and falls back to ``connection_count`` when they do not.
"""

from __future__ import annotations

from typing import Any

__all__ = ["session_connected"]


def session_connected(doc: Any) -> bool | None:
    """Whether the server session of ``doc`` has a connection whose WebSocket is open;
    ``None`` when ``doc`` has no server session (yet)."""
    ctx = getattr(doc, "session_context", None)
    session = getattr(ctx, "session", None) if ctx is not None else None
    if session is None:
        return None
    conns = getattr(session, "_subscribed_connections", None)
    if conns is None:
        return int(getattr(session, "connection_count", 1)) > 0
    for conn in list(conns):
        ws = getattr(getattr(conn, "_socket", None), "ws_connection", False)
        if ws is False:  # no socket attribute to ask: trust the subscription
            return True
        if ws is not None and not ws.is_closing():
            return True
    return False
