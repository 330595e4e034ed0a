"""Rows/s into a live chart in real JupyterLab, counted in the browser.

    python -m benchmarks notebook [--rate 100000] [--batch 500] [--seconds 10]
                                  [--variants inprocess,server]

One run, one JupyterLab (tests/browser/lab_util.py), one kernel, one Chromium
page, and for each variant two phases fed the same way (``batch``-row messages at
``rate`` rows/s; each row's ``x`` is its number in the feed, so the page can
count rows exactly):

* **livestream**: ``sub.chart(...)`` — coalesced to ≤20 frames/s, one PATCH-DOC
  (3 comm messages) per frame;
* **naive**: a plain jupyter_bokeh ``BokehModel`` whose ``ColumnDataSource.stream``
  is called from ``sub.on_update`` for every incoming message.

Variants (where the rows come from):

* ``inprocess``: the subscription is fed on the kernel's loop (no server, no
  network: the chart path alone);
* ``server``: end to end — a livestream server in a process of its own
  (``benchmarks/_e2e_server.py``) publishes the rows; the kernel subscribes over
  WebSocket (``livestream.connect``) and charts in the page.

What the page holds is counted in the page: a probe wraps BokehJS's
``stream_to`` and ``setv`` (before any row arrives) and notes every new ``x`` a
chart's data source receives, by stream or by a redraw that replaces the data.
*rows received by the page* = distinct rows that ever reached the chart's data;
*rows missing in page* = fed − received (rows dropped with iopub messages, or
skipped when a chart redraws from its window, both show). Playwright samples
the count every 100 ms, and after the last phase until no count has changed for
3 s (a page that is behind still gets its backlog): *page rows/s* =
Δreceived/Δt from 2 s after a phase starts until the page has everything it
will get. The kernel counts comm
messages per chart; the Jupyter server log is scanned for "IOPub message rate
exceeded" inside each phase. Loopback only; stops by itself. Prints a table and
writes benchmarks/results/notebook.json and the summary docs/results/notebook.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

DESCRIPTION = ("rows/s into a live chart in real JupyterLab + Chromium, counted in the page: "
               "livestream chart vs a stream call per message, in-process and end to end")

VARIANTS = ("inprocess", "server")

SETUP = r'''
import asyncio, json, sys, time
import numpy as np, pandas as pd
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from jupyter_bokeh import BokehModel
import livestream as ls
from livestream.client.subscription import Subscription
from benchmarks._local import feed_rows

RATE, BATCH, SECONDS, WINDOW = {rate}, {batch}, {seconds}, 20_000
RESULTS = {{}}

def batch(start, n):
    x = np.arange(start, start + n, dtype=np.int64)
    return pd.DataFrame({{"x": x, "v": np.sin(x / 1000.0)}})

async def feed(sub):
    """In-process: apply BATCH-row messages to ``sub`` at RATE rows/s on this loop."""
    loop = asyncio.get_running_loop()
    tick = BATCH / RATE
    n = k = 0
    t0 = loop.time()
    start = time.time()
    while loop.time() - t0 < SECONDS:
        feed_rows(sub, batch(n, BATCH), n)
        n += BATCH; k += 1
        await asyncio.sleep(max(0.0, t0 + k * tick - loop.time()))
    return dict(fed=n, start=start, feed_s=loop.time() - t0)

E2E = None
async def e2e_server():
    global E2E
    if E2E is None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks._e2e_server", "--rate", str(RATE),
            "--batch", str(BATCH), "--seconds", str(SECONDS),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        url = json.loads(await proc.stdout.readline())["url"]
        E2E = (proc, url)
    return E2E

async def publish(topic):
    """End to end: the server process publishes RATE rows/s to ``topic`` for SECONDS."""
    proc, _ = await e2e_server()
    proc.stdin.write((json.dumps({{"topic": topic}}) + "\n").encode())
    await proc.stdin.drain()
    return json.loads(await proc.stdout.readline())

async def until(cond, timeout):
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout:
        await asyncio.sleep(0.05)
    return bool(cond())

def naive_chart(sub, name):
    src = ColumnDataSource(data={{"x": np.empty(0), "y": np.empty(0)}})
    fig = figure(height=250, sizing_mode="stretch_width", name=name)
    fig.line("x", "y", source=src)
    model = BokehModel(fig)
    counts = dict(sent=0, rows=0, updates=0)
    send = model.send
    def counting_send(*a, **k):
        counts["sent"] += 1
        return send(*a, **k)
    model.send = counting_send
    def on_update(sub, frame, kind):
        src.stream({{"x": frame["x"].to_numpy(dtype=np.float64),
                    "y": frame["v"].to_numpy()}}, rollover=WINDOW)
        counts["rows"] += len(frame); counts["updates"] += 1
    sub.on_update(on_update)
    return model, counts
'''

PHASE = {
    ("inprocess", "livestream"): r'''
sub = Subscription("bench", window=WINDOW)
chart = sub.chart(x="x", y="v", window=WINDOW, name="bench-inprocess-livestream", height=250,
                  decimate=False)  # every row reaches the page (counted there)
display(chart)
await asyncio.sleep(1.0)  # let the page render the widget before rows arrive
f = await feed(sub)
await asyncio.sleep(1.0)  # let the last frames go out
RESULTS["inprocess-livestream"] = dict(f, end=time.time(), kernel_rows=sub.stats.rows,
    comm_messages=chart.stats.comm_messages, updates=chart.stats.frames)
chart.close(); sub.close()
''',
    ("inprocess", "naive"): r'''
sub = Subscription("bench", window=WINDOW)
model, counts = naive_chart(sub, "bench-inprocess-naive")
display(model)
await asyncio.sleep(1.0)
f = await feed(sub)
await asyncio.sleep(1.0)
RESULTS["inprocess-naive"] = dict(f, end=time.time(), kernel_rows=sub.stats.rows,
    comm_messages=counts["sent"], updates=counts["updates"])
model.close(); sub.close()
''',
    ("server", "livestream"): r'''
_, url = await e2e_server()
conn = ls.connect(url)
sub = conn.subscribe("e2e-livestream", window=WINDOW)
chart = sub.chart(x="x", y="v", window=WINDOW, name="bench-server-livestream", height=250,
                  decimate=False)  # every row reaches the page (counted there)
display(chart)
await asyncio.sleep(1.0)
f = await publish("e2e-livestream")
await until(lambda: sub.stats.rows >= f["fed"], 30)
await asyncio.sleep(1.0)
RESULTS["server-livestream"] = dict(f, end=time.time(), kernel_rows=sub.stats.rows,
    comm_messages=chart.stats.comm_messages, updates=chart.stats.frames)
chart.close(); conn.close()
''',
    ("server", "naive"): r'''
_, url = await e2e_server()
conn = ls.connect(url)
sub = conn.subscribe("e2e-naive", window=WINDOW)
model, counts = naive_chart(sub, "bench-server-naive")
display(model)
await asyncio.sleep(1.0)
f = await publish("e2e-naive")
await until(lambda: sub.stats.rows >= f["fed"], 30)
await asyncio.sleep(1.0)
RESULTS["server-naive"] = dict(f, end=time.time(), kernel_rows=sub.stats.rows,
    comm_messages=counts["sent"], updates=counts["updates"])
model.close(); conn.close()
''',
}

FINISH = r'''
if E2E is not None:
    E2E[0].stdin.close()
    await E2E[0].wait()
with open("results.json", "w") as f:
    json.dump(RESULTS, f)
'''

#: Installs the page-side row counter once a Bokeh document exists (before any row
#: arrives: each phase waits 1 s after displaying its chart). Returns whether it is in.
INSTALL_PROBE_JS = """
() => {
  const B = window.Bokeh;
  if (window.__lsb) return true;
  if (!B || !B.documents || !B.documents.length) return false;
  let any = null;
  for (const doc of B.documents) { for (const m of doc._all_models.values()) { any = m; break; } if (any) break; }
  if (!any) return false;
  const owner = (obj, key) => {
    let p = Object.getPrototypeOf(obj);
    while (p && !Object.prototype.hasOwnProperty.call(p, key)) p = Object.getPrototypeOf(p);
    return p;
  };
  const S = window.__lsb = {acc: {}, seen: new WeakSet()};
  const nameOf = (m) => {
    const doc = m.document;
    if (!doc) return null;
    if (doc.__lsbName) return doc.__lsbName;
    for (const x of doc._all_models.values())
      if (typeof x.name === "string" && x.name.startsWith("bench-")) return (doc.__lsbName = x.name);
    return null;
  };
  const note = (m, xs) => {
    const name = nameOf(m);
    if (!name || !xs) return null;
    const a = S.acc[name] || (S.acc[name] = {received: 0, skipped: 0, max: -1, streams: 0, resets: 0});
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i];
      if (x > a.max) {
        if (a.max >= 0 && x > a.max + 1) a.skipped += x - a.max - 1;
        a.received += 1;
        a.max = x;
      }
    }
    return a;
  };
  const sp = owner(any, "stream_to"), streamTo = sp.stream_to;
  sp.stream_to = function (prop, data, rollover, opts) {
    if (prop && prop.attr === "data" && data && data.x !== undefined && nameOf(this)) {
      if (!S.seen.has(this)) { S.seen.add(this); note(this, this.data && this.data.x); }
      const a = note(this, data.x);
      if (a) a.streams += 1;
    }
    return streamTo.call(this, prop, data, rollover, opts);
  };
  const vp = owner(any, "setv"), setv = vp.setv;
  vp.setv = function (attrs, opts) {
    const r = setv.call(this, attrs, opts);
    if (attrs && !(attrs instanceof Map) && attrs.data !== undefined && this.data
        && this.data.x !== undefined && nameOf(this)) {
      S.seen.add(this);
      const a = note(this, this.data.x);
      if (a) a.resets += 1;
    }
    return r;
  };
  return true;
}
"""

#: What the probe has counted, per chart name.
READ_PROBE_JS = "() => window.__lsb ? JSON.parse(JSON.stringify(window.__lsb.acc)) : null"


def log_events(log_text: str, pattern: str) -> list[float]:
    """Timestamps (epoch seconds) of Jupyter server log lines containing ``pattern``."""
    out = []
    for line in log_text.splitlines():
        if pattern in line:
            m = re.match(r"\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
            if m:
                out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp())
    return out


def rate_in(samples: list[tuple[float, int]], start: float) -> float:
    """Rows/s reaching the page: Δreceived/Δt from the first sample 2 s after ``start`` to
    the first sample showing the count the page finally reached."""
    pts = [(t, n) for t, n in samples if t >= start + 2.0]
    if len(pts) < 2:
        return 0.0
    t0, n0 = pts[0]
    n1 = pts[-1][1]
    t1 = next(t for t, n in pts if n == n1)
    return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def phase_figures(k: dict, samples: list[tuple[float, int]], acc: dict | None, exceeded: list[float],
                  batch: int) -> dict[str, Any]:
    """One phase's figures from the kernel's record, the page samples and the probe."""
    dur = k["end"] - k["start"]
    received = int(acc["received"]) if acc else 0
    return {
        "fed_rows": k["fed"],
        "fed_rows_per_s": round(k["fed"] / k["feed_s"]),
        "kernel_rows": k["kernel_rows"],
        "page_rows_per_s": round(rate_in(samples, k["start"])),
        "page_rows_received": received,
        "page_rows_missing": int(k["fed"] - received),
        "page_rows_skipped_inside": int(acc["skipped"]) if acc else None,
        "page_redraws": int(acc["resets"]) if acc else None,
        "chart_updates_per_s": round(k["updates"] / dur, 1),
        "messages_in_per_s": round(k["fed"] / batch / dur, 1),
        "comm_messages_per_s": round(k["comm_messages"] / dur, 1),
        "iopub_rate_exceeded": sum(1 for t in exceeded if k["start"] - 1 <= t <= k["end"] + 1),
    }


def tables(results: dict[str, Any]) -> dict[str, str]:
    from . import markdown_table

    label = {"livestream": "**livestream `sub.chart()`**",
             "naive": "naive: `source.stream` per message"}
    where = {"inprocess": "in-process feed", "server": "end to end (server → WebSocket)"}
    rows = []
    for key, r in results["phases"].items():
        variant, approach = key.split("-", 1)
        rows.append([where[variant], label[approach], f"{r['fed_rows_per_s']:,}",
                     f"{r['page_rows_per_s']:,}", f"{r['page_rows_missing']:,}",
                     f"{r['chart_updates_per_s']:g}", f"{r['comm_messages_per_s']:g}",
                     r["iopub_rate_exceeded"]])
    return {"phases": markdown_table(
        ["rows from", "approach", "fed rows/s", "page rows/s", "rows missing in page",
         "chart updates/s", "comm msgs/s", '"IOPub message rate exceeded"'], rows, "llrrrrrr")}


def main(argv: list[str] | None = None) -> int:
    from . import add_summary_options, machine_facts, results_dir, write_summary

    ap = argparse.ArgumentParser(prog="python -m benchmarks notebook",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=100_000, help="rows/s offered")
    ap.add_argument("--batch", type=int, default=500, help="rows per incoming message")
    ap.add_argument("--seconds", type=float, default=10.0, help="feed duration per phase")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="where the rows come from: inprocess, server (end to end)")
    ap.add_argument("--chromium", default=os.environ.get("LIVESTREAM_CHROMIUM",
                                                         "/usr/bin/chromium"))
    add_summary_options(ap)
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    from playwright.sync_api import sync_playwright

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "browser")]
    from lab_util import open_notebook, run_all, start_lab, stop_lab

    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    cells = [new_code_cell(SETUP.format(rate=args.rate, batch=args.batch, seconds=args.seconds))]
    phases = [f"{v}-{a}" for v in variants for a in ("livestream", "naive")]
    for key in phases:
        v, a = key.split("-", 1)
        cells.append(new_code_cell(PHASE[(v, a)]))
    cells.append(new_code_cell(FINISH))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-nb-"))
    lab = start_lab(tmp, notebooks=(), files={"bench.ipynb": nbformat.writes(nb)})
    done = lab.root / "results.json"
    samples: dict[str, list[tuple[float, int]]] = {f"bench-{k}": [] for k in phases}
    acc: dict[str, Any] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            open_notebook(page, lab, "bench.ipynb")
            run_all(page)
            deadline = time.monotonic() + len(phases) * (args.seconds + 40) + 120
            installed = False
            settled_at = None  # after the notebook finished: when the counts last changed
            while time.monotonic() < deadline:
                installed = installed or bool(page.evaluate(INSTALL_PROBE_JS))
                now = time.time()
                acc = (page.evaluate(READ_PROBE_JS) or {}) if installed else {}
                changed = False
                for name in samples:
                    n = int(acc.get(name, {}).get("received", 0))
                    changed = changed or not samples[name] or samples[name][-1][1] != n
                    samples[name].append((now, n))
                if done.exists():
                    if changed or settled_at is None:
                        settled_at = time.monotonic()
                    elif time.monotonic() - settled_at > 3.0:
                        break
                time.sleep(0.1)  # the sampling period, not a synchronisation
            page.screenshot(path=str(tmp / "bench.png"))
            browser.close()
    finally:
        stop_lab(lab)
    if not done.exists():
        raise SystemExit(f"the benchmark notebook did not finish; see {tmp}")
    kernel = json.loads(done.read_text())
    exceeded = log_events(lab.log(), "IOPub message rate exceeded")
    results: dict[str, Any] = {"rate_offered": args.rate, "batch": args.batch,
                               "seconds": args.seconds, "iopub_rate_exceeded_in_run":
                               len(exceeded), "phases": {}}
    for key in phases:
        name = f"bench-{key}"
        results["phases"][key] = phase_figures(kernel[key], samples[name], acc.get(name),
                                               exceeded, args.batch)
    out = results_dir()
    (out / "notebook.json").write_text(json.dumps({**results, "kernel": kernel,
                                                   "probe": acc}, indent=2))
    shutil.copy(tmp / "bench.png", out / "notebook.png")
    tabs = tables(results)
    print(tabs["phases"])
    if not args.no_summary:
        path = write_summary(
            "notebook", argv=argv, started=started, machine_before=machine,
            settings={"rate": args.rate, "batch": args.batch, "seconds": args.seconds,
                      "variants": variants, "window": 20_000},
            figures=results, tables=tabs, summary_dir=args.summary_dir,
            packages=("jupyterlab", "ipykernel", "bokeh", "jupyter_bokeh", "playwright"),
            notes=["Chromium: headless, --disable-gpu; page counts by the probe in "
                   "benchmarks/bench_notebook.py (INSTALL_PROBE_JS)"])
        print(f"\nsummary: {path}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
