"""A saved page logs no "could not set initial ranges": BokehJS logs it on every paint of a
plot whose auto ranges have no data (so every live chart did, until its first rows came).
Every chart kind, opened in Chromium before its topic has rows; then the rows arrive, and
the ranges follow them."""

from __future__ import annotations

from pathlib import Path

import pytest
from ranges_util import RANGES_WARNING, TOPIC, charts, check_ranges_follow, rows, specs
from static_util import poll

from livestream.dashboard import Dashboard

pytestmark = pytest.mark.browser


def test_empty_charts_log_no_range_warning_on_a_saved_page(make_server, browser,
                                                            tmp_path: Path) -> None:
    srv = make_server(allowed_origins=["null"])
    path = Dashboard(specs(srv.url), title="Empty").save(tmp_path / "empty.html")
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    try:
        page.goto(path.as_uri())
        # every chart painted, subscribed and empty: the topic has no rows yet
        poll(lambda: (c := charts(page)) and len(c) == 6
             and all("waiting" in v["text"] and v["points"] == 0 for v in c.values()), 60,
             "six empty charts waiting for their topic")
        check_ranges_follow(page, lambda i, n: srv.publish(TOPIC, rows(i, n)), poll)
        warned = [m for m in console if RANGES_WARNING in m]
        assert not warned, f"{len(warned)} x {warned[0]!r}"
    finally:
        page.close()
