"""Tables redraw when their rows change but their row count does not (Bokeh 3.9's
DataTable does not: upstream bokeh#13859). Checked by the grid's VISIBLE cell text in
Chromium, read at two times, on a served dashboard and on a saved page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from static_util import poll

from livestream.dashboard import Dashboard, ViewSpec

pytestmark = pytest.mark.browser


def visible_rows(page: Any) -> list[str]:
    """The text of each row the table's grid shows (what a user reads, not the data)."""
    return [t.strip() for t in page.locator(".slick-row").all_inner_texts()]


def _changes(page: Any, rows: int) -> None:
    first = poll(lambda: len(r := visible_rows(page)) == rows and all(r) and r, 60,
                 f"{rows} visible table rows")
    poll(lambda: visible_rows(page)[:rows] != first, 30,
         f"the visible rows to change from {first}")


@pytest.fixture
def served_table(trades_sub: Any) -> Iterator[Any]:
    """A dashboard of one 5-row table, served on livestream's loop (made before the
    browser: Playwright's sync API runs a loop of its own on the test's thread)."""
    table = ViewSpec.table(trades_sub, rows=5, columns=["ts", "sym", "price"])
    ds = Dashboard([table], title="Table").serve(port=0, session_expiry=0.3)
    try:
        yield ds
    finally:
        ds.stop()


def test_served_table_redraws_with_the_same_row_count(served_table, browser) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 600})
    try:
        page.goto(served_table.url, wait_until="domcontentloaded")
        _changes(page, 5)
    finally:
        page.close()


def _saved_table(trades_sub, browser, tmp_path: Path):
    """A saved page with a 5-row table of the trades, opened in a new page."""
    table = ViewSpec.table(trades_sub, rows=5, columns=["ts", "sym", "price"])
    path = Dashboard([table], title="Table").save(tmp_path / "table.html")
    page = browser.new_page(viewport={"width": 1000, "height": 600})
    page.goto(path.as_uri())
    return page


def test_saved_table_redraws_with_the_same_row_count(trades_sub, browser, tmp_path: Path,
                                                      ) -> None:
    page = _saved_table(trades_sub, browser, tmp_path)
    try:
        _changes(page, 5)
    finally:
        page.close()


def test_saved_table_shows_milliseconds_and_a_row_count(trades_sub, browser, tmp_path: Path,
                                                        ) -> None:
    import re

    page = _saved_table(trades_sub, browser, tmp_path)
    try:
        rows = poll(lambda: len(r := visible_rows(page)) == 5 and all(r) and r, 60, "rows")
        # time of day to the millisecond, as the served app shows it, not cut off
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", rows[0].split("\n")[0]), rows[0]
        cell = page.locator(".slick-row .slick-cell").first
        assert cell.evaluate("e => e.scrollWidth <= e.clientWidth"), "the time is clipped"
        # the caption counts rows, as in the app: "trades · 1,234 rows"
        divs_js = """() => {
          const out = [];
          for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values())
            if (m.type === "Div") out.push(m.text);
          return out;
        }"""
        poll(lambda: any(re.search(r"trades</b> · [\d,]+ rows", t)
                         for t in page.evaluate(divs_js)), 60, "the '· N rows' caption")
    finally:
        page.close()


def test_file_page_refused_by_origin_says_how_to_fix_it(closed_server, browser,
                                                        tmp_path: Path) -> None:
    from livestream.dashboard.static import static_page
    from livestream.views.chart_core import ChartCore

    _, sub = closed_server
    path = tmp_path / "refused.html"
    path.write_text(static_page([ChartCore(sub, x="ts", y="price")]))
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        title_js = """() => {
          for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values())
            if (m.type === "Title" && m.text.startsWith("trades")) return m.text;
        }"""
        text = poll(lambda: "--allow-origin null" in (t := page.evaluate(title_js) or "") and t,
                    60, "the chart's title to name the fix")
        assert "origin null" in text
    finally:
        page.close()
