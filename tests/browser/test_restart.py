"""The quickstart in real JupyterLab: its live table redraws (read as visible text at two
times), and after "Restart Kernel" the old chart widgets stop quietly: a legend click
(a renderer's ``visible`` toggled in the page, as BokehJS's legend does) throws no
``Error: Cannot send`` and logs no error."""

from __future__ import annotations

import pytest
from lab_util import ARTIFACTS, open_notebook, run_all
from test_jupyterlab import CDS_POINTS_JS
from testutil import poll

pytestmark = pytest.mark.browser

#: Toggle every series' renderer of every chart, as a click on its legend item does;
#: returns the errors thrown.
LEGEND_CLICKS_JS = """
() => {
  const errors = [];
  let toggled = 0;
  for (const doc of window.Bokeh.documents) for (const m of doc._all_models.values())
    if (m.type === "GlyphRenderer" && m.name !== "__template__") {
      try { m.visible = !m.visible; toggled++; } catch (err) { errors.push(String(err)); }
    }
  return {toggled, errors};
}
"""


def table_rows(page) -> list[str]:
    return [t.strip() for t in page.locator(".ls-table tbody tr").all_inner_texts()]


@pytest.mark.parametrize("jupyterlab", ["500"], indirect=True)
def test_table_redraws_and_charts_stop_quietly_after_restart(jupyterlab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console: list[tuple[str, str]] = []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
    try:
        open_notebook(page, jupyterlab, "quickstart.ipynb")
        run_all(page)
        # the notebook's table widget: its visible rows change while the feed runs
        first = poll(lambda: len(r := table_rows(page)) == 8 and r, 120, "eight table rows")
        poll(lambda: table_rows(page) != first, 60, "the table's visible rows to change")
        poll(lambda: max(page.evaluate(CDS_POINTS_JS) or [0]), 120, "the chart's points")
        poll(lambda: page.locator(".jp-InputArea-prompt", has_text="[*]").count() == 0, 120,
             "all cells to finish")

        seen = len(console)
        page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel").first.click()
        page.locator(".jp-Dialog .jp-mod-accept").first.click()
        # the old widgets' kernel is gone: ipywidgets marks them disconnected
        poll(lambda: page.locator(".jupyter-widgets-disconnected").count() > 0, 120,
             "the old widgets to show 'disconnected'")

        got = page.evaluate(LEGEND_CLICKS_JS)
        assert got["toggled"] > 0, got
        assert got["errors"] == [], got["errors"]
        bad = [t for kind, t in console[seen:]
               if kind in ("error", "pageerror") or "Cannot send" in t]
        assert bad == [], bad
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-restart-failure.png"), full_page=True)
        print("console (tail):", console[-30:])
        raise
    finally:
        page.close()
