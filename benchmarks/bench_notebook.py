"""Rows/s into a live chart in real JupyterLab, measured in the browser.

    python -m benchmarks.bench_notebook [--rate 100000] [--batch 500] [--seconds 10]

One run, one JupyterLab, one kernel, one Chromium page, two phases fed the same way
(a subscription receiving ``batch``-row messages at ``rate`` rows/s on the kernel's
loop; each row's ``x`` is its offset, so the page can count rows exactly):

* **livestream**: ``sub.chart(y="v")`` — coalesced to ≤20 frames/s, one PATCH-DOC
  (3 comm messages) per frame.
* **naive**: a plain jupyter_bokeh ``BokehModel`` whose ``ColumnDataSource.stream``
  is called from ``sub.on_update`` for every incoming message.

Chromium polls ``window.Bokeh.documents`` every 100 ms for the newest offset each
chart holds: rows/s reaching the page = Δoffset/Δt over the phase (after 2 s warm-up).
The kernel counts comm messages per chart; the Jupyter server log is scanned for
"IOPub message rate exceeded" inside each phase. Loopback only; stops by itself.
Prints a table and writes benchmarks/results/notebook.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

SETUP = r'''
import asyncio, json, time
import numpy as np, pandas as pd
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from jupyter_bokeh import BokehModel
from livestream.client.subscription import Subscription

RATE, BATCH, SECONDS, WINDOW = {rate}, {batch}, {seconds}, 20_000
RESULTS = {{}}

def batch(start, n):
    off = np.arange(start, start + n, dtype=np.float64)
    return pd.DataFrame({{"v": np.sin(off / 1000.0)}})

async def feed(sub):
    loop = asyncio.get_running_loop()
    tick = BATCH / RATE
    n = k = 0
    t0 = loop.time()
    while loop.time() - t0 < SECONDS:
        sub.apply("append", batch(n, BATCH), offset=n, next_offset=n + BATCH)
        n += BATCH; k += 1
        await asyncio.sleep(max(0.0, t0 + k * tick - loop.time()))
    return n, loop.time() - t0
'''

PHASE_LS = r'''
sub_a = Subscription("bench-a", window=WINDOW)
chart = sub_a.chart(y="v", window=WINDOW, name="bench-livestream", height=250)
display(chart)
await asyncio.sleep(1.0)  # let the page render the widget before the feed starts
t_start = time.time()
fed, took = await feed(sub_a)
await asyncio.sleep(1.0)  # let the last frames go out
RESULTS["livestream"] = dict(start=t_start, end=time.time(), fed=fed, feed_s=took,
    comm_messages=chart.stats.comm_messages, frames=chart.stats.frames,
    kernel_rows=chart.stats.rows)
chart.close(); sub_a.close()
'''

PHASE_NAIVE = r'''
sub_b = Subscription("bench-b", window=WINDOW)
src = ColumnDataSource(data={"x": np.empty(0), "y": np.empty(0)})
fig = figure(height=250, sizing_mode="stretch_width", name="bench-naive")
fig.line("x", "y", source=src)
naive = BokehModel(fig)
sent = [0]
_send = naive.send
def counting_send(*a, **k):
    sent[0] += 1
    return _send(*a, **k)
naive.send = counting_send
offset = [0]
def on_update(sub, frame, kind):
    n = len(frame)
    src.stream({"x": np.arange(offset[0], offset[0] + n, dtype=np.float64),
                "y": frame["v"].to_numpy()}, rollover=WINDOW)
    offset[0] += n
sub_b.on_update(on_update)
display(naive)
await asyncio.sleep(1.0)
t_start = time.time()
fed, took = await feed(sub_b)
await asyncio.sleep(1.0)
RESULTS["naive"] = dict(start=t_start, end=time.time(), fed=fed, feed_s=took,
    comm_messages=sent[0], frames=None, kernel_rows=offset[0])
naive.close(); sub_b.close()
'''

FINISH = r'''
with open("results.json", "w") as f:
    json.dump(RESULTS, f)
'''

LAST_X_JS = """
(name) => {
  const B = window.Bokeh;
  if (!B || !B.documents) return null;
  for (const doc of B.documents) {
    let mine = false;
    for (const m of doc._all_models.values()) if (m.name === name) { mine = true; break; }
    if (!mine) continue;
    let best = null;
    for (const m of doc._all_models.values()) {
      if (typeof m.get_length === "function" && m.data && m.data.x && m.data.x.length) {
        const v = m.data.x[m.data.x.length - 1];
        if (best === null || v > best) best = v;
      }
    }
    return best;
  }
  return null;
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".cfg"),
               JUPYTER_RUNTIME_DIR=str(root / ".rt"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--allow-root", "--IdentityProvider.token=",
           "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
           f"--LabApp.workspaces_dir={root / '.ws'}", f"--LabApp.user_settings_dir={root / '.us'}"]
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text())
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("JupyterLab did not start")


def log_events(log_text: str, pattern: str) -> list[float]:
    """Timestamps (epoch seconds) of log lines containing ``pattern``."""
    out = []
    for line in log_text.splitlines():
        if pattern in line:
            m = re.match(r"\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
            if m:
                out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp())
    return out


def rate_in(samples: list[tuple[float, float | None]], start: float, end: float) -> float:
    """Rows/s reaching the page: Δoffset/Δt from the first sample after a 2 s warm-up to
    the first sample showing the newest offset the page got by ``end`` + 1 s."""
    pts = [(t, x) for t, x in samples if x is not None and start + 2.0 <= t <= end + 1.0]
    if len(pts) < 2:
        return 0.0
    t0, x0 = pts[0]
    x1 = pts[-1][1]
    t1 = next(t for t, x in pts if x == x1)
    return (x1 - x0) / (t1 - t0) if t1 > t0 else 0.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=100_000, help="rows/s offered")
    ap.add_argument("--batch", type=int, default=500, help="rows per incoming message")
    ap.add_argument("--seconds", type=float, default=10.0, help="feed duration per phase")
    ap.add_argument("--chromium", default=os.environ.get("LIVESTREAM_CHROMIUM", "/usr/bin/chromium"))
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-nb-"))
    nb = new_notebook(cells=[
        new_code_cell(SETUP.format(rate=args.rate, batch=args.batch, seconds=args.seconds)),
        new_code_cell(PHASE_LS), new_code_cell(PHASE_NAIVE), new_code_cell(FINISH)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    nbformat.write(nb, tmp / "bench.ipynb")
    log_path = tmp / "server.log"
    proc, url = start_lab(tmp, log_path)
    samples: dict[str, list[tuple[float, float | None]]] = {"bench-livestream": [],
                                                            "bench-naive": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(f"{url}/lab/tree/bench.ipynb")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if page.locator(".jp-Dialog .jp-mod-accept").count():
                    page.locator(".jp-Dialog .jp-mod-accept").first.click()
                if "Idle" in page.locator(".jp-StatusBar-Widget").all_inner_texts().__str__():
                    break
                time.sleep(0.2)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            deadline = time.monotonic() + 4 * args.seconds + 120
            while time.monotonic() < deadline and not (tmp / "results.json").exists():
                now = time.time()
                for name in samples:
                    samples[name].append((now, page.evaluate(LAST_X_JS, name)))
                time.sleep(0.1)
            page.screenshot(path=str(tmp / "bench.png"))
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if not (tmp / "results.json").exists():
        raise SystemExit(f"the benchmark notebook did not finish; see {tmp}")
    kernel = json.loads((tmp / "results.json").read_text())
    log_text = log_path.read_text(errors="replace")
    exceeded = log_events(log_text, "IOPub message rate exceeded")
    results = {"rate_offered": args.rate, "batch": args.batch, "seconds": args.seconds,
               "phases": {}}
    for phase, name in (("livestream", "bench-livestream"), ("naive", "bench-naive")):
        k = kernel[phase]
        dur = k["end"] - k["start"]
        browser_rows = max((x for _, x in samples[name] if x is not None), default=-1) + 1
        results["phases"][phase] = {
            "fed_rows": k["fed"],
            "fed_rows_per_s": round(k["fed"] / k["feed_s"]),
            "browser_rows_per_s": round(rate_in(samples[name], k["start"], k["start"] + k["feed_s"])),
            "browser_rows_total": int(browser_rows),
            "rows_missing_in_browser": int(k["fed"] - browser_rows),
            "comm_messages_per_s": round(k["comm_messages"] / dur, 1),
            "updates_per_s": round(k["frames"] / dur, 1) if k["frames"] else
            round(k["fed"] / args.batch / dur, 1),
            "iopub_rate_exceeded": sum(1 for t in exceeded if k["start"] - 1 <= t <= k["end"] + 1),
        }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "notebook.json").write_text(json.dumps(results, indent=2))
    shutil.copy(tmp / "bench.png", out / "notebook.png")
    hdr = f"{'':12} {'fed rows/s':>11} {'page rows/s':>12} {'missing':>9} {'updates/s':>10} {'comm msg/s':>11} {'iopub drops':>12}"
    print(hdr)
    for phase, r in results["phases"].items():
        print(f"{phase:12} {r['fed_rows_per_s']:>11,} {r['browser_rows_per_s']:>12,} "
              f"{r['rows_missing_in_browser']:>9,} {r['updates_per_s']:>10} "
              f"{r['comm_messages_per_s']:>11} {r['iopub_rate_exceeded']:>12}")
    shutil.rmtree(tmp, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
