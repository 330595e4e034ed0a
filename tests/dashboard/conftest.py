"""Fixtures for dashboard tests: a livestream server with the demo feeds, a served
dashboard of it, and a Playwright Chromium (Debian's binary)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def demo_server(make_server: Callable[..., Any]) -> Iterator[Any]:
    """A livestream server on loopback publishing the demo feeds (200 rows/s per feed)."""
    from livestream.demo import run_demo_feeds

    srv = make_server()
    feeds = run_demo_feeds(srv, 200, seed=1)
    try:
        yield srv
    finally:
        feeds.stop()


@pytest.fixture
def demo_dash(demo_server: Any) -> Iterator[Any]:
    """The demo dashboard served in-process on a free port (``.url``), stopped after."""
    from livestream.demo import demo_dashboard

    ds = demo_dashboard(demo_server.url).serve(port=0, session_expiry=0.3)
    try:
        yield ds
    finally:
        ds.stop()


@pytest.fixture
def trading_dash(make_server: Callable[..., Any]) -> Iterator[Any]:
    """The demo's trading panel alone (trades chart, 1-second bars, quote cards, trade
    controls) on a server publishing only the trading feeds: the two-session test
    needs no more, and every extra view and feed shares the one loop these tests run
    the server, the feeds and both sessions on (a starved loop answers clicks late)."""
    from livestream.demo import demo_dashboard, run_demo_feeds

    srv = make_server()
    feeds = run_demo_feeds(srv, 200, seed=1, feeds=("trading",))
    ds = demo_dashboard(srv.url, feeds=("trading",)).serve(port=0, session_expiry=0.3)
    try:
        yield ds
    finally:
        ds.stop()
        feeds.stop()
