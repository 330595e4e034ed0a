"""The quickstart notebook in real JupyterLab 4 in real Chromium, at a 50k rows/s feed.

Opens notebooks/quickstart.ipynb (a copy), runs all cells, then checks in the page:
the chart's ColumnDataSources (read from ``window.Bokeh.documents``) grow between
two moments, the connection's status widget says "live", and the Jupyter server
log has no "IOPub message rate exceeded" while trades arrive at ~50k rows/s.
A screenshot goes to tests/artifacts/.
"""

from __future__ import annotations

import pytest
from lab_util import ARTIFACTS, open_notebook, run_all
from testutil import poll

pytestmark = pytest.mark.browser

#: Total points held by each Bokeh document's ColumnDataSources (one entry per document).
CDS_POINTS_JS = """
() => {
  const B = window.Bokeh;
  if (!B || !B.documents) return null;
  const out = [];
  for (const doc of B.documents) {
    let total = 0, sources = 0;
    for (const m of doc._all_models.values()) {
      if (typeof m.get_length === "function" && m.data !== undefined && "x" in m.data) {
        total += m.get_length() || 0;
        sources += 1;
      }
    }
    if (sources) out.push(total);
  }
  return out;
}
"""

#: The largest x of any ColumnDataSource on the page (the newest row drawn).
NEWEST_X_JS = """
() => {
  let newest = -Infinity;
  for (const doc of (window.Bokeh && window.Bokeh.documents) || [])
    for (const m of doc._all_models.values()) {
      const x = m.data !== undefined && m.data.x;
      if (x && x.length) newest = Math.max(newest, x[x.length - 1]);
    }
  return newest;
}
"""


def test_quickstart_chart_grows_in_jupyterlab(jupyterlab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    # BokehJS's warning while a plot's auto ranges have no data: the chart is shown before
    # its first rows, and must not log it (docs/decisions.md)
    range_warnings: list[str] = []
    page.on("console", lambda m: range_warnings.append(m.text)
            if "could not set initial ranges" in m.text else None)
    try:
        open_notebook(page, jupyterlab, "quickstart.ipynb")
        run_all(page)

        # the status widget of the connection says live
        poll(lambda: page.locator(".ls-status[data-state='live']").count() > 0, 120,
             "the status widget to show 'live'")

        # the chart's data grows: read its ColumnDataSources at two moments
        first = poll(lambda: max(page.evaluate(CDS_POINTS_JS) or [0]), 120,
                     "the chart's first points")
        second = poll(lambda: (n := max(page.evaluate(CDS_POINTS_JS) or [0])) > first and n,
                      60, f"the chart to grow past {first} points")
        assert second > first
        # and keeps taking a 50k rows/s feed: newer rows keep reaching the page, while the
        # chart's sources hold a decimated view (bounded by pixel columns, not by its
        # 50,000-row window: docs/charts.md)
        for _ in range(3):
            newest = page.evaluate(NEWEST_X_JS)
            poll(lambda t=newest: page.evaluate(NEWEST_X_JS) > t, 60, "newer rows in the chart")
        poll(lambda: 0 < max(page.evaluate(CDS_POINTS_JS) or [0]) < 40_000, 60,
             "the chart to hold fewer points than its window's rows")

        # every cell ran without error, and the notebook shows no rate-limit warning
        poll(lambda: page.locator(".jp-InputArea-prompt", has_text="[*]").count() == 0, 120,
             "all cells to finish")
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                            ).count() == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator(".jp-NotebookPanel .jp-WindowedPanel-outer").first.evaluate(
            "e => { e.scrollTop = 0; }")
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-quickstart.png"), full_page=True)
        log = jupyterlab.log()
        assert "IOPub message rate exceeded" not in log
        assert "IOPub data rate exceeded" not in log
        assert not [e for e in console_errors if "Bokeh" in e or "bokeh" in e], console_errors
        assert not range_warnings, f"{len(range_warnings)} x {range_warnings[0]!r}"
    except BaseException:
        # evidence for a failure in CI: what the page showed, and the server's log
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-quickstart-failure.png"), full_page=True)
        print("JupyterLab log (tail):\n" + jupyterlab.log()[-6000:])
        print("browser console errors:", console_errors[-20:])
        raise
    finally:
        page.close()
