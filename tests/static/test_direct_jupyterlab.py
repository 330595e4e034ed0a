"""Direct mode in real JupyterLab + Chromium: the chart grows while the kernel sleeps.

The livestream server and its feed run in the test process (a server thread and a feed
thread), so a kernel busy in ``time.sleep`` stops neither. The notebook makes a
``sub.chart(..., direct=True)`` (a ``DirectChart``); its browser side subscribes by
itself, so the chart's data sources (read from ``window.Bokeh.documents``) keep growing
while the last cell is still running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_util import ARTIFACTS, Lab, open_notebook, run_all, start_lab, stop_lab
from static_util import CDS_POINTS_JS, poll

pytestmark = pytest.mark.browser


def _notebook(url: str) -> dict[str, Any]:
    cells = [
        "import livestream as ls\n"
        f"conn = ls.connect({url!r})\n"
        "sub = conn.subscribe('trades', window=100_000)\n"
        "await sub.wait_async(rows=1, timeout=60)",
        "sub.chart(x='ts', y='price', by='sym', window=100_000, direct=True)",
        "import time\nprint('sleeping', flush=True)\ntime.sleep(300)",
    ]
    return {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": c} for c in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


@pytest.fixture
def lab(tmp_path: Path, feed_server: Any) -> Iterator[Lab]:
    """JupyterLab (no token, loopback) serving direct.ipynb, which connects to the test's server."""
    srv, _ = feed_server
    lab = start_lab(tmp_path, notebooks=(), files={"direct.ipynb": json.dumps(_notebook(srv.url))})
    try:
        yield lab
    finally:
        stop_lab(lab)


def test_direct_chart_grows_while_the_kernel_sleeps(lab, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        open_notebook(page, lab, "direct.ipynb")
        run_all(page)

        def sleeping() -> bool:  # the last cell runs (prompt [*]) and has printed
            last = page.locator(".jp-Notebook .jp-Cell").last
            return ("[*]" in last.locator(".jp-InputArea-prompt").inner_text()
                    and "sleeping" in last.inner_text())

        poll(sleeping, 180, "the kernel to be busy in time.sleep", step=0.25)
        first = poll(lambda: max(page.evaluate(CDS_POINTS_JS) or [0]), 120,
                     "the direct chart's first points", step=0.25)
        second = poll(lambda: (n := max(page.evaluate(CDS_POINTS_JS) or [0])) > first and n,
                      60, f"the chart to grow past {first} points", step=0.25)
        assert second > first
        assert sleeping(), "the kernel was busy all along"
        assert "IOPub message rate exceeded" not in lab.log()
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-direct.png"), full_page=True)
        page.close()
