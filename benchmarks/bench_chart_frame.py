"""Kernel-side cost of a live chart: one coalesced frame vs a stream call per message.

    python -m benchmarks chart_frame [--rows 500] [--messages 10] [--frames 200]

In-process, no Jupyter: the comm's ``send`` is replaced by a counter, so what is
measured is the kernel's own work (Bokeh events, serialization, base64 of the
arrays), not the transport. Per frame, ``--messages`` messages of ``--rows`` rows
each (float64 ``v``; x is the row offset) arrive in a subscription of a 20,000-row
window; then

* **livestream**: ``sub.chart(y="v")`` draws one frame (``chart.refresh()``:
  ``rows_since`` → one ``ColumnDataSource.stream(…, rollover)`` → one PATCH-DOC,
  3 comm messages);
* **naive**: a plain jupyter_bokeh ``BokehModel`` whose ``ColumnDataSource.stream``
  is called once per message (what ``sub.on_update`` would do), each a message of
  its own.

Both process the same rows; the figures are per frame (``rows × messages`` rows),
medians and p95 over ``--frames`` frames after the window has filled, and the
time to apply the messages to the subscription. Loopback-free; seconds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from . import add_summary_options, machine_facts, markdown_table, write_summary
from ._local import feed_rows

DESCRIPTION = ("kernel-side cost of a chart frame (coalesced, one PATCH-DOC) vs a "
               "ColumnDataSource.stream per message, comm send stubbed")

WINDOW = 20_000


def _batch(start: int, n: int) -> pd.DataFrame:
    off = np.arange(start, start + n, dtype=np.float64)
    return pd.DataFrame({"v": np.sin(off / 1000.0)})


def _pcts(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "p95": xs[min(len(xs) - 1, int(0.95 * len(xs)))]}


def measure_livestream(rows: int, messages: int, frames: int, warmup: int) -> dict[str, Any]:
    from livestream.client.subscription import Subscription

    sub = Subscription("bench-frame", window=WINDOW)
    chart = sub.chart(y="v", window=WINDOW, start=False, decimate=False)  # every row, as naive
    sent = [0]
    chart.send = lambda *a, **k: sent.__setitem__(0, sent[0] + 1)  # type: ignore[method-assign]
    n = 0
    apply_ms: list[float] = []
    frame_ms: list[float] = []
    for i in range(warmup + frames):
        t0 = time.perf_counter()
        for _ in range(messages):
            feed_rows(sub, _batch(n, rows), n)
            n += rows
        t1 = time.perf_counter()
        if not chart.refresh():
            raise RuntimeError("the chart drew nothing")
        t2 = time.perf_counter()
        if i == warmup - 1:
            sent[0] = 0
        if i >= warmup:
            apply_ms.append((t1 - t0) * 1000)
            frame_ms.append((t2 - t1) * 1000)
    points = chart.points()
    chart.close()
    sub.close()
    return {"frame_ms": _pcts(frame_ms), "apply_ms": _pcts(apply_ms),
            "comm_messages_per_frame": sent[0] / frames, "points": points}


def measure_naive(rows: int, messages: int, frames: int, warmup: int) -> dict[str, Any]:
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure
    from jupyter_bokeh import BokehModel

    src = ColumnDataSource(data={"x": np.empty(0), "y": np.empty(0)})
    fig = figure(height=250)
    fig.line("x", "y", source=src)
    model = BokehModel(fig)
    sent = [0]
    model.send = lambda *a, **k: sent.__setitem__(0, sent[0] + 1)  # type: ignore[method-assign]
    n = 0
    frame_ms: list[float] = []
    for i in range(warmup + frames):
        batches = [_batch(n + k * rows, rows) for k in range(messages)]
        t0 = time.perf_counter()
        for b in batches:
            src.stream({"x": np.arange(n, n + rows, dtype=np.float64), "y": b["v"].to_numpy()},
                       rollover=WINDOW)
            n += rows
        t1 = time.perf_counter()
        if i == warmup - 1:
            sent[0] = 0
        if i >= warmup:
            frame_ms.append((t1 - t0) * 1000)
    points = len(src.data["x"])  # (the widget closes itself when collected)
    return {"frame_ms": _pcts(frame_ms), "comm_messages_per_frame": sent[0] / frames,
            "points": points}


def tables(res: dict[str, Any], rows: int, messages: int) -> dict[str, str]:
    ls, nv = res["livestream"], res["naive"]
    per = rows * messages
    body = [
        [f"livestream `sub.chart()`: one frame of {per:,} rows",
         f"{ls['frame_ms']['median']:.2f}", f"{ls['frame_ms']['p95']:.2f}",
         f"{ls['comm_messages_per_frame']:g}"],
        [f"naive: {messages} × `source.stream` of {rows} rows",
         f"{nv['frame_ms']['median']:.2f}", f"{nv['frame_ms']['p95']:.2f}",
         f"{nv['comm_messages_per_frame']:g}"],
        [f"applying the {messages} messages to the subscription (livestream)",
         f"{ls['apply_ms']['median']:.2f}", f"{ls['apply_ms']['p95']:.2f}", "—"],
    ]
    t = markdown_table(["kernel work per frame", "ms (median)", "ms (p95)", "comm messages"],
                       body)
    ratio = markdown_table(["measure", "value"], [
        ["naive ÷ livestream, kernel time per frame (medians)",
         f"{res['naive_vs_livestream']:.2f}×"],
    ], "lr")
    return {"frame": t, "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks chart_frame",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500, help="rows per message")
    ap.add_argument("--messages", type=int, default=10, help="messages per frame")
    ap.add_argument("--frames", type=int, default=200, help="frames measured")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 5 frames, no summary unless --summary-dir")
    add_summary_options(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.frames = 5
        if a.summary_dir is None:
            a.no_summary = True
    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    warmup = max(2, -(-WINDOW // (a.rows * a.messages)) + 1)  # until the window has rolled
    res: dict[str, Any] = {
        "livestream": measure_livestream(a.rows, a.messages, a.frames, warmup),
        "naive": measure_naive(a.rows, a.messages, a.frames, warmup),
    }
    res["naive_vs_livestream"] = (res["naive"]["frame_ms"]["median"]
                                  / res["livestream"]["frame_ms"]["median"])
    tabs = tables(res, a.rows, a.messages)
    print(tabs["frame"] + "\n\n" + tabs["ratio"])
    if not a.no_summary:
        path = write_summary(
            "chart_frame", argv=argv, started=started, machine_before=machine,
            settings={"rows": a.rows, "messages": a.messages, "frames": a.frames,
                      "warmup_frames": warmup, "window": WINDOW},
            figures=res, tables=tabs, summary_dir=a.summary_dir,
            packages=("bokeh", "jupyter_bokeh", "pandas", "numpy"))
        print(f"\nsummary: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
