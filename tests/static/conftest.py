"""Fixtures for static-page tests: a livestream server with a live feed, a subscription
to build charts from, and a Playwright Chromium (Debian's binary)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from static_util import Feed


@pytest.fixture
def feed_server(make_server: Callable[..., Any]) -> Iterator[tuple[Any, Feed]]:
    """A server that accepts ``Origin: null`` (file:// pages) with a trades topic fed live."""
    srv = make_server(allowed_origins=["null"])
    feed = Feed(srv)
    feed.publish(300)
    feed.start()
    try:
        yield srv, feed
    finally:
        feed.stop()


@pytest.fixture
def trades_sub(feed_server: tuple[Any, Feed]) -> Iterator[Any]:
    """A Python subscription to the fed topic (charts are built from its schema)."""
    import livestream as ls

    srv, _ = feed_server
    conn = ls.connect(srv.url)
    sub = conn.subscribe("trades", window=100_000)
    sub.wait(rows=1, timeout=30)
    try:
        yield sub
    finally:
        conn.close()


@pytest.fixture
def last_sub(feed_server: tuple[Any, Feed]) -> Iterator[Any]:
    """A keyed topic ``last`` (sym → price) holding AAPL and MSFT, and a subscription to it."""
    import pandas as pd

    import livestream as ls

    srv, _ = feed_server
    srv.topic("last", key="sym")
    srv.publish("last", pd.DataFrame({"sym": ["AAPL", "MSFT"], "price": [1.0, 2.0]}))
    conn = ls.connect(srv.url)
    try:
        yield conn.subscribe("last").wait(rows=2, timeout=30)
    finally:
        conn.close()


@pytest.fixture
def closed_server(make_server: Callable[..., Any]) -> tuple[Any, Any]:
    """A server with the default origin allowlist (no "null"), a few trades, and a
    subscription to them (closed with the connection at teardown)."""
    from static_util import trades_frame

    import livestream as ls

    srv = make_server()
    srv.publish("trades", trades_frame(0, 10))
    conn = ls.connect(srv.url)
    sub = conn.subscribe("trades").wait(rows=1, timeout=30)
    yield srv, sub
    conn.close()
