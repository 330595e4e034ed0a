"""livestream: live data in Jupyter.

A Tornado WebSocket server of named topics fed with pandas DataFrames, a client
that turns subscriptions into live pandas windows on the notebook's own event
loop, and live Bokeh views of them::

    import livestream as ls
    srv = ls.serve(port=8765)
    srv.publish("trades", df)
    conn = ls.connect("ws://localhost:8765/ws")
    trades = conn.subscribe("trades", window=50_000)
    trades.df
"""

from __future__ import annotations

import logging as _logging
from collections.abc import Sequence
from typing import Any

from . import notebook as _notebook  # noqa: F401  (registers sub.chart(), .table(), ...)
from . import redact as _redact
from ._version import __version__
from .client.connection import Connection, ConnectionStats
from .client.registry import subscriptions
from .client.subscription import Subscription, SubscriptionStats
from .core import Schema, Topic, Update
from .dashboard import Column, Dashboard, Row, Tabs, ViewSpec
from .errors import (
    AuthError,
    BackplaneUnavailable,
    ConnectionClosed,
    LimitError,
    LivestreamError,
    ProtocolError,
    RemoteError,
    SchemaError,
    TopicError,
)
from .server.app import Server, serve
from .server.config import ServerConfig

# Library convention: no output unless the application configures logging (otherwise
# Python's last-resort handler would print warnings into whichever notebook cell runs).
_logging.getLogger("livestream").addHandler(_logging.NullHandler())
# Token values and Authorization headers never reach a livestream or Tornado log record.
_redact.install()


def connect(
    url: str | Sequence[str],
    *,
    protocol: str = "livestream",
    name: str | None = None,
    reuse: str = "replace",
    **options: Any,
) -> Any:
    """Open a non-blocking client connection; returns at once.

    ``protocol="livestream"`` (default) connects to a livestream server and
    returns a :class:`Connection`; ``conn.subscribe(topic)`` gives live
    :class:`Subscription` windows. ``protocol="json"`` connects to any outside
    JSON WebSocket feed (see ``docs/feeds.md``).

    ``url`` may be a list of the URLs of several servers sharing their topics (a
    cluster on one Redis backplane): the connection uses one at a time and moves to
    the next in turn after a failed or lost connection, resuming every subscription
    where it was (see ``docs/scaling.md``).

    Re-running a notebook cell that connects replaces the connection that cell
    opened before (``reuse="replace"``, the default); ``reuse="reuse"`` returns the
    open one instead and ``reuse="new"`` always opens another. ``name=`` tells
    several connections of one cell apart. ``livestream.subscriptions()`` lists
    them all.
    """
    from .client import registry

    if protocol == "livestream":
        if not isinstance(url, str):
            url = list(url)  # a generator is read once
        where = url if isinstance(url, str) else ", ".join(map(str, url))
        return registry.claim(where, name, lambda: Connection(url, **options), policy=reuse)
    if protocol == "json":
        from .client.feed import open_feed

        if not isinstance(url, str):
            raise ValueError("protocol='json' connects to one URL")
        return registry.claim(url, name, lambda: open_feed(url, **options), policy=reuse)
    raise ValueError(f"protocol must be 'livestream' or 'json', got {protocol!r}")


__all__ = [
    "AuthError",
    "BackplaneUnavailable",
    "Column",
    "Connection",
    "ConnectionClosed",
    "ConnectionStats",
    "Dashboard",
    "LimitError",
    "LivestreamError",
    "ProtocolError",
    "RemoteError",
    "Row",
    "Schema",
    "SchemaError",
    "Server",
    "ServerConfig",
    "Subscription",
    "SubscriptionStats",
    "Tabs",
    "Topic",
    "TopicError",
    "Update",
    "ViewSpec",
    "__version__",
    "connect",
    "serve",
    "subscriptions",
]
