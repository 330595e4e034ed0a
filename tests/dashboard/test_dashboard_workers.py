"""``livestream dashboard APP --num-procs N``: stopping the command stops its workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from testutil import poll, stop_process

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads worker processes from /proc")

APP = 'from bokeh.io import curdoc\ncurdoc().title = "workers"\n'


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return bool(re.search(r"^State:\s+Z", status, re.M))


@pytest.mark.timeout(120)
def test_stopping_a_multi_process_dashboard_stops_its_workers(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    log = tmp_path / "dashboard.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "livestream.cli", "dashboard", str(app),
                                 "--port", "0", "--num-procs", "2"],
                                stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        def started() -> list[int] | None:
            assert proc.poll() is None, log.read_text()
            kids = _children(proc.pid)
            return kids if len(kids) == 2 and "URL" in log.read_text() else None

        workers = poll(started, 60, "two dashboard workers")
        stop_process(proc)  # SIGTERM to the command, as a supervisor or `kill` sends it
        poll(lambda: all(_gone(w) for w in workers), 30, "the workers stopped")
    finally:
        stop_process(proc)
        for w in workers:
            if not _gone(w):
                os.kill(w, 9)
