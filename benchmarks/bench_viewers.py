"""Dashboard viewers: server memory (RSS) and CPU per viewer, Bokeh server app vs static page.

One dashboard (a line chart of trades by symbol and a 10-row table) is shown to
1, 10 and 50 viewers — pages of one headless Chromium — in two ways, in the same run:

* **app**: the Bokeh server app (``Dashboard.serve()``, what ``livestream dashboard``
  runs) in its own process; every viewer is a Bokeh session whose views the app
  draws in Python and sends as document patches. Measured: the app process and
  the livestream server process.
* **static**: the page written by ``dash.save()``; every viewer's browser
  subscribes to the livestream server itself. Measured: the livestream server
  process (the page's files come from a plain HTTP server, once per viewer).

The livestream server runs in its own process with a feed thread publishing
``--rate`` trades/s in 20 batches a second. For each viewer count the pages are
opened, every page must show points (a deadline, not a sleep), then CPU time and
RSS of the measured processes are sampled over ``--seconds``. CPU is % of one core.

Run: ``python -m benchmarks viewers`` (``--viewers 1,10,50 --seconds 5 --rate 1000
--fps 10``; ``--json out.json``). Raw figures go to benchmarks/results/viewers.json,
the summary the docs cite to docs/results/viewers.json. Loopback only; bounded
time; it stops by itself.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.server
import json
import multiprocessing as mp
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from livestream.dashboard.static import PAGE_POINTS_JS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DESCRIPTION = ("server RSS and CPU per dashboard viewer: Bokeh server app vs static "
               "self-streaming page, 1/10/50 viewers in headless Chromium")

def _trades(start: int, n: int) -> Any:
    import numpy as np
    import pandas as pd

    i = np.arange(start, start + n)
    return pd.DataFrame({
        "ts": pd.Timestamp("2024-01-02T09:30:00") + pd.to_timedelta(i, unit="ms"),
        "sym": pd.Categorical(np.array(["AAPL", "MSFT", "GOOG"])[i % 3],
                              categories=["AAPL", "MSFT", "GOOG"]),
        "price": 100.0 + np.sin(i / 50.0),
        "qty": (i % 100).astype("int64"),
    })


def _livestream_server(q: Any, rate: int) -> None:  # pragma: no cover - child process
    import livestream as ls

    srv = ls.serve(port=0, allowed_origins=["null"])
    batch = max(1, rate // 20)
    srv.publish("trades", _trades(0, batch))
    q.put(srv.url)
    n = batch
    t0 = time.monotonic()
    k = 0
    while True:
        k += 1
        time.sleep(max(0.0, t0 + k / 20 - time.monotonic()))  # the feed's pace
        srv.publish("trades", _trades(n, batch))
        n += batch


def _views(sub: Any, fps: float, window: int) -> list[Any]:
    from livestream.dashboard import ViewSpec

    return [ViewSpec.chart(sub, x="ts", y="price", by="sym", window=window, fps=fps),
            ViewSpec.table(sub, rows=10, columns=["ts", "sym", "price", "qty"])]


def _dashboard_app(q: Any, url: str, fps: float, window: int) -> None:  # pragma: no cover
    import livestream as ls
    from livestream.dashboard import Dashboard

    conn = ls.connect(url)
    sub = conn.subscribe("trades", window=window).wait(rows=1, timeout=60)
    ds = Dashboard(_views(sub, fps, window), title="viewers").serve(port=0)
    q.put(ds.url)
    threading.Event().wait()


def _sample(procs: list[Any], seconds: float) -> tuple[float, float]:
    """CPU (% of one core) over ``seconds`` and RSS (MiB) at the end, summed over ``procs``."""
    t0 = [p.cpu_times() for p in procs]
    w0 = time.monotonic()
    time.sleep(seconds)  # the measurement window
    dt = time.monotonic() - w0
    cpu = sum((b.user + b.system) - (a.user + a.system)
              for a, b in zip(t0, [p.cpu_times() for p in procs], strict=True))
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    return 100.0 * cpu / dt, rss


def _wait_points(pages: list[Any], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        counts = [sum(p.evaluate(PAGE_POINTS_JS) or []) for p in pages]
        if all(c > 0 for c in counts):
            return sum(counts)
        if time.monotonic() > deadline:
            raise RuntimeError(f"pages without points after {timeout}s: "
                               f"{sum(1 for c in counts if not c)} of {len(pages)}")
        time.sleep(0.2)  # poll interval


def _run_mode(name: str, url: str, procs: list[Any], levels: list[int], browser: Any,
              seconds: float, settle: float) -> list[dict[str, Any]]:
    import psutil

    ps = [psutil.Process(p) for p in procs]
    cpu0, rss0 = _sample(ps, seconds)
    rows = [{"mode": name, "viewers": 0, "cpu_pct": cpu0, "rss_mib": rss0}]
    print(f"{name:7s} viewers={0:3d}  cpu={cpu0:6.1f}%  rss={rss0:7.1f} MiB", flush=True)
    ctx = browser.new_context(viewport={"width": 1000, "height": 700})
    pages: list[Any] = []
    try:
        for n in levels:
            while len(pages) < n:
                page = ctx.new_page()
                page.goto(url, wait_until="load", timeout=120_000)
                pages.append(page)
            before = _wait_points(pages, 120)
            time.sleep(settle)  # let every page reach its steady state before measuring
            cpu, rss = _sample(ps, seconds)
            after = sum(sum(p.evaluate(PAGE_POINTS_JS) or []) for p in pages)
            row = {"mode": name, "viewers": n, "cpu_pct": cpu, "rss_mib": rss,
                   "cpu_per_viewer": (cpu - cpu0) / n, "rss_per_viewer": (rss - rss0) / n,
                   "points_before": before, "points_after": after}
            rows.append(row)
            print(f"{name:7s} viewers={n:3d}  cpu={cpu:6.1f}%  rss={rss:7.1f} MiB  "
                  f"per viewer: cpu={row['cpu_per_viewer']:5.2f}%  "
                  f"rss={row['rss_per_viewer']:6.2f} MiB", flush=True)
    finally:
        ctx.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks viewers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", default="1,10,50", help="viewer counts (ascending)")
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement window")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before measuring")
    ap.add_argument("--rate", type=int, default=1000, help="trades/s published")
    ap.add_argument("--fps", type=float, default=10.0, help="chart frames/s")
    ap.add_argument("--window", type=int, default=2000, help="points per series")
    ap.add_argument("--modes", default="app,static")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--json", default=None, help="write the figures here "
                    "(default benchmarks/results/viewers.json)")
    from benchmarks import add_summary_options, machine_facts, write_summary

    add_summary_options(ap)
    a = ap.parse_args(argv)
    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    levels = sorted(int(v) for v in a.viewers.split(","))
    modes = a.modes.split(",")

    from playwright.sync_api import sync_playwright

    import livestream as ls
    from benchmarks import results_dir
    from livestream.dashboard import Dashboard

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    server = ctx.Process(target=_livestream_server, args=(q, a.rate), daemon=True)
    server.start()
    children = [server]
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-viewers-"))
    httpd = None
    try:
        ws_url = q.get(timeout=60)
        conn = ls.connect(ws_url)
        sub = conn.subscribe("trades", window=a.window).wait(rows=1, timeout=60)
        Dashboard(_views(sub, a.fps, a.window), title="viewers").save(tmp / "desk.html")
        conn.close()
        handler = lambda *h, **kw: http.server.SimpleHTTPRequestHandler(  # noqa: E731
            *h, directory=str(tmp), **kw)
        http.server.SimpleHTTPRequestHandler.log_message = lambda *x: None  # type: ignore
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        static_url = f"http://127.0.0.1:{httpd.server_address[1]}/desk.html"

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=a.chromium, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                      "--disable-background-timer-throttling",
                      "--disable-renderer-backgrounding",
                      "--disable-backgrounding-occluded-windows"])
            try:
                if "app" in modes:
                    app = ctx.Process(target=_dashboard_app,
                                      args=(q, ws_url, a.fps, a.window), daemon=True)
                    app.start()
                    children.append(app)
                    app_url = q.get(timeout=120)
                    rows += _run_mode("app", app_url, [app.pid, server.pid], levels, browser,
                                      a.seconds, a.settle)
                    app.terminate()
                    app.join(10)
                if "static" in modes:
                    rows += _run_mode("static", static_url, [server.pid], levels, browser,
                                      a.seconds, a.settle)
            finally:
                browser.close()
    finally:
        if httpd is not None:
            httpd.shutdown()
        for c in children:
            if c.is_alive():
                c.terminate()
                c.join(10)
    out = {
        "benchmark": "viewers", "rate": a.rate, "fps": a.fps, "window": a.window,
        "seconds": a.seconds, "machine": platform.platform(), "python": sys.version.split()[0],
        "cpus": mp.cpu_count(), "rows": rows,
    }
    path = Path(a.json) if a.json else results_dir() / "viewers.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"\nwrote {path}")
    tabs = tables(rows, modes)
    print("\n" + tabs["viewers"])
    if not a.no_summary:
        spath = write_summary(
            "viewers", argv=argv, started=started, machine_before=machine,
            settings={"viewers": levels, "seconds": a.seconds, "settle": a.settle, "rate": a.rate,
                      "fps": a.fps, "window": a.window, "modes": modes},
            figures={"rows": rows}, tables=tabs, summary_dir=a.summary_dir,
            packages=("bokeh", "tornado", "playwright", "psutil"),
            notes=["points_before/points_after: points all pages held when the measurement "
                   "window opened and closed (growing = the pages kept up)"])
        print(f"summary: {spath}")
    return 0


def tables(rows: list[dict[str, Any]], modes: list[str]) -> dict[str, str]:
    """One row per viewer count: CPU (% of one core), RSS, and per viewer, for each mode."""
    from benchmarks import markdown_table

    by = {(r["mode"], r["viewers"]): r for r in rows}
    levels = sorted({r["viewers"] for r in rows})
    header = ["viewers"]
    for m in modes:
        header += [f"{m}: CPU", f"{m}: RSS", f"{m}: per viewer", f"{m}: page points (start → end)"]
    body = []
    for n in levels:
        line: list[Any] = [n]
        for m in modes:
            r = by.get((m, n))
            if r is None:
                line += ["—"] * 4
                continue
            per = "—" if n == 0 else f"{r['cpu_per_viewer']:.2f} % · {r['rss_per_viewer']:.1f} MiB"
            pts = "—" if n == 0 else f"{r['points_before']:,} → {r['points_after']:,}"
            line += [f"{r['cpu_pct']:.1f} %", f"{r['rss_mib']:.1f} MiB", per, pts]
        body.append(line)
    return {"viewers": markdown_table(header, body, "r" * len(header))}


if __name__ == "__main__":
    sys.exit(main())
