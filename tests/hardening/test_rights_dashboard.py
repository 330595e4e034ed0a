"""Dashboards pass the viewer's token through: a served dashboard's session subscribes with
the page's ``?livestream_token=``, and a static page with ``#livestream_token=``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from spine_util import trades
from testutil import poll

import livestream as ls
from livestream.dashboard import viewer_token
from livestream.dashboard.server import _lock, _sessions, live_stats
from livestream.loop import run_in_loop
from livestream.server.auth import mint_token

SECRET = b"d" * 48


@pytest.fixture
def jwt_server(make_server, tmp_path: Path):
    path = tmp_path / "jwt.secret"
    path.write_bytes(SECRET)
    srv = make_server(jwt_secret_file=str(path), allowed_origins=["null"])
    srv.publish("prices.AAPL", trades(5))
    srv.publish("orders", trades(3))
    return srv


def mint(**kw) -> str:
    kw.setdefault("ttl", 600)
    return mint_token(SECRET, **kw)


def subscribers(srv: Any, topic: str) -> int:
    return run_in_loop(srv.loop, lambda: len(srv.core.subscribers.get(topic, ())))


def only_session() -> Any:
    with _lock:
        sessions = list(_sessions.values())
    assert len(sessions) == 1, sessions
    return sessions[0]


def served(srv: Any, **kw: Any) -> Any:
    views = [ls.ViewSpec("table", "prices.AAPL", {"rows": 5}, url=srv.url,
                         token=mint(sub="*")),
             ls.ViewSpec("table", "orders", {"rows": 5}, url=srv.url, token=mint(sub="*"))]
    return ls.Dashboard([views], title="desk").serve(port=0, session_expiry=0.2, **kw)


def test_a_served_dashboard_subscribes_with_the_viewer_s_token(jwt_server):
    srv = jwt_server
    dash = served(srv)
    try:
        viewer = mint(sub="prices.*")
        s = pull_session(url=dash.url, arguments={"livestream_token": viewer})
        try:
            sv = only_session()
            assert sv.viewer_token == viewer
            assert [tok for _, tok in sv.connections] == [viewer]
            prices, orders = sv.owned_subs
            poll(lambda: len(prices) == 5, 30, "the viewer's allowed topic")
            poll(lambda: orders.stats.state == "unauthorized", 30, "the refused topic")
            assert subscribers(srv, "orders") == 0
        finally:
            s.close()
        poll(lambda: live_stats()["sessions"] == 0, 30, "the session to be released")
        # no viewer token: the dashboard's own token, as before
        s = pull_session(url=dash.url)
        try:
            sv = only_session()
            assert sv.viewer_token is None
            poll(lambda: all(len(sub) > 0 for sub in sv.owned_subs), 30, "both topics")
        finally:
            s.close()
    finally:
        dash.stop()


def test_viewer_tokens_required_shows_a_note_without_one(jwt_server):
    srv = jwt_server
    dash = served(srv, viewer_tokens="required")
    try:
        s = pull_session(url=dash.url)
        try:
            assert [r.name for r in s.document.roots] == ["livestream-token-required"]
            assert live_stats()["connections"] == 0
        finally:
            s.close()
        poll(lambda: live_stats()["sessions"] == 0, 30, "the session to be released")
        s = pull_session(url=dash.url, arguments={"livestream_token": mint(sub="*")})
        try:
            assert [r.name for r in s.document.roots] == ["livestream-dashboard"]
            poll(lambda: subscribers(srv, "orders") == 1, 30, "the viewer's subscriptions")
        finally:
            s.close()
    finally:
        dash.stop()
    with pytest.raises(ValueError, match="viewer_tokens"):
        served(srv, viewer_tokens="sometimes")


def test_viewer_token_outside_a_session_is_none():
    assert viewer_token(Document()) is None


@pytest.fixture
def saved_page(jwt_server, tmp_path: Path) -> Path:
    """A static page of prices.AAPL saved without a token (made before Playwright starts its
    loop in this thread)."""
    from livestream.dashboard.static import save_dashboard

    conn = ls.connect(jwt_server.url, token=mint(sub="*"))
    try:
        sub = conn.subscribe("prices.AAPL").wait(rows=5, timeout=30)
        chart = ls.ViewSpec.chart(sub, x="ts", y="price")
        # saved without a token: the page holds no credential
        return save_dashboard(ls.Dashboard([chart], title="Desk"), tmp_path / "desk.html",
                              token="")
    finally:
        conn.close()


@pytest.mark.browser
def test_a_static_page_takes_the_viewer_s_token_from_its_address(jwt_server, saved_page,
                                                                 browser):
    from livestream.dashboard.static import PAGE_POINTS_JS

    srv, path = jwt_server, saved_page
    assert "livestream_token" in path.read_text()

    def points(page: Any) -> int:
        return max(page.evaluate(PAGE_POINTS_JS) or [0])

    def title(page: Any) -> str:
        return page.evaluate("""() => {
          for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values())
            if (m.type === "Title" && m.text.startsWith("prices")) return m.text;
          return "";
        }""")

    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        poll(lambda: "unauthorized" in title(page), 60, "the refusal without a token")
        assert points(page) == 0
        page.goto(path.as_uri() + "#livestream_token=" + mint(sub="prices.*"))
        page.reload()
        poll(lambda: points(page) == 5, 60, "the viewer's rows")
        srv.publish("prices.AAPL", trades(2, start=5))
        poll(lambda: points(page) == 7, 60, "live rows")
    finally:
        page.close()
