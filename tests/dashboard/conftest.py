"""Fixtures for dashboard tests: a livestream server with the demo feeds, a served
dashboard of it, and a Playwright Chromium (Debian's binary)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

#: Points per chart of the page's (first) Bokeh document, by figure title (status suffix cut).
CHART_POINTS_JS = """
() => {
  const B = window.Bokeh;
  if (!B || !B.documents || !B.documents.length) return null;
  const out = {};
  for (const m of B.documents[0]._all_models.values()) {
    if (m.renderers === undefined || !m.title || m.title.text === undefined) continue;
    let n = 0;
    for (const r of m.renderers) {
      const ds = r.data_source;
      if (ds && typeof ds.get_length === "function") n += ds.get_length() || 0;
    }
    out[m.title.text.split(" — ")[0]] = [n, m.title.text, m.id];
  }
  return out;
}
"""


def chart_points(page: Any, title: str) -> int:
    """Points of the chart titled ``title`` on ``page`` (0 before the document loads)."""
    got = page.evaluate(CHART_POINTS_JS) or {}
    return int(got.get(title, [0])[0])


def chart_info(page: Any, title: str) -> list | None:
    return (page.evaluate(CHART_POINTS_JS) or {}).get(title)


def poll(fn: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Call ``fn()`` until truthy; fail after ``timeout`` s (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


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
def browser(chromium_path: str, chromium_args: list[str]) -> Iterator[Any]:
    """A headless Playwright Chromium browser."""
    from playwright.sync_api import sync_playwright

    args = [a for a in chromium_args if not a.startswith("--headless")]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=args, headless=True)
        try:
            yield b
        finally:
            with contextlib.suppress(Exception):
                b.close()
