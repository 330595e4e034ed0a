"""The served dashboard logs no "could not set initial ranges": BokehJS logs it on every
paint of a plot whose auto ranges have no data (so every live chart did, until its first
rows came). Every chart kind, opened in Chromium before its topic has rows; then the rows
arrive, and the ranges follow them. Meanwhile each title shows its status readably."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dash_util import poll
from ranges_util import RANGES_WARNING, TOPIC, charts, check_ranges_follow, rows, specs
from title_util import assert_readable, titles

pytestmark = pytest.mark.browser


@pytest.fixture
def served_empty(make_server: Callable[..., Any]) -> Iterator[tuple[Any, Any]]:
    """A server without the topic yet, and a dashboard of every chart kind over it (served
    before the browser starts: Playwright's sync API runs a loop of its own)."""
    from livestream.dashboard import Dashboard

    srv = make_server()
    ds = Dashboard(specs(srv.url), title="Empty").serve(port=0, session_expiry=0.3)
    try:
        yield srv, ds
    finally:
        ds.stop()


def test_empty_charts_log_no_range_warning_in_the_app(served_empty, browser) -> None:
    srv, ds = served_empty
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    try:
        page.goto(ds.url, wait_until="domcontentloaded")
        poll(lambda: (c := charts(page)) and len(c) == 6
             and all(v["points"] == 0 for v in c.values()) and c, 60, "six empty charts")
        # some frames of the session drawn while the topic has no rows: each title says
        # "waiting" (a status that is not bad: the title's own colour), readable
        waiting = poll(lambda: (ts := titles(page)) and len(ts) == 6
                       and all("waiting" in t["text"] for t in ts) and ts, 60,
                       "'waiting' in every title")
        for t in waiting:
            assert_readable(page, t, None)
        check_ranges_follow(page, lambda i, n: srv.publish(TOPIC, rows(i, n)), poll)
        warned = [m for m in console if RANGES_WARNING in m]
        assert not warned, f"{len(warned)} x {warned[0]!r}"
    finally:
        page.close()
