"""Fixtures for real-browser notebook tests: a JupyterLab server and Chromium.

``jupyterlab`` starts a real JupyterLab 4 server (no token, loopback, a free port)
in a temporary root holding copies of the repo's notebooks (so autosave never
touches the originals), with its log captured to a file. ``lab_page`` opens a
Playwright page in Debian's Chromium. ``chromium_path`` (tests/conftest.py) skips
when Chromium is missing locally and fails under CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    root: Path
    log_path: Path
    proc: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_lab(tmp: Path, env_extra: dict[str, str] | None = None,
              notebooks: tuple[str, ...] = ("quickstart.ipynb",)) -> Lab:
    """Start JupyterLab in ``tmp`` and wait (with a deadline) until it answers."""
    root = tmp / "lab"
    root.mkdir()
    for name in notebooks:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    port = _free_port()
    log_path = tmp / "jupyter-server.log"
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    env.update(env_extra or {})
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--allow-root", "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        f"--LabApp.user_settings_dir={tmp / 'settings'}",
    ]
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("jupyter lab did not start in 120 s")
        proc_wait(proc, 0.2)
    return Lab(url=url, root=root, log_path=log_path, proc=proc)


def proc_wait(proc: subprocess.Popen, timeout: float) -> None:
    """Wait for ``proc`` to exit for up to ``timeout`` seconds (a bounded poll step)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def stop_lab(lab: Lab) -> None:
    """Stop the server (it shuts its kernels down) by its own pid."""
    if lab.proc.poll() is None:
        lab.proc.terminate()
        try:
            lab.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.proc.kill()
            lab.proc.wait(timeout=10)


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


@pytest.fixture
def lab_browser(chromium_path: str, chromium_args: list[str]) -> Iterator[object]:
    """A Playwright Chromium browser (Debian's binary)."""
    from playwright.sync_api import sync_playwright

    args = [a for a in chromium_args if not a.startswith("--headless")]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=args, headless=True)
        try:
            yield browser
        finally:
            browser.close()
