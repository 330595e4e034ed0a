"""Outside-feed ingest: messages/s into a live feed stream vs bare receive-plus-orjson loops.

A feed server runs in a separate process and, for each client, sends N messages
of one small JSON event each (as an exchange's trade channel does)::

    {"type": "trade", "p": "43012.50", "q": 0.0132, "T": 1700000000123, "s": "BTC-USD", "side": "buy"}

These clients read the same feed in the same run, in turn, ``--repeat`` times:

* **receive**: ``tornado.websocket.websocket_connect`` with an
  ``on_message_callback`` that only counts: Tornado's frame reading alone;
* **bare**: the same plus ``orjson.loads`` of every message — the floor a
  Python client on Tornado (livestream's client before issue 13) pays;
* **picows-receive**: picows' frame reading alone: a ``WSListener`` whose
  ``on_ws_frame`` only counts (one Python call per message, nothing decoded) — the
  floor for any Python consumer on picows;
* **picows**: the bare loop on picows, the library livestream's client transport
  uses: a ``WSListener`` whose ``on_ws_frame`` ``orjson.loads`` the frame's payload
  (from its memoryview) — the floor for livestream's own transport;
* **picows-msgspec**: the bare picows loop decoding each frame's payload with the
  feed stream's own ``msgspec`` decoder (a Struct of the five fields it reads and the
  ``type`` it selects on; ``livestream.client.feeds.fastpath``) instead of
  ``orjson.loads`` into a dict: what that decode costs against orjson's;
* **transport**: the bare loop through livestream's client transport
  (:func:`livestream.client.transport.connect`, the adapter every livestream
  connection and feed uses): its ``on_message`` ``orjson.loads`` each message — what
  the adapter costs over picows, apart from what a feed does with the message;
* **livestream**: ``open_feed(url).stream(select={"type": "trade"}, columns=...)``
  — selection, string → float, epoch ms → ``datetime64[ns, UTC]``, categories,
  columnar append into the Subscription's window, and an ``on_update``
  callback (which gets a DataFrame per batch); text messages reach it in lists, one per
  socket read (``on_texts``), decoded by the stream's struct batch handler;
* **livestream-per-message**: the same feed stream with text messages handed on one at
  a time (the transport without ``on_texts``), as before the lists: what they gain;
* **livestream-general**: the same feed stream on its general path, as it ran before
  the struct fast path: ``orjson.loads`` of each message into a dict, the stream's
  generated dict handler, and batches bounded by ``batch_interval`` only (no
  ``batch_messages`` bound): what the fast path and the batch bound gain, in the same run;
* **livestream-aiohttp**: the same feed stream with its transport swapped for the
  runner-up library, aiohttp, behind an adapter of the same shape
  (``benchmarks/_aiohttp_transport.py``: a reader task awaits each message): the
  choice of library measured through the real feed code.

The clock starts when the client asks for the data and stops when the last
row is in (``stream.stats.rows == N``). Besides msg/s it records the client's
CPU time per message (``time.process_time``: the feed server is another
process) and the garbage collections during the run. Targets (issue 13): livestream
≥ 2.0× bare (Tornado) and ≥ 0.8× the picows bare loop, each the median of the per-round
ratios; and ≥ 100k msg/s.

Run: ``python -m benchmarks feed`` (``--messages 300000 --repeat 5``; ``--quick``
for a smoke run; ``--json out.json`` also saves the raw figures; the summary goes
to docs/results/feed.json). Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import gc
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (after the path set-up, so that `python benchmarks/bench_feed.py` works too)
from benchmarks import (
    add_summary_options,
    machine_facts,
    markdown_table,
    write_summary,
)

DESCRIPTION = ("outside-feed ingest: msg/s and CPU µs/msg into a live feed stream vs Tornado "
               "receive-only, Tornado + orjson and picows + orjson clients")
TARGET_MSGS = 100_000
TARGET_VS_TORNADO = 2.0
TARGET_VS_PICOWS = 0.8
CLIENTS = ("receive", "bare", "picows-receive", "picows", "picows-msgspec", "transport",
           "livestream", "livestream-per-message", "livestream-general", "livestream-aiohttp")
#: the client that needs a library outside the test extras (aiohttp: the bench extra)
OPTIONAL = {"livestream-aiohttp": "aiohttp"}


def available(name: str) -> bool:
    """Whether the library client ``name`` needs is installed (reported otherwise)."""
    import importlib.util

    return name not in OPTIONAL or importlib.util.find_spec(OPTIONAL[name]) is not None

COLUMNS = {"price": ("p", float), "qty": ("q", float), "time": ("T", "datetime"),
           "symbol": ("s", "category"), "side": "category"}


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    return bytes([0x81, 126]) + n.to_bytes(2, "big") + payload


def _server(port_q: mp.Queue, n: int) -> None:  # pragma: no cover - runs in the child
    import tornado.web
    import tornado.websocket

    syms = ["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"]
    blob = b"".join(
        _frame(orjson.dumps({"type": "trade", "p": f"{43000 + (i % 1000) / 100:.2f}",
                             "q": round(0.001 + (i % 97) / 1000, 4), "T": 1_700_000_000_000 + i,
                             "s": syms[i % 4], "side": "buy" if i % 3 else "sell"}))
        for i in range(n)
    )

    class Feed(tornado.websocket.WebSocketHandler):
        def on_message(self, message: str | bytes) -> None:
            if message == "go":  # pre-encoded frames straight onto the socket
                stream = self.ws_connection.stream  # type: ignore[union-attr]
                step = 1 << 20
                for i in range(0, len(blob), step):
                    stream.write(blob[i:i + step])

    async def main() -> None:
        app = tornado.web.Application([(r"/ws", Feed)])
        server = app.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]
        port_q.put(port)
        await asyncio.Event().wait()

    asyncio.run(main())


class _Run:
    """One client's run: wall time, the process's CPU time and its garbage collections."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.gc_s = 0.0
        self._t_gc = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t_gc = time.perf_counter()
        else:
            self.collections[info["generation"]] += 1
            self.gc_s += time.perf_counter() - self._t_gc

    async def measure(self, n: int, go: Callable[[], Any], done: Awaitable[Any]) -> dict:
        gc.callbacks.append(self._on_gc)
        try:
            c0, t0 = time.process_time(), time.perf_counter()
            go()
            await done
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            gc.callbacks.remove(self._on_gc)
        return {"msgs_per_s": n / dt, "cpu_us_per_msg": cpu / n * 1e6,
                "gc_collections": list(self.collections), "gc_ms": self.gc_s * 1000}


async def tornado_client(url: str, n: int, decode: bool) -> dict:
    """Tornado's WebSocket client counting messages (and ``orjson.loads``-ing them)."""
    from tornado.websocket import websocket_connect

    done = asyncio.Event()
    count = 0
    loads = orjson.loads

    def on_message(m: str | bytes | None) -> None:
        nonlocal count
        if m is None:
            return
        if decode:
            loads(m)
        count += 1
        if count == n:
            done.set()

    ws = await websocket_connect(url, on_message_callback=on_message,
                                 max_message_size=1 << 20)
    res = await _Run().measure(n, lambda: ws.write_message("go"),
                               asyncio.wait_for(done.wait(), 300))
    ws.close()
    return res


async def picows_client(url: str, n: int, msgspec: bool = False, decode: bool = True) -> dict:
    """The bare loop on picows: ``orjson.loads`` of every frame's payload, counting
    (``msgspec``: the feed stream's Struct decoder instead; ``decode=False``: counting
    only)."""
    import picows

    done = asyncio.Event()
    count = 0
    loads = orjson.loads
    if msgspec:
        from livestream.client.feeds import fastpath
        from livestream.client.feeds.parse import RowParser

        plan = fastpath.plan(RowParser(select={"type": "trade"}, columns=COLUMNS))
        assert plan is not None
        loads = plan.decode
    text = picows.WSMsgType.TEXT

    class Listener(picows.WSListener):
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            nonlocal count
            if frame.msg_type is text:
                if decode:
                    loads(frame.get_payload_as_memoryview())
                count += 1
                if count == n:
                    done.set()

    transport, _ = await picows.ws_connect(Listener, url, max_frame_size=1 << 20,
                                           use_aiofastnet=False)
    res = await _Run().measure(n, lambda: transport.send(text, b"go"),
                               asyncio.wait_for(done.wait(), 300))
    transport.send_close()
    transport.disconnect()
    await transport.wait_disconnected()
    return res


async def transport_client(url: str, n: int) -> dict:
    """The bare loop through livestream's transport adapter (text arrives as ``str``)."""
    from livestream.client.transport import connect

    done = asyncio.Event()
    count = 0
    loads = orjson.loads

    def on_message(m: str | bytes) -> None:
        nonlocal count
        loads(m)
        count += 1
        if count == n:
            done.set()

    ws = await connect(url, on_message, max_message_size=1 << 20)
    res = await _Run().measure(n, lambda: ws.send("go"), asyncio.wait_for(done.wait(), 300))
    ws.close()
    await ws.wait_closed()
    return res


async def livestream_stream(url: str, n: int, fast: bool = True) -> dict:
    """The feed stream; ``fast=False``: on its general path (no struct fast path, batches
    bounded by ``batch_interval`` only), as before the fast path."""
    from livestream.client.feed import open_feed

    feed = open_feed(url) if fast else open_feed(url, batch_messages=10**12)
    st = feed.stream({"type": "trade"}, columns=COLUMNS, window=n)
    if not fast:
        st.use_fast_path = False
        st._refresh_feed()
    done = asyncio.Event()
    st.on_update(lambda sub, frame, kind: sub.stats_data.rows >= n and done.set())
    await feed.opened(timeout=30)
    res = await _Run().measure(n, lambda: feed.send("go"), asyncio.wait_for(done.wait(), 300))
    assert len(st) == n and st.stats.errors == 0, st.stats
    assert str(st.df.dtypes["time"]) == "datetime64[ns, UTC]"
    feed.close()
    return res


async def livestream_per_message(url: str, n: int) -> dict:
    """The feed stream with every text message handed on alone (no ``on_texts``)."""
    from livestream.client import feed

    original = feed.ws_connect

    async def one_at_a_time(*args: Any, on_texts: Any = None, **kw: Any) -> Any:
        return await original(*args, **kw)

    feed.ws_connect = one_at_a_time  # type: ignore[assignment]
    try:
        return await livestream_stream(url, n)
    finally:
        feed.ws_connect = original


async def livestream_on_aiohttp(url: str, n: int) -> dict:
    """The feed stream with ``livestream.client.feed.ws_connect`` swapped for aiohttp's."""
    from livestream.client import feed

    from ._aiohttp_transport import connect

    original = feed.ws_connect
    feed.ws_connect = connect  # type: ignore[assignment]
    try:
        return await livestream_stream(url, n)
    finally:
        feed.ws_connect = original


async def run_client(name: str, url: str, n: int) -> dict:
    if name == "livestream":
        return await livestream_stream(url, n)
    if name == "livestream-general":
        return await livestream_stream(url, n, fast=False)
    if name == "livestream-per-message":
        return await livestream_per_message(url, n)
    if name == "picows-receive":
        return await picows_client(url, n, decode=False)
    if name == "picows":
        return await picows_client(url, n)
    if name == "picows-msgspec":
        return await picows_client(url, n, msgspec=True)
    if name == "transport":
        return await transport_client(url, n)
    if name == "livestream-aiohttp":
        return await livestream_on_aiohttp(url, n)
    return await tornado_client(url, n, decode=(name == "bare"))


def _spread(xs: list[float]) -> list[float]:
    return [statistics.median(xs), min(xs), max(xs)]


def summarise(runs: dict[str, list[dict]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        out[name] = {
            "msgs_per_s": _spread([r["msgs_per_s"] for r in rs]),
            "cpu_us_per_msg": _spread([r["cpu_us_per_msg"] for r in rs]),
            "full_collections_per_run": _spread([r["gc_collections"][2] for r in rs]),
            "gc_ms_per_run": _spread([r["gc_ms"] for r in rs]),
        }
    def ratios(base: str, key: str) -> list[float]:
        return _spread([ls[key] / b[key] for ls, b in zip(runs["livestream"], runs[base],
                                                          strict=True)])

    out["livestream_vs_bare"] = ratios("bare", "msgs_per_s")
    out["livestream_vs_bare_cpu"] = ratios("bare", "cpu_us_per_msg")
    out["livestream_vs_picows"] = ratios("picows", "msgs_per_s")
    out["livestream_vs_picows_cpu"] = ratios("picows", "cpu_us_per_msg")
    if runs.get("livestream-aiohttp"):
        out["picows_vs_aiohttp_feed"] = _spread([ls["msgs_per_s"] / a["msgs_per_s"] for ls, a in
                                                 zip(runs["livestream"], runs["livestream-aiohttp"],
                                                     strict=True)])
    else:
        out["picows_vs_aiohttp_feed"] = None
    out["lists_vs_per_message"] = ratios("livestream-per-message", "msgs_per_s")
    out["lists_vs_per_message_cpu"] = ratios("livestream-per-message", "cpu_us_per_msg")
    out["fast_vs_general"] = ratios("livestream-general", "msgs_per_s")
    out["fast_vs_general_cpu"] = ratios("livestream-general", "cpu_us_per_msg")
    out["transport_vs_picows"] = _spread([t["msgs_per_s"] / b["msgs_per_s"] for t, b in zip(
        runs["transport"], runs["picows"], strict=True)])
    # differences within a round (its runs are back to back), then the median over rounds:
    # steadier than differences of medians on a machine whose load drifts
    cpu = {k: [r["cpu_us_per_msg"] for r in rs] for k, rs in runs.items()}
    out["cpu_breakdown_us"] = {
        "frame_reading": statistics.median(cpu["receive"]),
        "orjson_loads": statistics.median(b - r for b, r in zip(cpu["bare"], cpu["receive"],
                                                                strict=True)),
        "livestream_over_bare": statistics.median(ls - b for ls, b in zip(
            cpu["livestream"], cpu["bare"], strict=True)),
        "picows_bare": statistics.median(cpu["picows"]),
        "picows_receive": statistics.median(cpu["picows-receive"]),
        "livestream_over_picows": statistics.median(ls - b for ls, b in zip(
            cpu["livestream"], cpu["picows"], strict=True)),
        "msgspec_minus_orjson": statistics.median(m - b for m, b in zip(
            cpu["picows-msgspec"], cpu["picows"], strict=True)),
        "transport_over_picows": statistics.median(t - b for t, b in zip(
            cpu["transport"], cpu["picows"], strict=True)),
        "livestream_over_transport": statistics.median(ls - t for ls, t in zip(
            cpu["livestream"], cpu["transport"], strict=True)),
    }
    return out


def tables(summary: dict, repeat: int) -> dict[str, str]:
    label = {"receive": "Tornado receive only", "bare": "bare: Tornado receive + `orjson.loads`",
             "picows-receive": "picows receive only",
             "picows": "bare: picows receive + `orjson.loads`",
             "picows-msgspec": "bare: picows receive + the feed stream's msgspec Struct decode",
             "transport": "bare, through livestream's transport adapter",
             "livestream": "livestream feed stream",
             "livestream-per-message": "livestream feed stream, text messages handed on one "
                                       "at a time (as before the lists)",
             "livestream-general": "livestream feed stream, general path (as before the struct "
                                   "fast path)",
             "livestream-aiohttp": "livestream feed stream, transport on aiohttp instead"}
    rows = []
    for k in CLIENTS:
        if k not in summary:
            rows.append([label[k], f"not installed ({OPTIONAL[k]})", "", "", ""])
            continue
        s = summary[k]
        rows.append([label[k], f"{s['msgs_per_s'][0]:,.0f}",
                     f"{s['msgs_per_s'][1]:,.0f}–{s['msgs_per_s'][2]:,.0f}",
                     f"{s['cpu_us_per_msg'][0]:.2f}",
                     f"{s['full_collections_per_run'][0]:g}"])
    out = {"clients": markdown_table(
        ["client", "msg/s (median)", f"msg/s (range, {repeat} rounds)", "CPU µs/msg (median)",
         "full GCs per run"], rows)}
    r, c = summary["livestream_vs_bare"], summary["livestream_vs_bare_cpu"]
    p, pc = summary["livestream_vs_picows"], summary["livestream_vs_picows_cpu"]
    t = summary["transport_vs_picows"]
    fg, fgc = summary["fast_vs_general"], summary["fast_vs_general_cpu"]
    lp, lpc = summary["lists_vs_per_message"], summary["lists_vs_per_message_cpu"]
    a = summary["picows_vs_aiohttp_feed"]
    b = summary["cpu_breakdown_us"]
    ls_rate = summary["livestream"]["msgs_per_s"][0]

    def target(value: float, goal: float, unit: str = "×") -> str:
        return f"target ≥ {goal:,g}{unit}: " + ("met" if value >= goal else "**missed**")

    out["ratios"] = markdown_table(["measure", "value", ""], [
        ["livestream ÷ bare Tornado loop, msg/s (median of per-round pairs)",
         f"{r[0]:.2f}× [{r[1]:.2f}–{r[2]:.2f}]", target(r[0], TARGET_VS_TORNADO)],
        ["livestream ÷ bare picows loop, msg/s (median of per-round pairs)",
         f"{p[0]:.2f}× [{p[1]:.2f}–{p[2]:.2f}]", target(p[0], TARGET_VS_PICOWS)],
        ["livestream msg/s (median)", f"{ls_rate:,.0f}", target(ls_rate, TARGET_MSGS, "")],
        ["livestream ÷ bare Tornado loop, CPU per message",
         f"{c[0]:.2f}× [{c[1]:.2f}–{c[2]:.2f}]", ""],
        ["livestream ÷ bare picows loop, CPU per message",
         f"{pc[0]:.2f}× [{pc[1]:.2f}–{pc[2]:.2f}]", ""],
        ["CPU µs/msg: Tornado frame reading (receive only)", f"{b['frame_reading']:.2f}", ""],
        ["CPU µs/msg: `orjson.loads` (bare − receive, median over rounds)",
         f"{b['orjson_loads']:.2f}", ""],
        ["CPU µs/msg: picows frame reading (receive only)", f"{b['picows_receive']:.2f}", ""],
        ["CPU µs/msg: bare picows loop (frame reading + `orjson.loads`)",
         f"{b['picows_bare']:.2f}", ""],
        ["CPU µs/msg: msgspec Struct decode − `orjson.loads` (picows loops, median over rounds)",
         f"{b['msgspec_minus_orjson']:+.2f}", ""],
        ["livestream feed on picows ÷ the same on aiohttp, msg/s (median of per-round pairs)",
         f"{a[0]:.2f}× [{a[1]:.2f}–{a[2]:.2f}]" if a else "aiohttp not installed", ""],
        ["livestream ÷ the same with text messages one at a time, msg/s (median of "
         "per-round pairs)", f"{lp[0]:.2f}× [{lp[1]:.2f}–{lp[2]:.2f}]", ""],
        ["livestream ÷ the same with text messages one at a time, CPU per message",
         f"{lpc[0]:.2f}× [{lpc[1]:.2f}–{lpc[2]:.2f}]", ""],
        ["livestream ÷ its general path (no struct fast path, no batch bound), msg/s "
         "(median of per-round pairs)",
         f"{fg[0]:.2f}× [{fg[1]:.2f}–{fg[2]:.2f}]", ""],
        ["livestream ÷ its general path, CPU per message",
         f"{fgc[0]:.2f}× [{fgc[1]:.2f}–{fgc[2]:.2f}]", ""],
        ["transport adapter ÷ bare picows loop, msg/s (median of per-round pairs)",
         f"{t[0]:.2f}× [{t[1]:.2f}–{t[2]:.2f}]", ""],
        ["CPU µs/msg: livestream's own work (livestream − bare picows, median over rounds)",
         f"{b['livestream_over_picows']:.2f}", ""],
        ["CPU µs/msg: … of which the transport adapter (transport − bare picows)",
         f"{b['transport_over_picows']:.2f}", ""],
        ["CPU µs/msg: … of which the feed stream (livestream − transport)",
         f"{b['livestream_over_transport']:.2f}", ""],
    ], "lrl")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks feed",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 5,000 messages, 1 round, no summary unless --summary-dir")
    add_summary_options(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.messages, args.repeat = 5_000, 1
        if args.summary_dir is None:
            args.no_summary = True
    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_server, args=(q, args.messages), daemon=True)
    proc.start()
    clients = tuple(k for k in CLIENTS if available(k))
    runs: dict[str, list[dict]] = {k: [] for k in clients}
    try:
        port = q.get(timeout=120)
        url = f"ws://127.0.0.1:{port}/ws"

        async def run_all() -> None:
            for rnd in range(args.repeat):
                order = clients if rnd % 2 == 0 else tuple(reversed(clients))
                for name in order:
                    runs[name].append(await run_client(name, url, args.messages))

        asyncio.run(run_all())
    finally:
        proc.terminate()
        proc.join(10)
    summary = summarise(runs)
    tabs = tables(summary, args.repeat)
    print(f"\nOutside-feed ingest, {args.messages:,} one-event messages per run, {args.repeat} "
          f"round(s) (python {platform.python_version()}, {platform.machine()})\n")
    print(tabs["clients"] + "\n\n" + tabs["ratios"])
    if args.json is not None:
        args.json.write_text(json.dumps({"messages": args.messages, "runs": runs,
                                         "summary": summary}, indent=2))
    if not args.no_summary:
        path = write_summary(
            "feed", argv=argv, started=started, machine_before=machine,
            settings={"messages": args.messages, "repeat": args.repeat},
            figures={**summary, "runs": runs,
                     "targets": {"msgs_per_s": TARGET_MSGS, "vs_bare": TARGET_VS_TORNADO,
                                 "vs_picows": TARGET_VS_PICOWS}},
            tables=tabs, summary_dir=args.summary_dir,
            packages=("tornado", "picows", "aiohttp", "orjson", "pandas", "numpy"))
        print(f"\nsummary: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
