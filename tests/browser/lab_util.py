"""A real JupyterLab for browser tests: start it, open a notebook, run all cells.

Shared by tests/browser (the quickstart in JupyterLab) and tests/static (direct-mode charts).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testutil import poll, stop_process

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
              notebooks: tuple[str, ...] = ("quickstart.ipynb",),
              files: dict[str, str] | None = None) -> Lab:
    """Start JupyterLab in ``tmp`` and wait (with a deadline) until it answers.

    It serves copies of ``notebooks`` (from the repo's notebooks/) and ``files``
    (name → text), so autosave never touches the originals.
    """
    root = tmp / "lab"
    root.mkdir()
    for name in notebooks:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    for name, text in (files or {}).items():
        (root / name).write_text(text)
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

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        poll(answers, 120, "jupyter lab to answer /api/status", step=0.2)
    except AssertionError:
        proc.kill()
        raise RuntimeError("jupyter lab did not start in 120 s") from None
    return Lab(url=url, root=root, log_path=log_path, proc=proc)


def stop_lab(lab: Lab) -> None:
    """Stop the server (it shuts its kernels down) by its own pid."""
    stop_process(lab.proc)




def open_notebook(page: Any, lab: Lab, name: str) -> None:
    """Open ``name`` in JupyterLab and wait until its kernel is connected."""
    page.goto(f"{lab.url}/lab/tree/{name}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)

    def kernel_ready() -> bool:
        dialog = page.locator(".jp-Dialog")
        if dialog.count() and dialog.first.is_visible():
            # "Select Kernel": accept the proposed Python 3 kernel
            page.locator(".jp-Dialog .jp-mod-accept").first.click()
            return False
        status = page.locator(".jp-NotebookPanel-toolbar .jp-KernelStatus, "
                              "[data-status='idle'], .jp-Notebook-ExecutionIndicator")
        text = page.locator(".jp-NotebookPanel-toolbar").inner_text()
        return status.count() > 0 and "No Kernel" not in text and "Connecting" not in text

    poll(kernel_ready, 120, "the notebook's kernel", step=0.25)


def _started(page: Any) -> bool:
    """Whether any cell has been queued or run (prompt ``[*]`` or ``[n]``)."""
    prompts = page.locator(".jp-Notebook .jp-Cell .jp-InputArea-prompt").all_inner_texts()
    return any(p.strip() not in ("", "[ ]:", "[ ]") for p in prompts)


def run_all(page: Any, attempts: int = 3) -> None:
    """Run > Run All Cells, and make sure it took: on a cold start the command can be
    disabled until the notebook has focus, so the click would do nothing. Retries
    (focusing the first cell) until a cell is queued."""
    for _ in range(attempts):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        with contextlib.suppress(AssertionError):
            poll(lambda: _started(page), 20, "a cell to start", step=0.2)
            return
        page.keyboard.press("Escape")  # close a menu left open
        page.locator(".jp-Notebook .jp-Cell").first.click()
    raise AssertionError("Run All Cells did not start any cell")
