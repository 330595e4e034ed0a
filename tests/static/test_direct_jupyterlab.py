"""Direct mode in real JupyterLab + Chromium: the chart grows while the kernel sleeps.

The livestream server and its feed run in the test process (a server thread and a feed
thread), so a kernel busy in ``time.sleep`` stops neither. The notebook makes a
``sub.chart(..., direct=True)`` (a ``DirectChart``); its browser side subscribes by
itself, so the chart's data sources (read from ``window.Bokeh.documents``) keep growing
while the last cell is still running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from static_util import CDS_POINTS_JS, poll

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"


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
def lab(tmp_path: Path, feed_server: Any, free_port: int) -> Iterator[tuple[str, Path]]:
    """JupyterLab (no token, loopback) serving direct.ipynb, which connects to the test's server."""
    srv, _ = feed_server
    root = tmp_path / "lab"
    root.mkdir()
    (root / "direct.ipynb").write_text(json.dumps(_notebook(srv.url)))
    env = dict(os.environ)
    env.update({"JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
                "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    log_path = tmp_path / "jupyter.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={free_port}", "--allow-root", "--IdentityProvider.token=",
         "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
         f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
         f"--LabApp.user_settings_dir={tmp_path / 'settings'}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{free_port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        poll(up, 120, "JupyterLab to answer", step=0.2)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_direct_chart_grows_while_the_kernel_sleeps(lab, browser) -> None:
    url, log_path = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/lab/tree/direct.ipynb", wait_until="domcontentloaded")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)

        def kernel_ready() -> bool:
            dialog = page.locator(".jp-Dialog")
            if dialog.count() and dialog.first.is_visible():
                page.locator(".jp-Dialog .jp-mod-accept").first.click()  # "Select Kernel"
                return False
            text = page.locator(".jp-NotebookPanel-toolbar").inner_text()
            return "No Kernel" not in text and "Connecting" not in text

        poll(kernel_ready, 120, "the notebook's kernel", step=0.25)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

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
        assert "IOPub message rate exceeded" not in log_path.read_text(errors="replace")
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-direct.png"), full_page=True)
        page.close()
