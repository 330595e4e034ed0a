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
