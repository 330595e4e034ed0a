"""A chart's cost in the browser with and without display decimation, in real JupyterLab.

    python -m benchmarks decimation [--rate 100000] [--window 1000000] [--series 6]
                                    [--seconds 30] [--batch 1000] [--fps 20]
                                    [--phases none,on,off]

One JupyterLab (tests/browser/lab_util.py), one kernel, one Chromium page. Each phase shows
one ``sub.chart(x="x", y="v", by="sym")`` of ``series`` series over a subscription whose
window is ``window`` rows (each series keeps ``window / series`` points), and feeds it on the
kernel's loop (in-process, ``batch``-row messages at ``rate`` rows/s) for ``seconds``:

* **on**: ``decimate=True`` (the default: a few points per pixel column, newest rows exact);
* **off**: ``decimate=False`` (every row of the window goes to the browser, as before);
* **none**: the same feed with no chart (the floor: JupyterLab, the feed and the machine's
  other load).

The phases run one after the other in the same page ("off" last, so that a page still busy
with its chart cannot slow the others); each chart is closed at the end of its phase.

Measured in the page (installed before JupyterLab loads): long tasks
(``PerformanceObserver`` ``longtask``: main-thread tasks of 50 ms or more) and
``requestAnimationFrame`` callbacks. *Page blocked* = time inside long tasks / phase time;
*frames/s* = animation frames drawn / phase time. Both are also given for the second half of a
phase (the window full or nearly). Measured in the kernel: CPU time (user + system, all
threads) / wall time of the phase, rows fed per second (the rate achieved), and the points
the chart's ColumnDataSources hold at the end. Prints a table and writes
benchmarks/results/decimation.json and docs/results/decimation.json. Reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

DESCRIPTION = ("page main-thread blocked share, frames/s and kernel CPU of a live chart of a "
               "1M-row window at 100k rows/s in JupyterLab + Chromium: decimation on vs off")

PHASES = ("none", "on", "off")

SETUP = r'''
import asyncio, json, resource, time
import numpy as np, pandas as pd
from livestream.client.subscription import Subscription
from benchmarks._local import feed_rows

RATE, BATCH, SECONDS, WINDOW, SERIES, FPS = {rate}, {batch}, {seconds}, {window}, {series}, {fps}
SYMS = np.array([f"s{{i}}" for i in range(SERIES)], dtype=object)
RESULTS = {{}}

# browser → kernel echoes of the charts' data changes (jupyter_bokeh re-sends what a patch
# changed; the chart drops them), counted by kind
import collections
import livestream.notebook.chart as _chart_mod
ECHO = collections.Counter()
_echoed = _chart_mod._echoed_data
def _counting_echoed(content):
    got = _echoed(content)
    if got:
        ECHO[str(content.get("kind"))] += 1
    return got
_chart_mod._echoed_data = _counting_echoed

def batch(start, n):
    i = np.arange(start, start + n, dtype=np.int64)
    k = i % SERIES
    return pd.DataFrame({{"x": (i // SERIES).astype(np.float64), "sym": SYMS[k],
                         "v": np.sin(i / 20000.0) * (1 + k) + np.cos(i / 7.0) * 0.1}})

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

async def feed(sub):
    """Apply BATCH-row messages to ``sub`` at RATE rows/s (at most) on this loop."""
    loop = asyncio.get_running_loop()
    tick = BATCH / RATE
    n = k = 0
    t0 = loop.time()
    while loop.time() - t0 < SECONDS:
        feed_rows(sub, batch(n, BATCH), n)
        n += BATCH; k += 1
        await asyncio.sleep(max(0.0, t0 + k * tick - loop.time()))
    return n, loop.time() - t0

async def phase(name, decimate):
    sub = Subscription("bench", window=WINDOW)
    chart = None
    if decimate is not None:
        chart = sub.chart(x="x", y="v", by="sym", window=WINDOW // SERIES, decimate=decimate,
                          fps=FPS, height=300, title=f"bench-{{name}}")
        display(chart)
    await asyncio.sleep(2.0)  # let the page render the widget before rows arrive
    c0, start = cpu(), time.time()
    fed, feed_s = await feed(sub)
    end, c1 = time.time(), cpu()
    await asyncio.sleep(1.0)  # the last frames go out
    RESULTS[name] = dict(start=start, end=end, fed=fed, feed_s=feed_s,
                         kernel_cpu=(c1 - c0) / (end - start),
                         points=chart.points() if chart else 0,
                         frames=chart.stats.frames if chart else 0,
                         comm_messages=chart.stats.comm_messages if chart else 0,
                         window_rows=len(sub.df), echoed=dict(ECHO))
    ECHO.clear()
    if chart is not None:
        chart.close()
    sub.close()
    await asyncio.sleep(3.0)  # let the page settle before the next phase
'''

PHASE = r'''
await phase("{name}", {decimate})
'''

FINISH = r'''
with open("results.json", "w") as f:
    json.dump(RESULTS, f)
'''

#: Collects long tasks and animation frames from the page's first moment (epoch ms).
PROBE_INIT_JS = """
(() => {
  if (window.top !== window) return;
  const S = window.__lsPerf = {longtasks: [], frames: [], supported: false};
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries())
        S.longtasks.push([performance.timeOrigin + e.startTime, e.duration]);
    }).observe({type: "longtask", buffered: true});
    S.supported = true;
  } catch (err) { S.error = String(err); }
  const tick = () => { S.frames.push(performance.timeOrigin + performance.now());
                       requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
})();
"""

READ_PROBE_JS = "() => window.__lsPerf ? JSON.parse(JSON.stringify(window.__lsPerf)) : null"


def page_figures(perf: dict[str, Any], start: float, end: float) -> dict[str, float]:
    """Blocked share and frames/s of the page between ``start`` and ``end`` (epoch s)."""
    a, b = start * 1000.0, end * 1000.0
    blocked = 0.0
    for t, d in perf["longtasks"]:
        blocked += max(0.0, min(b, t + d) - max(a, t))
    frames = sum(1 for t in perf["frames"] if a <= t <= b)
    span = max(1e-9, (b - a) / 1000.0)
    return {"blocked": blocked / (b - a), "fps": frames / span}


def phase_figures(k: dict[str, Any], perf: dict[str, Any], series: int) -> dict[str, Any]:
    whole = page_figures(perf, k["start"], k["end"])
    mid = (k["start"] + k["end"]) / 2
    late = page_figures(perf, mid, k["end"])
    return {
        "fed_rows": k["fed"],
        "fed_rows_per_s": round(k["fed"] / k["feed_s"]),
        "window_rows_at_end": k["window_rows"],
        "page_blocked": round(whole["blocked"], 3),
        "page_blocked_second_half": round(late["blocked"], 3),
        "page_frames_per_s": round(whole["fps"], 1),
        "page_frames_per_s_second_half": round(late["fps"], 1),
        "kernel_cpu": round(k["kernel_cpu"], 3),
        "points_in_sources_at_end": k["points"],
        "chart_frames": k["frames"],
        "comm_messages": k["comm_messages"],
        "series": series,
    }


def tables(results: dict[str, Any]) -> dict[str, str]:
    from . import markdown_table

    label = {"on": "**decimation on** (default)", "off": "decimation off (`decimate=False`)",
             "none": "no chart (the floor)"}
    rows = []
    for key, r in results["phases"].items():
        rows.append([label[key], f"{r['fed_rows_per_s']:,}", f"{r['window_rows_at_end']:,}",
                     f"{r['points_in_sources_at_end']:,}",
                     f"{100 * r['page_blocked']:.0f}% / {100 * r['page_blocked_second_half']:.0f}%",
                     f"{r['page_frames_per_s']:.1f} / {r['page_frames_per_s_second_half']:.1f}",
                     f"{100 * r['kernel_cpu']:.0f}%"])
    return {"phases": markdown_table(
        ["chart", "fed rows/s", "window rows at end", "points in the page's sources",
         "page blocked (whole / 2nd half)", "frames/s (whole / 2nd half)",
         "kernel CPU"], rows, "lrrrrrr")}


def main(argv: list[str] | None = None) -> int:
    from . import add_summary_options, machine_facts, results_dir, write_summary

    ap = argparse.ArgumentParser(prog="python -m benchmarks decimation",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=100_000, help="rows/s offered")
    ap.add_argument("--batch", type=int, default=1000, help="rows per incoming message")
    ap.add_argument("--window", type=int, default=1_000_000, help="rows in the window")
    ap.add_argument("--series", type=int, default=6, help="series (by= values)")
    ap.add_argument("--seconds", type=float, default=30.0, help="feed duration per phase")
    ap.add_argument("--fps", type=float, default=20, help="the chart's frames/s at most")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="none (no chart), on, off; run in the order given")
    ap.add_argument("--chromium", default=os.environ.get("LIVESTREAM_CHROMIUM",
                                                         "/usr/bin/chromium"))
    add_summary_options(ap)
    args = ap.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    for p in phases:
        if p not in PHASES:
            ap.error(f"unknown phase {p!r}; choose from {', '.join(PHASES)}")

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    from playwright.sync_api import sync_playwright

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "browser")]
    from lab_util import open_notebook, run_all, start_lab, stop_lab

    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    cells = [new_code_cell(SETUP.format(rate=args.rate, batch=args.batch, seconds=args.seconds,
                                        window=args.window, series=args.series,
                                        fps=args.fps))]
    for name in phases:
        flag = {"none": None, "on": True, "off": False}[name]
        cells.append(new_code_cell(PHASE.format(name=name, decimate=flag)))
    cells.append(new_code_cell(FINISH))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-dec-"))
    lab = start_lab(tmp, notebooks=(), files={"bench.ipynb": nbformat.writes(nb)})
    done = lab.root / "results.json"
    perf: dict[str, Any] | None = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(300_000)  # a blocked page answers late
            page.add_init_script(PROBE_INIT_JS)
            open_notebook(page, lab, "bench.ipynb")
            run_all(page)
            deadline = time.monotonic() + len(phases) * (args.seconds + 60) + 180
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.5)  # waiting for the notebook's file, not a synchronisation
            if done.exists():
                perf = page.evaluate(READ_PROBE_JS)
                page.screenshot(path=str(tmp / "bench.png"))
            browser.close()
    finally:
        stop_lab(lab)
    if not done.exists() or not perf:
        raise SystemExit(f"the benchmark notebook did not finish; see {tmp}")
    if not perf.get("supported"):
        raise SystemExit(f"this Chromium reports no long tasks: {perf.get('error')}")
    kernel = json.loads(done.read_text())
    results: dict[str, Any] = {"rate_offered": args.rate, "batch": args.batch,
                               "window": args.window, "series": args.series,
                               "seconds": args.seconds, "fps": args.fps, "phases": {}}
    for name in phases:
        results["phases"][name] = phase_figures(kernel[name], perf, args.series)
    out = results_dir()
    (out / "decimation.json").write_text(json.dumps({**results, "kernel": kernel}, indent=2))
    shutil.copy(tmp / "bench.png", out / "decimation.png")
    tabs = tables(results)
    print(tabs["phases"])
    if not args.no_summary:
        path = write_summary(
            "decimation", argv=argv, started=started, machine_before=machine,
            settings={"rate": args.rate, "batch": args.batch, "window": args.window,
                      "series": args.series, "seconds": args.seconds, "fps": args.fps,
                      "phases": phases},
            figures=results, tables=tabs, summary_dir=args.summary_dir,
            packages=("jupyterlab", "ipykernel", "bokeh", "jupyter_bokeh", "playwright"),
            notes=["Chromium: headless, --disable-gpu; viewport 1300x900; page blocked = "
                   "time in long tasks (PerformanceObserver 'longtask', tasks >= 50 ms) / "
                   "phase time; frames/s = requestAnimationFrame callbacks / phase time",
                   "rows are fed in-process on the kernel's loop (the chart path alone, no "
                   "network); 'fed rows/s' is the rate the kernel achieved"])
        print(f"\nsummary: {path}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
