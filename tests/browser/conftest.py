"""Fixtures for real-browser notebook tests: a JupyterLab server and Chromium.

``jupyterlab`` starts a real JupyterLab 4 server (no token, loopback, a free port)
in a temporary root holding copies of the repo's notebooks (so autosave never
touches the originals), with its log captured to a file. ``lab_page`` opens a
Playwright page in Debian's Chromium. ``chromium_path`` (tests/conftest.py) skips
when Chromium is missing locally and fails under CI.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_util import ARTIFACTS, Lab, start_lab, stop_lab


@pytest.fixture
def jupyterlab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """JupyterLab serving a copy of notebooks/quickstart.ipynb; the demo feed rate is
    taken from the test's ``feed_rate`` marker-free parameter ``LIVESTREAM_DEMO_RATE``."""
    rate = getattr(request, "param", None) or "50000"
    lab = start_lab(tmp_path, {"LIVESTREAM_DEMO_RATE": str(rate)})
    try:
        yield lab
    finally:
        stop_lab(lab)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(lab.log_path, ARTIFACTS / "jupyter-server.log")
