"""A closed tab stops its session's periodic work at once: the Bokeh server logs no
"Failed sending message as connection was closed" between the tab closing and the
session being destroyed (``session_expiry`` later)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from dash_util import chart_points
from static_util import poll

from livestream.dashboard import server as dserver
from livestream.dashboard.server import live_stats

pytestmark = pytest.mark.browser


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def served(trades_sub: Any) -> Iterator[Any]:
    """A chart and a table of the fed topic, served on livestream's loop (made before
    the browser: Playwright's sync API runs a loop of its own on the test's thread)."""
    from livestream.dashboard import Dashboard, ViewSpec

    dash = Dashboard([ViewSpec.chart(trades_sub, x="ts", y="price", by="sym"),
                      ViewSpec.table(trades_sub, rows=5)], title="Close")
    # a long expiry: the session outlives its connection for a while, as with Bokeh's
    # own default (15 s), and its views must not keep drawing for nobody
    ds = dash.serve(port=0, session_expiry=5)
    try:
        yield ds
    finally:
        ds.stop()


def test_closing_a_tab_stops_its_session_callbacks(served, browser) -> None:
    records = _Records()
    ws_log = logging.getLogger("bokeh.server.views.ws")
    ws_log.addHandler(records)
    old_level = ws_log.level
    ws_log.setLevel(logging.INFO)
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    try:
        page.goto(served.url, wait_until="domcontentloaded")
        first = poll(lambda: chart_points(page, "trades: price by sym"), 60, "the chart")
        poll(lambda: chart_points(page, "trades: price by sym") > first, 60, "the chart to grow")
        assert live_stats()["connected"] == 1
        page.close()
        # the views stop drawing as soon as the socket closes, while Bokeh keeps the
        # session until its expiry
        poll(lambda: live_stats()["connected"] == 0, 30, "the views to stop drawing")
        assert live_stats()["sessions"] == 1
        # a frame drawn just before the server read the close is still written (and
        # fails) on the next loop turns: that may log once per message in flight; after
        # each view has skipped two ticks of its own, nothing more may be sent
        views = [v for s in list(dserver._sessions.values()) for v in s.views]
        idle = [v.stats.idle_frames for v in views]
        poll(lambda: all(v.stats.idle_frames >= i + 2 for v, i in zip(views, idle, strict=True)),
             30, "every view to skip two ticks")
        in_flight = sum("Failed sending message" in m for m in records.messages)
        poll(lambda: live_stats()["sessions"] == 0, 60, "the session to be destroyed")
        failed = sum("Failed sending message" in m for m in records.messages) - in_flight
        assert failed == 0, f"{failed} sends to a closed connection after the views stopped"
    finally:
        ws_log.removeHandler(records)
        ws_log.setLevel(old_level)
        if not page.is_closed():
            page.close()
