"""Dashboard sessions over a real Bokeh server with bokeh.client (no browser): per-session
views and subscriptions, and nothing left behind after 50 sessions open and close."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from dash_util import poll
from testutil import stop_process

import livestream as ls
from livestream.dashboard.server import SessionViews, live_stats
from livestream.loop import run_in_loop
from livestream.views import ChartCore

ZERO = {"sessions": 0, "views": 0, "callbacks": 0, "subscriptions": 0, "connections": 0,
        "connected": 0}


def subscribers(srv) -> int:
    return run_in_loop(srv.loop, lambda: sum(len(v) for v in srv.core.subscribers.values()))


def alive(cls: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, cls))


def test_each_session_has_its_own_views_and_subscriptions(demo_dash, demo_server):
    base = subscribers(demo_server)
    s1 = pull_session(url=demo_dash.url)
    s2 = pull_session(url=demo_dash.url)
    try:
        stats = live_stats()
        assert stats["sessions"] == 2 and stats["connections"] == 2
        per_session = stats["views"] // 2
        assert per_session == 8 and stats["callbacks"] == stats["views"]
        # one subscription per topic per session, each on the livestream server
        assert stats["subscriptions"] == 2 * 6
        poll(lambda: subscribers(demo_server) == base + 12, 30, "12 server-side subscriptions")
        roots1, roots2 = s1.document.roots, s2.document.roots
        assert roots1[0].id != roots2[0].id  # separate documents
    finally:
        s1.close()
        s2.close()
    poll(lambda: live_stats() == ZERO, 30, "both sessions to be released")
    poll(lambda: subscribers(demo_server) == base, 30, "the server-side subscriptions to end")


@pytest.fixture
def small_dash(demo_server):
    """A two-view dashboard (chart + table of trades), served with a short session expiry."""
    trades = ls.ViewSpec("chart", "trades", {"x": "ts", "y": "price", "by": "symbol"},
                         url=demo_server.url, window=1000)
    table = ls.ViewSpec("table", "quotes", {"rows": 5}, url=demo_server.url)
    ds = ls.Dashboard([[trades, table]], title="small").serve(port=0, session_expiry=0.2)
    try:
        yield ds
    finally:
        ds.stop()


def test_fifty_sessions_leave_nothing_behind(small_dash, demo_server):
    demo_dash = small_dash
    base_subs = subscribers(demo_server)
    # warm up once (imports, caches), then take the baseline
    pull_session(url=demo_dash.url).close()
    poll(lambda: live_stats() == ZERO, 30, "the warm-up session to be released")
    base_docs, base_cores = alive(Document), alive(ChartCore)
    for _ in range(5):
        sessions = [pull_session(url=demo_dash.url) for _ in range(10)]
        assert live_stats()["sessions"] >= 10
        for s in sessions:
            s.close()
        del sessions, s  # the client side's documents go with them
    poll(lambda: live_stats() == ZERO, 60, "all 50 sessions to be released")
    poll(lambda: demo_dash.sessions() == 0, 60, "the Bokeh server to discard them")
    poll(lambda: subscribers(demo_server) == base_subs, 30,
         "every session's server-side subscription to end")
    poll(lambda: demo_server.metrics.connections <= 1, 30,
         "every session's connection to close")
    # memory bounded: no session's document, chart or views survive (a destroyed
    # session's timer handle lets go of its views when the loop next runs it)
    poll(lambda: alive(SessionViews) == 0, 30, "every session's views to be collected",
         step=0.5)
    assert alive(ChartCore) <= base_cores
    assert alive(Document) <= base_docs + 1


def test_servable_outside_a_server_only_marks(demo_server):
    conn = ls.connect(demo_server.url)
    try:
        trades = conn.subscribe("trades")
        dash = ls.Dashboard([ls.ViewSpec.chart(trades, x="ts", y="price")])
        assert dash.servable() is dash and dash._servable
        assert live_stats()["sessions"] == 0
    finally:
        conn.close()


def test_layout_and_specs():
    from livestream.client.subscription import Subscription

    sub = Subscription("trades")
    a = ls.ViewSpec.chart(sub, x="ts", y="price")
    b = ls.ViewSpec.table(sub, rows=5)
    dash = ls.Dashboard([["# Title", a], [b, {"One": a, "Two": [a, b]}]], theme="dark")
    assert [s.view for s in dash.specs] == ["chart", "table", "chart", "chart", "table"]
    j = dash.to_json()
    assert j["theme"] == "dark" and j["layout"]["type"] == "column"
    row0 = j["layout"]["children"][0]
    assert row0["type"] == "row" and row0["children"][0] == {"type": "text", "text": "# Title"}
    tabs = j["layout"]["children"][1]["children"][1]
    assert tabs["type"] == "tabs" and [t for t, _ in tabs["tabs"]] == ["One", "Two"]
    with pytest.raises(ValueError):
        ls.Dashboard([a], theme="neon")
    with pytest.raises(TypeError):
        ls.Dashboard([object()])


def test_cli_serves_a_notebook_marked_servable(demo_server, tmp_path):
    import os
    import re
    import subprocess
    import sys

    import nbformat

    app = (Path(__file__).parent / "apps" / "desk_app.py").read_text()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Desk"), nbformat.v4.new_code_cell(app)]
    path = tmp_path / "desk.ipynb"
    nbformat.write(nb, path)
    log = tmp_path / "server.log"
    env = {**os.environ, "LIVESTREAM_URL": demo_server.url, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "livestream.cli", "dashboard", str(path),
                                 "--port", "0"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    try:
        def url() -> str | None:
            assert proc.poll() is None, log.read_text()
            m = re.search(r"URL\s+(http://\S+)", log.read_text())
            return m.group(1) if m else None

        session = pull_session(url=poll(url, 60, "the dashboard URL"))
        try:
            titles = {getattr(getattr(m, "title", None), "text", None)
                      for m in session.document.roots[0].references()}
            assert "trades: price by symbol" in titles
            assert session.document.title == "Desk app"
        finally:
            session.close()
    finally:
        stop_process(proc)
