"""Outside-feed ingest: messages/s into a live feed stream vs a bare receive-plus-orjson loop.

A feed server runs in a separate process and, for each client, sends N messages
of one small JSON event each (as an exchange's trade channel does)::

    {"type": "trade", "p": "43012.50", "q": 0.0132, "T": 1700000000123, "s": "BTC-USD", "side": "buy"}

Two clients read the same feed in the same run, alternately, ``--repeat`` times:

* **bare**: ``tornado.websocket.websocket_connect`` with an ``on_message_callback``
  that does ``orjson.loads`` and counts — the floor any Python client pays;
* **livestream**: ``open_feed(url).stream(select={"type": "trade"}, columns=...)``
  — selection, string → float, epoch ms → ``datetime64[ns, UTC]``, categories,
  columnar append into the Subscription's window.

The clock starts when the client asks for the data and stops when the last
row is in (``stream.stats.rows == N``). Targets: ≥ 100k msg/s and ≥ 0.8× bare.

Run: ``python benchmarks/bench_feed.py`` (``--messages 300000 --repeat 5``;
``--json out.json`` to save the figures). Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


async def bare(url: str, n: int) -> float:
    from tornado.websocket import websocket_connect

    done = asyncio.Event()
    count = 0
    loads = orjson.loads

    def on_message(m: str | bytes | None) -> None:
        nonlocal count
        if m is None:
            return
        loads(m)
        count += 1
        if count == n:
            done.set()

    ws = await websocket_connect(url, on_message_callback=on_message,
                                 max_message_size=1 << 20)
    t0 = time.perf_counter()
    await ws.write_message("go")
    await done.wait()
    dt = time.perf_counter() - t0
    ws.close()
    return n / dt


async def livestream_stream(url: str, n: int) -> float:
    from livestream.client.feed import open_feed

    feed = open_feed(url)
    st = feed.stream({"type": "trade"}, columns=COLUMNS, window=n)
    done = asyncio.Event()
    st.on_update(lambda sub, frame, kind: sub.stats_data.rows >= n and done.set())
    await feed.opened(timeout=30)
    t0 = time.perf_counter()
    feed.send("go")
    await asyncio.wait_for(done.wait(), 300)
    dt = time.perf_counter() - t0
    assert len(st) == n and st.stats.errors == 0, st.stats
    assert str(st.df.dtypes["time"]) == "datetime64[ns, UTC]"
    feed.close()
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_server, args=(q, args.messages), daemon=True)
    proc.start()
    try:
        port = q.get(timeout=120)
        url = f"ws://127.0.0.1:{port}/ws"
        results: dict[str, list[float]] = {"bare": [], "livestream": []}

        async def run_all() -> None:
            for _ in range(args.repeat):
                results["bare"].append(await bare(url, args.messages))
                results["livestream"].append(await livestream_stream(url, args.messages))

        asyncio.run(run_all())
    finally:
        proc.terminate()
        proc.join(10)
    med = {k: statistics.median(v) for k, v in results.items()}
    best = {k: max(v) for k, v in results.items()}
    pair = [ls / b for ls, b in zip(results["livestream"], results["bare"], strict=True)]
    ratio = statistics.median(pair)
    print(f"\nOutside-feed ingest, {args.messages:,} one-event messages per run, {args.repeat} "
          f"interleaved runs each (python {platform.python_version()}, {platform.machine()})\n")
    print("| client | msg/s median | msg/s best | runs |")
    print("|---|---:|---:|---|")
    for k in ("bare", "livestream"):
        runs = ", ".join(f"{v:,.0f}" for v in results[k])
        print(f"| {k} | {med[k]:,.0f} | {best[k]:,.0f} | {runs} |")
    print(f"\nlivestream / bare, median of the per-run pairs = {ratio:.2f} "
          f"(pairs: {', '.join(f'{r:.2f}' for r in pair)})")
    print("targets: >= 100,000 msg/s and >= 0.8x bare")
    if args.json is not None:
        args.json.write_text(json.dumps({"messages": args.messages, "runs": results,
                                         "median": med, "best": best, "pair_ratios": pair,
                                         "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
