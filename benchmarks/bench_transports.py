"""Client WebSocket transports: messages/s and CPU µs/message per client library.

The groundwork for choosing the client transport (livestream connections and
outside feeds) by measuring. A Tornado server runs in a separate process and,
when a client sends ``go``, writes pre-framed messages onto the socket as fast as
it can (the frames are built once, before any client connects, so the server's
own framing costs nothing). Two workloads:

* **json**: N text messages of one ~120-byte JSON event each (an exchange's
  trade channel; the outside-feed shape); the client ``orjson.loads`` every one;
* **arrow**: M binary livestream data frames of 100 rows each (4-byte header
  length, JSON header, Arrow IPC stream: :func:`livestream.protocol.codec.pack_binary`);
  the client splits each one (``unpack_binary``) and reads its Arrow table
  (``read_arrow``, pyarrow) — the livestream-connection shape.

The clients, each in this process (the server is the other one), in turn,
``--repeat`` interleaved rounds (the order reverses every other round):

* **tornado-callback**: ``tornado.websocket.websocket_connect`` with an
  ``on_message_callback`` (the baseline; livestream's client before issue 13);
* **tornado-read**: the same connection read with ``await ws.read_message()``;
* **websockets**: ``websockets.asyncio.client.connect``, ``await ws.recv()``;
* **aiohttp**: ``ClientSession().ws_connect``, ``await ws.receive()``;
* **picows**: ``picows.ws_connect`` with a ``WSListener`` whose ``on_ws_frame``
  decodes (JSON from the frame's memoryview, which orjson copies; Arrow from
  ``get_payload_as_bytes()``, because a table read from the memoryview would
  point into picows' reused read buffer).

The clock starts when the client sends ``go`` and stops when it has decoded the
last message. Figures: the median msg/s over the rounds, the median of the
per-round ratios to the Tornado callback client (measured in the same round),
and the client's CPU µs per message (``time.process_time``: the server is
another process). A library that is not installed is reported as such.

Run: ``python -m benchmarks transports`` (``--messages 204800 --frames 10000
--repeat 5``; ``--quick`` for a smoke run; ``--json out.json`` also saves the raw
figures; the summary goes to docs/results/transports.json). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import importlib.util
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (after the path set-up, so that `python benchmarks/bench_transports.py` works too)
from benchmarks import (
    add_summary_options,
    machine_facts,
    markdown_table,
    write_summary,
)

DESCRIPTION = ("client WebSocket transports: msg/s and CPU µs/msg for Tornado, websockets, "
               "aiohttp and picows receiving JSON and Arrow frames")
CLIENTS = ("tornado-callback", "tornado-read", "websockets", "aiohttp", "picows")
BASELINE = "tornado-callback"
WORKLOADS = ("json", "arrow")
#: the module each client needs (reported "not installed" when it is missing)
NEEDS = {"tornado-callback": "tornado", "tornado-read": "tornado", "websockets": "websockets",
         "aiohttp": "aiohttp", "picows": "picows"}
LABELS = {"tornado-callback": "Tornado, `on_message_callback`",
          "tornado-read": "Tornado, `await read_message()`",
          "websockets": "websockets (asyncio), `await recv()`",
          "aiohttp": "aiohttp `ws_connect`, `await receive()`",
          "picows": "picows, `on_ws_frame`"}
ROWS_PER_FRAME = 100
TIMEOUT = 300.0


# -- the server (another process) --------------------------------------------------------------


def _frame(payload: bytes, opcode: int) -> bytes:
    """One unmasked, unfragmented server frame."""
    n = len(payload)
    first = bytes([0x80 | opcode])
    if n < 126:
        return first + bytes([n]) + payload
    if n < 1 << 16:
        return first + bytes([126]) + n.to_bytes(2, "big") + payload
    return first + bytes([127]) + n.to_bytes(8, "big") + payload


def json_message(i: int) -> bytes:
    """The i-th JSON event (~120 bytes)."""
    syms = ("BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD")
    return orjson.dumps({"type": "trade", "symbol": syms[i % 4],
                         "price": f"{43000 + (i % 1000) / 100:.2f}",
                         "qty": round(0.001 + (i % 97) / 1000, 4),
                         "time": 1_700_000_000_000 + i, "side": "buy" if i % 3 else "sell",
                         "trade_id": 900_000_000 + i})


def arrow_message(i: int) -> bytes:
    """The i-th livestream binary data frame: 100 rows as an Arrow IPC stream."""
    import numpy as np
    import pandas as pd

    from livestream.protocol.codec import frame_to_arrow, pack_binary

    base = i * ROWS_PER_FRAME
    idx = np.arange(base, base + ROWS_PER_FRAME)
    frame = pd.DataFrame({
        "time": pd.to_datetime(1_700_000_000_000 + idx, unit="ms", utc=True),
        "price": 43000 + (idx % 1000) / 100, "qty": 0.001 + (idx % 97) / 1000,
        "symbol": pd.Categorical(np.array(["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"])[idx % 4]),
        "trade_id": idx.astype("int64"),
    })
    header = {"type": "append", "topic": "trades", "epoch": "e1", "offset": base,
              "next": base + ROWS_PER_FRAME, "rows": ROWS_PER_FRAME, "ts": 1_700_000_000.0}
    return pack_binary(header, frame_to_arrow(frame))


def _server(port_q: mp.Queue, n_json: int, n_arrow: int) -> None:  # pragma: no cover - child
    import tornado.web
    import tornado.websocket

    blobs = {"json": b"".join(_frame(json_message(i), 0x1) for i in range(n_json))}
    # the Arrow frames differ only in their numbers: build a cycle of 100, repeat it
    cycle = [_frame(arrow_message(i), 0x2) for i in range(min(100, n_arrow))]
    blobs["arrow"] = b"".join(cycle[i % len(cycle)] for i in range(n_arrow))
    sizes = {"json": len(blobs["json"]) / max(n_json, 1),
             "arrow": len(blobs["arrow"]) / max(n_arrow, 1)}

    class Sender(tornado.websocket.WebSocketHandler):
        def initialize(self, blob: bytes) -> None:
            self.blob = blob

        def on_message(self, message: str | bytes) -> None:
            if message == "go":  # the pre-built frames straight onto the socket
                stream = self.ws_connection.stream  # type: ignore[union-attr]
                step = 1 << 20
                for i in range(0, len(self.blob), step):
                    stream.write(self.blob[i:i + step])

    async def main() -> None:
        app = tornado.web.Application([(r"/json", Sender, {"blob": blobs["json"]}),
                                       (r"/arrow", Sender, {"blob": blobs["arrow"]})])
        server = app.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]
        port_q.put((port, sizes))
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the clients -------------------------------------------------------------------------------


def decoder(workload: str) -> Callable[[Any], Any]:
    """What the client does with each message: ``orjson.loads``, or split the livestream
    binary frame and read its Arrow table."""
    if workload == "json":
        return orjson.loads
    from livestream.protocol.codec import read_arrow, unpack_binary

    def decode(data: Any) -> Any:
        _header, payload = unpack_binary(data)
        return read_arrow(payload)

    return decode


class _Counter:
    """Counts decoded messages; ``done`` is set at the n-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


async def _measure(n: int, go: Callable[[], Any], done: Any) -> dict:
    c0, t0 = time.process_time(), time.perf_counter()
    go()
    await asyncio.wait_for(done, TIMEOUT)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"msgs_per_s": n / dt, "cpu_us_per_msg": cpu / n * 1e6, "seconds": dt}


async def tornado_callback(url: str, n: int, decode: Callable[[Any], Any]) -> dict:
    from tornado.websocket import websocket_connect

    c = _Counter(n)

    def on_message(m: str | bytes | None) -> None:
        if m is not None:
            decode(m)
            c.hit()

    ws = await websocket_connect(url, on_message_callback=on_message, max_message_size=1 << 26)
    try:
        return await _measure(n, lambda: ws.write_message("go"), c.done.wait())
    finally:
        ws.close()


async def tornado_read(url: str, n: int, decode: Callable[[Any], Any]) -> dict:
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(url, max_message_size=1 << 26)

    async def read_all() -> None:
        for _ in range(n):
            m = await ws.read_message()
            if m is None:
                raise ConnectionError("closed early")
            decode(m)

    try:
        return await _measure(n, lambda: ws.write_message("go"), read_all())
    finally:
        ws.close()


async def websockets_client(url: str, n: int, decode: Callable[[Any], Any]) -> dict:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None) as ws:
        async def read_all() -> None:
            for _ in range(n):
                decode(await ws.recv())

        go = asyncio.ensure_future(ws.send("go"))
        res = await _measure(n, lambda: None, read_all())
        await go
        return res


async def aiohttp_client(url: str, n: int, decode: Callable[[Any], Any]) -> dict:
    import aiohttp

    text, binary = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(url, max_msg_size=0) as ws:
        async def read_all() -> None:
            for _ in range(n):
                msg = await ws.receive()
                if msg.type is not text and msg.type is not binary:
                    raise ConnectionError(f"unexpected {msg.type}")
                decode(msg.data)

        go = asyncio.ensure_future(ws.send_str("go"))
        res = await _measure(n, lambda: None, read_all())
        await go
        return res


async def picows_client(url: str, n: int, decode: Callable[[Any], Any], workload: str) -> dict:
    import picows

    c = _Counter(n)
    kinds = (picows.WSMsgType.TEXT, picows.WSMsgType.BINARY)
    as_view = workload == "json"  # orjson copies; an Arrow table would keep the view

    class Listener(picows.WSListener):
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type in kinds:
                decode(frame.get_payload_as_memoryview() if as_view
                       else frame.get_payload_as_bytes())
                c.hit()

    transport, _listener = await picows.ws_connect(Listener, url, max_frame_size=1 << 26)
    try:
        return await _measure(n, lambda: transport.send(picows.WSMsgType.TEXT, b"go"),
                              c.done.wait())
    finally:
        transport.send_close()
        transport.disconnect()
        await transport.wait_disconnected()


async def run_client(name: str, url: str, n: int, workload: str) -> dict:
    decode = decoder(workload)
    if name == "tornado-callback":
        return await tornado_callback(url, n, decode)
    if name == "tornado-read":
        return await tornado_read(url, n, decode)
    if name == "websockets":
        return await websockets_client(url, n, decode)
    if name == "aiohttp":
        return await aiohttp_client(url, n, decode)
    if name == "picows":
        return await picows_client(url, n, decode, workload)
    raise KeyError(name)


def installed(name: str) -> bool:
    """Whether the library client ``name`` needs can be imported."""
    return importlib.util.find_spec(NEEDS[name]) is not None


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for mod in sorted(set(NEEDS.values())):
        try:
            out[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            out[mod] = "not installed"
    return out


# -- figures and tables ------------------------------------------------------------------------


def _spread(xs: list[float]) -> list[float]:
    return [statistics.median(xs), min(xs), max(xs)]


def summarise(runs: dict[str, dict[str, list[dict]]], present: list[str]) -> dict[str, Any]:
    """Per workload and client: msg/s and CPU µs/msg (median, min, max) and the median of
    the per-round ratios to the baseline (msg/s; CPU)."""
    out: dict[str, Any] = {}
    for wl, by_client in runs.items():
        base = by_client.get(BASELINE, [])
        w: dict[str, Any] = {}
        for name in CLIENTS:
            if name not in present:
                w[name] = {"status": "not installed"}
                continue
            rs = by_client[name]
            errors = [r["error"] for r in rs if "error" in r]
            if errors:
                w[name] = {"status": "error", "error": errors[0]}
                continue
            s: dict[str, Any] = {"status": "ok",
                                 "msgs_per_s": _spread([r["msgs_per_s"] for r in rs]),
                                 "cpu_us_per_msg": _spread([r["cpu_us_per_msg"] for r in rs])}
            if base and all("error" not in b for b in base):
                s["vs_baseline"] = _spread([r["msgs_per_s"] / b["msgs_per_s"]
                                            for r, b in zip(rs, base, strict=True)])
                s["cpu_vs_baseline"] = _spread([r["cpu_us_per_msg"] / b["cpu_us_per_msg"]
                                                for r, b in zip(rs, base, strict=True)])
            w[name] = s
        out[wl] = w
    return out


def tables(summary: dict, repeat: int, settings: dict, versions: dict[str, str]) -> dict[str, str]:
    out = {}
    what = {"json": f"{settings['messages']:,} JSON text messages of "
                    f"~{settings['json_bytes']:.0f} bytes on the wire, `orjson.loads` each",
            "arrow": f"{settings['frames']:,} binary frames of {ROWS_PER_FRAME} rows "
                     f"(~{settings['arrow_bytes']:,.0f} bytes on the wire), Arrow table read from "
                     f"each"}
    for wl, w in summary.items():
        rows = []
        for name in CLIENTS:
            lib = NEEDS[name]
            label = f"{LABELS[name]} ({lib} {versions.get(lib, '?')})"
            s = w[name]
            if s["status"] != "ok":
                note = "not installed" if s["status"] == "not installed" else \
                    f"error: {s['error'][:60]}"
                rows.append([label, note, "", "", ""])
                continue
            m, c = s["msgs_per_s"], s["cpu_us_per_msg"]
            ratio = s.get("vs_baseline")
            rows.append([label, f"{m[0]:,.0f}", f"{m[1]:,.0f}–{m[2]:,.0f}",
                         f"{ratio[0]:.2f}× [{ratio[1]:.2f}–{ratio[2]:.2f}]" if ratio else "–",
                         f"{c[0]:.2f}"])
        out[wl] = (f"{what[wl]}:\n\n" + markdown_table(
            ["client", "msg/s (median)", f"msg/s (range, {repeat} rounds)",
             "× Tornado callback (median of per-round ratios)", "client CPU µs/msg (median)"],
            rows))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks transports",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=204_800, help="JSON messages per run")
    ap.add_argument("--frames", type=int, default=10_000, help="Arrow frames per run")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--clients", default=",".join(CLIENTS),
                    help=f"comma-separated subset of {','.join(CLIENTS)}")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 5,000 messages, 200 frames, 1 round, no summary unless "
                         "--summary-dir")
    add_summary_options(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.messages, args.frames, args.repeat = 5_000, 200, 1
        if args.summary_dir is None:
            args.no_summary = True
    wanted = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = set(wanted) - set(CLIENTS)
    if unknown or BASELINE not in wanted:
        ap.error(f"--clients: unknown {sorted(unknown)}" if unknown
                 else f"--clients must include the baseline {BASELINE}")
    present = [c for c in CLIENTS if c in wanted and installed(c)]
    for c in wanted:
        if c not in present:
            print(f"{c}: not installed ({NEEDS[c]})", flush=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    counts = {"json": args.messages, "arrow": args.frames}
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_server, args=(q, args.messages, args.frames), daemon=True)
    proc.start()
    runs: dict[str, dict[str, list[dict]]] = {wl: {c: [] for c in present} for wl in WORKLOADS}
    try:
        port, sizes = q.get(timeout=300)

        async def run_all() -> None:
            for rnd in range(args.repeat):
                order = present if rnd % 2 == 0 else list(reversed(present))
                for wl in WORKLOADS:
                    url = f"ws://127.0.0.1:{port}/{wl}"
                    for name in order:
                        try:
                            r = await run_client(name, url, counts[wl], wl)
                        except Exception as exc:  # one library failing does not stop the run
                            r = {"error": f"{type(exc).__name__}: {exc}"}
                        runs[wl][name].append(r)
                        print(f"round {rnd + 1} {wl:5s} {name:16s} "
                              + (f"{r['msgs_per_s']:>12,.0f} msg/s "
                                 f"{r['cpu_us_per_msg']:8.2f} µs/msg" if "error" not in r
                                 else r["error"]), flush=True)

        asyncio.run(run_all())
    finally:
        proc.terminate()
        proc.join(10)
    vers = library_versions()
    settings = {"messages": args.messages, "frames": args.frames, "repeat": args.repeat,
                "rows_per_frame": ROWS_PER_FRAME, "json_bytes": round(sizes["json"], 1),
                "arrow_bytes": round(sizes["arrow"], 1), "clients": wanted,
                "baseline": BASELINE}
    summary = summarise(runs, present)
    tabs = tables(summary, args.repeat, settings, vers)
    print(f"\nClient transports, {args.repeat} round(s) (python {platform.python_version()}, "
          f"{platform.machine()})\n")
    print(tabs["json"] + "\n\n" + tabs["arrow"])
    if args.json is not None:
        args.json.write_text(json.dumps({"settings": settings, "runs": runs,
                                         "summary": summary}, indent=2))
    if not args.no_summary:
        path = write_summary(
            "transports", argv=argv, started=started, machine_before=machine,
            settings=settings, figures={**summary, "runs": runs, "libraries": vers},
            tables=tabs, summary_dir=args.summary_dir,
            packages=("tornado", "websockets", "aiohttp", "picows", "orjson", "pyarrow"))
        print(f"\nsummary: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
