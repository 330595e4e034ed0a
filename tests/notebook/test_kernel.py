"""Kernel-side behaviour of live views, in a real IPython kernel driven like JupyterLab.

The comm-budget test feeds a subscription at ~50k rows/s on the kernel's loop and
counts, on the client side of iopub, every comm message a chart sends: they must
stay within the chart's frame budget (3 messages a frame, frames at least 1/fps
apart), and every fed row must be in the chart's data source, in order.
"""

from __future__ import annotations

import json

import pytest
from kernel_util import max_per_window, msg_time
from testutil import poll

FEED = r'''
import asyncio, threading
import numpy as np, pandas as pd
from livestream.client.subscription import Subscription

SYMS = np.array(["a", "b", "c", "d"])

def make_batch(start, n):
    off = np.arange(start, start + n)
    return pd.DataFrame({"ts": pd.to_datetime(off, unit="ms", utc=True),
                         "v": off.astype("float64"), "sym": SYMS[off % 4]})

async def feed(sub, rate=50_000, seconds=3.0, tick=0.01, start=None):
    """Append ~rate rows/s to sub on this (the kernel's) loop; returns rows fed."""
    loop = asyncio.get_running_loop()
    per = max(1, int(rate * tick))
    n = sub.offset or 0 if start is None else start
    t0 = loop.time(); k = 0; fed = 0
    while loop.time() - t0 < seconds:
        sub.apply("append", make_batch(n, per), offset=n, next_offset=n + per)
        n += per; k += 1; fed += per
        await asyncio.sleep(max(0.0, t0 + k * tick - loop.time()))
    return fed
'''


def wait_until(kernel, expr: str, timeout: float = 60.0):
    """Poll ``expr`` in the kernel until it is truthy (between polls the loop runs frames;
    each poll is a round trip to the kernel, so no pause is needed between them)."""
    return poll(lambda: kernel.value(expr), timeout, repr(expr), step=0)


def patch_messages(kernel, comm_id: str) -> list[dict]:
    return [m for m in kernel.comm_messages(comm_id)
            if m["content"]["data"].get("method") == "custom"
            and m["content"]["data"]["content"].get("msg") == "patch"]


@pytest.mark.parametrize("by", [None, "sym"])
def test_chart_comm_budget_under_50k_rows_per_s(kernel, by):
    fps = 20
    kernel.run(FEED)
    kernel.run(
        "sub = Subscription('ticks', window=1_000_000)\n"
        # every row reaches the chart's sources: decimation off (docs/charts.md)
        f"c = sub.chart(x='ts', y='v', by={by!r}, window=1_000_000, fps={fps}, decimate=False)\n"
        "c"
    )
    comm_id = kernel.value("c.model_id")
    before = len(patch_messages(kernel, comm_id))
    feed = kernel.run("total = await feed(sub, rate=50_000, seconds=3.0)\ntotal")
    assert not [o for o in feed.outputs if o["msg_type"] in ("stream", "error")]
    total = kernel.value("total")
    assert total >= 50_000  # the feed really ran for a while
    # every row reaches the chart (frames keep running between cells)
    wait_until(kernel, "c.stats.rows == total and c.points() == total")

    # every row is in the data sources, once, in order (x is the offset in ms)
    kernel.run(
        "xs = np.sort(np.concatenate([s.data['x'] for s in c.sources.values()]))\n"
        "ys = np.sort(np.concatenate([s.data['y'] for s in c.sources.values()]))\n"
        "ok_rows = bool(np.array_equal(xs, np.arange(total, dtype=float)) and np.array_equal(xs, ys))\n"
        "dtypes = sorted({str(s.data[k].dtype) for s in c.sources.values() for k in s.data})"
    )
    assert kernel.value("ok_rows") is True
    assert kernel.value("dtypes") == ["float64"]
    if by:
        assert sorted(kernel.value("[str(k) for k in c.sources]")) == ["a", "b", "c", "d"]

    msgs = patch_messages(kernel, comm_id)[before:]
    stats = kernel.value("(c.stats.frames, c.stats.comm_messages)")
    frames, sent = stats
    # the kernel-side count is what iopub carried: 3 comm messages (one PATCH-DOC) a frame
    assert len(patch_messages(kernel, comm_id)) == sent
    assert sent == 3 * frames
    assert len(msgs) % 3 == 0
    # the budget: frames at least 1/fps apart → at most fps+1 frames in any second
    times = [msg_time(m) for m in msgs[0::3]]
    assert max_per_window(times, 1.0) <= fps + 1
    assert max_per_window([msg_time(m) for m in msgs], 1.0) <= 3 * (fps + 1)
    # and far fewer messages than the feed's batches (300 in 3 s): coalesced
    assert len(times) < 3 * 100

    # arrays travel as binary ndarrays (base64), not JSON lists of numbers
    contents = [json.loads(m["content"]["data"]["content"]["payload"]) for m in msgs[2::3]]
    streamed = [e for c in contents for e in c["events"] if e["kind"] == "ColumnsStreamed"]
    assert streamed
    for e in streamed:
        for col in ("x", "y"):
            rep = e["data"].get("entries")
            value = dict(rep)[col] if rep else e["data"][col]
            assert value["type"] == "ndarray" and value["dtype"] == "float64"
            assert isinstance(value["array"]["data"], str)
    assert not [m for m in kernel.messages("stream")
                if "IOPub" in m["content"].get("text", "")]


def test_rerunning_a_cell_closes_its_previous_chart(kernel):
    kernel.run(FEED)
    kernel.run("sub = Subscription('t', window=10_000)\n"
               "sub.apply('append', make_batch(0, 100), offset=0, next_offset=100)")
    kernel.run("c = sub.chart(x='ts', y='v')\nc", cell_id="cell-A")
    kernel.run("first = c")
    kernel.run("c = sub.chart(x='ts', y='v')\nc", cell_id="cell-A")
    state = kernel.value(
        "(first.closed, first._timer.running, len(first.sources), c.closed, c._timer.running,"
        " len(sub.views))"
    )
    assert state == (True, False, 0, False, True, 1)
    # a chart created by another cell is left alone
    kernel.run("other = sub.chart(x='ts', y='v')", cell_id="cell-B")
    kernel.run("c = sub.chart(x='ts', y='v')", cell_id="cell-A")
    assert kernel.value("(other.closed, c.closed, len(sub.views))") == (False, False, 2)
    # closing a widget stops its updates and releases its buffers
    kernel.run("other.close()")
    assert kernel.value("(other.closed, other._timer.running, other.points())") == (True, False, 0)


def test_errors_go_to_status_widget_not_into_cells(kernel):
    kernel.run(FEED)
    kernel.run(
        "from types import SimpleNamespace\n"
        "from livestream.notebook import status_widget\n"
        "bad = Subscription('bad', window=10_000)\n"
        "good = Subscription('good', window=10_000)\n"
        "bad.on_update(lambda s, f, k: 1 / 0)\n"
        "conn = SimpleNamespace(url='ws://127.0.0.1:1/ws', state='live',\n"
        "    stats=SimpleNamespace(rows_per_s=0.0, lag_ms=None, reconnects=0, gaps=0),\n"
        "    subscriptions={'bad': bad, 'good': good})\n"
        "st = status_widget(conn)\n"
        "broken = good.chart(x='ts', y='no_such_column')\n"
        "fine = good.chart(x='ts', y='v')\n"
        "st"
    )
    res = kernel.run(
        "fed = await asyncio.gather(feed(bad, rate=5_000, seconds=0.5),"
        " feed(good, rate=5_000, seconds=0.5))"
    )
    assert [o["msg_type"] for o in res.outputs] == []
    # later cells stay clean too while frames keep failing in the background
    quiet = kernel.run("x = 1")
    assert quiet.outputs == []
    wait_until(kernel, "fine.points() == fed[1] and broken.stats.errors > 0")
    wait_until(kernel, "'ZeroDivisionError' in st.value")
    snap = kernel.value("st.snapshot()")
    assert snap["state"] == "live" and snap["errors"] >= 2
    assert kernel.value("bad.stats.errors > 0 and len(bad) == fed[0]") is True
    title = kernel.value("broken.figure.title.text")
    assert "no_such_column" in title
    assert kernel.value("broken._timer.running") is True  # a failing frame stops nothing


def test_widget_callbacks_from_a_subshell_thread_run_on_the_loop(kernel):
    kernel.run(FEED)
    kernel.run(
        "sub = Subscription('t', window=10_000)\n"
        "sub.apply('append', make_batch(0, 100), offset=0, next_offset=100)\n"
        "chart = sub.chart(x='ts', y='v')\n"
        "ctl = sub.controls(filter_column='sym')\n"
        "main_thread = threading.get_ident()\n"
        "seen = {}\n"
        "ctl.pause_button.observe(lambda ch: seen.setdefault('observer', threading.get_ident()),"
        " names='value')\n"
        "orig_pause = sub.pause\n"
        "def pause():\n"
        "    seen['pause'] = threading.get_ident()\n"
        "    orig_pause()\n"
        "sub.pause = pause\n"
        "ctl"
    )
    button = kernel.value("ctl.pause_button.model_id")
    kc = kernel.kc
    req = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(req)
    reply = kc.control_channel.get_msg(timeout=30)
    subshell = reply["content"]["subshell_id"]
    # ipykernel routes a comm's messages to the subshell that last used the comm; make
    # it the new subshell, as when the frontend's comms run over subshells (JupyterLab
    # 4.4+ default) and the widget was last touched from there
    kernel.run(f"ctl.pause_button.comm._reply_subshell_id = {subshell!r}")
    msg = kc.session.msg("comm_msg", {"comm_id": button, "data": {
        "method": "update", "state": {"value": True}, "buffer_paths": []}})
    msg["header"]["subshell_id"] = subshell
    kc.shell_channel.send(msg)
    wait_until(kernel, "'pause' in seen and all(v.paused for v in sub.views)")
    observer, paused_on, main = kernel.value("(seen['observer'], seen['pause'], main_thread)")
    assert observer != main  # the click really arrived on another thread …
    assert paused_on == main  # … and was applied on the kernel's loop
    assert kernel.value("(sub.paused, chart.paused, ctl.pause_button.description)") == (
        True, True, "Resume")
