"""Decimation of a notebook chart (jupyter_bokeh) in real JupyterLab and Chromium: a chart of
far more rows than pixel columns keeps a bounded number of points in its ColumnDataSources,
the wheel-zoom tool brings the visible range in detail (Bokeh's RangesUpdate reaches the
kernel through the widget's comm), and the reset tool returns to the overview."""

from __future__ import annotations

import nbformat
import pytest
from decimation_util import ROWS, WIDTH, check_overview_zoom_reset
from lab_util import open_notebook, run_all, start_lab, stop_lab
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.browser

CELL = f"""
import numpy as np, pandas as pd
from livestream.client.subscription import Subscription
sub = Subscription("zoom", window={ROWS})
i = np.arange({ROWS})
df = pd.DataFrame({{"t": i.astype(float), "sym": np.array(["a", "b", "c"], dtype=object)[i % 3],
                   "v": np.sin(i / 500.0) + (i % 7) * 0.01}})
sub.apply("append", df, offset=0, next_offset={ROWS})
sub.chart(x="t", y="v", by="sym", width={WIDTH}, title="zoom")
"""


def test_notebook_chart_decimates_and_zooms_in_jupyterlab(tmp_path, browser):
    nb = new_notebook(cells=[new_code_cell(CELL)], metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    lab = start_lab(tmp_path, notebooks=(), files={"zoom.ipynb": nbformat.writes(nb)})
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        open_notebook(page, lab, "zoom.ipynb")
        run_all(page)
        check_overview_zoom_reset(page, float(ROWS - 1))
    finally:
        page.close()
        stop_lab(lab)
