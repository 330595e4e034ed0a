"""The subscriber process of the spine benchmark (``python -m benchmarks._spine_sub``).

Many WebSocket clients on one asyncio loop, in a process of their own. It reads
JSON-line commands on stdin and answers with JSON-line events on stdout:

``{"cmd": "case", ...}``
    open ``n`` clients of ``system`` in ``mode`` to ``url`` / ``topic``; answer
    ``{"ev": "ready"}`` when every client is connected and subscribed (and, for
    livestream, has its snapshot: the warm-up batch, not counted);
``{"cmd": "expect", "rows": R, "timeout": T}``
    wait until every client has received ``R`` rows (or ``T`` seconds), answer
    ``{"ev": "done", ...}`` with counts, times and latency percentiles, close
    the clients;
``{"cmd": "quit"}`` or end of input
    exit.

What "delivered" means here (``mode``):

``decode`` (fan-out)
    the payload is decoded into a columnar / Python structure: baseline (a)
    ``orjson.loads`` → list of row dicts; baseline (b) and livestream
    ``pyarrow.ipc.open_stream(...).read_all()`` → ``pyarrow.Table`` (livestream
    first splits its frame header with ``livestream.protocol.unpack_binary``).
``client`` (real-client fan-out)
    livestream through the real client, as a user writes it: ``livestream.connect``
    → ``Connection.subscribe`` per subscriber (offsets checked, rows in each
    subscription's rolling window, no DataFrame built since nobody asks for one);
    one poll task over all of them (every 1 ms) notes when rows arrive. The
    baselines decode as in ``decode`` mode: the bare Tornado + pyarrow (or orjson)
    loop.
``pandas``
    the rows end up in one pandas DataFrame holding the newest ``window`` rows
    (default 100,000), and the clock stops when that DataFrame exists — the same
    end point for all three, each reaching it its own natural way: livestream
    through the real client (``livestream.connect`` → ``Connection.subscribe`` →
    the Subscription's rolling ``ColumnWindow``, offsets checked), then
    ``sub.df`` once; baseline (a) ``pd.DataFrame(orjson.loads(msg))`` per
    message, kept while they cover the window, then one ``pd.concat``;
    baseline (b) ``read_all()`` per message, tables kept likewise, then one
    ``pa.concat_tables(...).to_pandas()``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from tornado.websocket import websocket_connect

from livestream.protocol import unpack_binary


def emit(ev: dict) -> None:
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


class Case:
    """Shared state of one measurement: the clients, the target count, latency samples."""

    def __init__(self, n: int, latency: bool, mode: str = "decode",
                 window: int = 100_000) -> None:
        self.n = n
        self.mode = mode
        self.window = window
        self.expected = float("inf")
        self.remaining = n
        self.ready_left = n
        self.ready = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()
        self.latency = latency
        self.lat_ns: list[int] = []
        self.errors: list[str] = []


class Client:
    """One subscriber: counts decoded rows, remembers when the last ones arrived."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.rows = 0
        self.messages = 0
        self.first: float | None = None
        self.last: float | None = None
        self.finished = False
        self.is_ready = False
        self.ws: Any = None
        self.conn: Any = None
        self.sub: Any = None
        self.poll: Any = None
        # pandas mode: the baselines' kept pieces (DataFrames or Arrow tables) and their rows
        self.pieces: deque = deque()
        self.piece_rows = 0
        self.frame_rows: int | None = None
        self.frame_s: float | None = None

    def keep(self, piece: Any, rows: int) -> None:
        """Keep a baseline's decoded message while the kept ones still cover the window."""
        self.pieces.append(piece)
        self.piece_rows += rows
        window = self.case.window
        while self.pieces and self.piece_rows - _rows(self.pieces[0]) >= window:
            self.piece_rows -= _rows(self.pieces.popleft())

    def frame(self) -> pd.DataFrame:
        """The DataFrame of the newest ``window`` rows, built the system's own way."""
        if self.sub is not None:  # livestream: the subscription's window
            return self.sub.df
        if not self.pieces:
            return pd.DataFrame()
        first = self.pieces[0]
        if isinstance(first, pa.Table):
            df = pa.concat_tables(list(self.pieces)).to_pandas()
        else:
            df = pd.concat(list(self.pieces), ignore_index=True)
        return df.iloc[-self.case.window:] if len(df) > self.case.window else df

    def mark_ready(self) -> None:
        if not self.is_ready:
            self.is_ready = True
            c = self.case
            c.ready_left -= 1
            if c.ready_left == 0 and not c.ready.done():
                c.ready.set_result(None)

    def got(self, n: int, ts_ns: int | None, messages: int = 1) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.rows += n
        self.messages += messages
        c = self.case
        if ts_ns is not None:
            c.lat_ns.append(time.time_ns() - ts_ns)
        if not self.finished and self.rows >= c.expected:
            self.finish()

    def finish(self) -> None:
        self.finished = True
        c = self.case
        if c.mode == "pandas":
            # the clock stops when the DataFrame of the newest rows exists: its build time
            # counts from the arrival of the last row (also when we learn the target late)
            t = time.monotonic()
            df = self.frame()
            self.frame_s = time.monotonic() - t
            self.frame_rows = len(df)
            self.last = (self.last if self.last is not None else t) + self.frame_s
        c.remaining -= 1
        if c.remaining == 0 and not c.done.done():
            c.done.set_result(None)

    def closed(self) -> None:
        if not self.finished:
            self.case.errors.append("connection closed early")

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.poll is not None:
            self.poll.cancel()
        if self.conn is not None:
            self.conn.close()


# -- per-system message handlers ------------------------------------------------------------


def _handler(system: str, mode: str, cl: Client):
    lat = cl.case.latency

    if system == "json":
        pandas = mode == "pandas"

        def on_json(msg: Any) -> None:
            if msg is None:
                return cl.closed()
            recs = orjson.loads(msg)
            if pandas:
                df = pd.DataFrame(recs)
                cl.keep(df, len(df))
                cl.got(len(df), int(df["ts"].iat[0]) if lat else None)
            else:
                cl.got(len(recs), recs[0]["ts"] if lat else None)

        return on_json

    if system == "arrow":
        pandas = mode == "pandas"

        def on_arrow(msg: Any) -> None:
            if msg is None:
                return cl.closed()
            table = pa.ipc.open_stream(msg).read_all()
            if pandas:
                cl.keep(table, table.num_rows)
                cl.got(table.num_rows, table.column(0)[0].as_py() if lat else None)
            else:
                cl.got(table.num_rows, table.column(0)[0].as_py() if lat else None)

        return on_arrow

    # livestream, decode mode: the wire protocol by hand (hello, subscribe, frames)
    def on_livestream(msg: Any) -> None:
        if msg is None:
            return cl.closed()
        if isinstance(msg, str):
            m = orjson.loads(msg)
            if m.get("type") == "error":
                cl.case.errors.append(f"{m.get('code')}: {m.get('message')}")
            return
        header, payload = unpack_binary(msg)
        table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
        if header["type"] == "snapshot":
            cl.mark_ready()
            return
        cl.got(table.num_rows, table.column(0)[0].as_py() if lat else None)

    return on_livestream


async def _open(cmd: dict, case: Case) -> Client:
    cl = Client(case)
    system, mode, url, topic = cmd["system"], cmd["mode"], cmd["url"], cmd["topic"]
    if system == "livestream" and mode in ("pandas", "client"):
        import livestream as ls

        conn = ls.connect(url, encoding="arrow", reconnect=False, ping_interval=None)
        cl.conn = conn
        sub = conn.subscribe(topic, window=case.window)
        cl.sub = sub
        if mode == "client":
            return cl  # one poll task for all (run_case)
        # No on_update callback: with one, the client builds a DataFrame per batch for
        # it. Users read sub.df / views read rows_since(); a 1 ms poll of the counters
        # stands in for them (the last batch's time is known to within 1 ms), and
        # sub.df is built once at the end (Client.finish).
        cl.poll = asyncio.ensure_future(_poll(sub, cl))
        return cl
    live = system == "livestream"
    target = url + ("?encoding=arrow" if live else "")
    cl.ws = await websocket_connect(target, on_message_callback=_handler(system, mode, cl),
                                    max_message_size=64 * 1024 * 1024)
    if live:
        await cl.ws.write_message(orjson.dumps(
            {"type": "hello", "v": 1, "encoding": "arrow", "client": "bench"}).decode())
        await cl.ws.write_message(orjson.dumps({"type": "subscribe", "topic": topic}).decode())
    else:
        cl.mark_ready()
    return cl


async def _poll_all(clients: list[Client]) -> None:
    """Real-client mode: note the rows every subscription received, every 1 ms."""
    seen: dict[int, tuple[int, int]] = {}
    try:
        while True:
            for i, cl in enumerate(clients):
                sub = cl.sub
                st = sub.stats_data
                if i not in seen:
                    if sub.offset is not None:
                        seen[i] = (st.rows, st.messages)  # the snapshot: warm-up
                        cl.mark_ready()
                    continue
                rows, msgs = seen[i]
                if st.rows != rows:
                    cl.got(st.rows - rows, None, st.messages - msgs)
                    seen[i] = (st.rows, st.messages)
            await asyncio.sleep(0.001)
    except asyncio.CancelledError:
        pass


async def _poll(sub: Any, cl: Client) -> None:
    seen = 0
    ready = False
    try:
        while True:
            st = sub.stats_data
            if not ready and sub.offset is not None:
                ready = True
                seen = st.rows  # the snapshot: warm-up, not counted
                cl.mark_ready()
            elif ready and st.rows != seen:
                cl.got(st.rows - seen, None)
                seen = st.rows
            await asyncio.sleep(0.001)
    except asyncio.CancelledError:
        pass


def _rows(piece: Any) -> int:
    return piece.num_rows if isinstance(piece, pa.Table) else len(piece)


def _percentiles(ns: list[int]) -> dict:
    if not ns:
        return {"samples": 0}
    a = np.asarray(ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"samples": len(a), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
            "max_ms": float(a.max()), "mean_ms": float(a.mean())}


async def run_case(cmd: dict, lines: asyncio.StreamReader) -> bool:
    case = Case(cmd["n"], bool(cmd.get("latency")), cmd.get("mode", "decode"),
                cmd.get("window", 100_000))
    clients: list[Client] = []
    poller = None
    try:
        for i in range(0, cmd["n"], 25):  # connect in groups: the accept backlog is finite
            chunk = range(i, min(cmd["n"], i + 25))
            clients += await asyncio.gather(*(_open(cmd, case) for _ in chunk))
        if case.mode == "client" and cmd["system"] == "livestream":
            poller = asyncio.ensure_future(_poll_all(clients))
        await asyncio.wait_for(case.ready, cmd.get("ready_timeout", 30.0))
    except Exception as exc:
        emit({"ev": "error", "error": f"{type(exc).__name__}: {exc}"})
        if poller is not None:
            poller.cancel()
        for cl in clients:
            cl.close()
        return True
    emit({"ev": "ready"})
    cpu0, wall0 = time.process_time(), time.monotonic()
    line = await lines.readline()
    if not line:
        return False
    msg = json.loads(line)
    if msg.get("cmd") != "expect":  # aborted
        if poller is not None:
            poller.cancel()
        for cl in clients:
            cl.close()
        return msg.get("cmd") != "quit"
    case.expected = msg["rows"]
    for cl in clients:
        if not cl.finished and cl.rows >= case.expected:
            cl.finish()
    complete = True
    try:
        await asyncio.wait_for(asyncio.shield(case.done), msg.get("timeout", 60.0))
    except asyncio.TimeoutError:
        complete = False
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    firsts = [c.first for c in clients if c.first is not None]
    lasts = [c.last for c in clients if c.last is not None]
    emit({
        "ev": "done",
        "complete": complete,
        "rows": sum(c.rows for c in clients),
        "messages": sum(c.messages for c in clients),
        "min_rows": min(c.rows for c in clients),
        "first": min(firsts) if firsts else None,
        "last": max(lasts) if lasts else None,
        "cpu_s": cpu,
        "wall_s": wall,
        "latency": _percentiles(case.lat_ns) if case.latency else None,
        "frame_rows": [c.frame_rows for c in clients if c.frame_rows is not None],
        "frame_ms": [round(c.frame_s * 1000, 3) for c in clients if c.frame_s is not None],
        "errors": case.errors[:5],
    })
    if poller is not None:
        poller.cancel()
    for cl in clients:
        cl.close()
    await asyncio.sleep(0.05)
    return True


async def amain() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit({"ev": "hello", "pid": __import__("os").getpid()})
    while True:
        line = await reader.readline()
        if not line:
            return
        cmd = json.loads(line)
        if cmd.get("cmd") == "quit":
            return
        if cmd.get("cmd") == "case" and not await run_case(cmd, reader):
            return


if __name__ == "__main__":
    asyncio.run(amain())
