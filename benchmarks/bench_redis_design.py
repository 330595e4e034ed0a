"""The two design choices of the Redis backplane, measured against their alternatives.

1. **Offset assignment**: the Lua script the backplane uses (read ``next``, ``XADD``,
   ``HSET`` in one atomic step) against ``WATCH``/``MULTI``/``EXEC`` (optimistic: retried
   when another publisher changed ``next`` in between), with 1 and 4 publishers on one
   topic, each on its own connection. Figures: batches/s and ack latency p50/p99.
2. **Fan-in**: a reader following the stream with ``XREAD BLOCK`` against one woken by
   pub/sub (``PUBLISH`` after each ``XADD``) that then reads the new entries with
   ``XRANGE``. Figure: time from the publisher's ``XADD`` to the reader holding the entry.

Both start their own ``redis-server`` (``--save '' --appendonly no``) on a free port;
the payload is a typical batch's Arrow bytes (about 2 KB).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

import numpy as np

from . import add_summary_options, machine_facts, markdown_table, write_summary

DESCRIPTION = "Redis backplane design: Lua vs WATCH/MULTI offsets, XREAD vs pub/sub fan-in"

LUA = """
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
local n = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'next', nxt + n)
redis.call('XADD', KEYS[2], (nxt + n) .. '-1', 'o', nxt, 'b', ARGV[2])
return nxt
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: str) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def offsets(url: str, method: str, publishers: int, batches: int, body: bytes
                  ) -> dict[str, Any]:
    import redis.asyncio as aioredis

    clients = [aioredis.Redis.from_url(url) for _ in range(publishers)]
    await clients[0].flushall()
    script = clients[0].register_script(LUA)
    lat: list[float] = []
    retries = 0

    async def lua_pub(r: Any) -> None:
        for _ in range(batches):
            t0 = time.perf_counter()
            await script(keys=["h", "s"], args=[10, body], client=r)
            lat.append(time.perf_counter() - t0)

    async def multi_pub(r: Any) -> None:
        nonlocal retries
        from redis.exceptions import WatchError

        for _ in range(batches):
            t0 = time.perf_counter()
            async with r.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch("h")
                        nxt = int(await pipe.hget("h", "next") or 0)
                        pipe.multi()
                        pipe.hset("h", "next", nxt + 10)
                        pipe.xadd("s", {"o": nxt, "b": body}, id=f"{nxt + 10}-1")
                        await pipe.execute()
                        break
                    except WatchError:
                        retries += 1
            lat.append(time.perf_counter() - t0)

    fn = lua_pub if method == "lua" else multi_pub
    t0 = time.perf_counter()
    await asyncio.gather(*(fn(r) for r in clients))
    elapsed = time.perf_counter() - t0
    n = int(await clients[0].hget("h", "next") or 0) // 10
    assert n == publishers * batches and await clients[0].xlen("s") == n
    for r in clients:
        await r.aclose()
    return {"batches_per_s": n / elapsed, "p50_ms": _pct(lat, 50) * 1e3,
            "p99_ms": _pct(lat, 99) * 1e3, "retries": retries}


async def fanin(url: str, method: str, messages: int, body: bytes) -> dict[str, Any]:
    import redis.asyncio as aioredis

    pub = aioredis.Redis.from_url(url)
    reader = aioredis.Redis.from_url(url)
    await pub.flushall()
    sent: list[float] = []
    lat: list[float] = []
    done = asyncio.Event()

    async def xread_reader() -> None:
        last = "0-0"
        while len(lat) < messages:
            resp = await reader.xread({"f": last}, block=1000, count=100)
            now = time.perf_counter()
            for _, entries in resp or ():
                for eid, fields in entries:
                    lat.append(now - sent[int(fields[b"i"])])
                    last = eid.decode()
        done.set()

    async def pubsub_reader(ps: Any) -> None:
        last = "-"
        while len(lat) < messages:
            msg = await ps.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None:
                continue
            entries = await reader.xrange("f", min=last, max="+")
            now = time.perf_counter()
            for eid, fields in entries:
                lat.append(now - sent[int(fields[b"i"])])
                last = "(" + eid.decode()
        done.set()

    if method == "xread":
        task = asyncio.ensure_future(xread_reader())
        ps = None
    else:
        ps = reader.pubsub()
        await ps.subscribe("wake")
        task = asyncio.ensure_future(pubsub_reader(ps))
    await asyncio.sleep(0.05)  # the reader is blocked in its first read
    for i in range(messages):
        sent.append(time.perf_counter())
        await pub.xadd("f", {"i": i, "b": body})
        if ps is not None:
            await pub.publish("wake", b"1")
        await asyncio.sleep(0.001)  # one message at a time: latency, not throughput
    await asyncio.wait_for(done.wait(), 30)
    await task
    if ps is not None:
        await ps.aclose()
    await pub.aclose()
    await reader.aclose()
    return {"p50_ms": _pct(lat, 50) * 1e3, "p99_ms": _pct(lat, 99) * 1e3, "n": len(lat)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks redis_design",
                                     description=DESCRIPTION)
    parser.add_argument("--batches", type=int, default=2000,
                        help="batches per publisher in the offsets test [2000]")
    parser.add_argument("--messages", type=int, default=2000,
                        help="entries in the fan-in test [2000]")
    parser.add_argument("--quick", action="store_true", help="a few hundred of each (smoke)")
    add_summary_options(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.messages = 200, 200
    started = dt.datetime.now(dt.timezone.utc)
    before = machine_facts()
    body = os.urandom(2048)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_redis(tmp)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            off: dict[str, dict[str, Any]] = {}
            for pubs in (1, 4):
                for method in ("lua", "multi"):
                    off[f"{method}_{pubs}"] = asyncio.run(
                        offsets(url, method, pubs, args.batches, body))
            fan = {m: asyncio.run(fanin(url, m, args.messages, body))
                   for m in ("xread", "pubsub")}
        finally:
            proc.kill()
            proc.wait(10)
    rows = []
    for pubs in (1, 4):
        base = off[f"lua_{pubs}"]["batches_per_s"]
        for method, label in (("lua", "Lua script (used)"), ("multi", "WATCH/MULTI/EXEC")):
            f = off[f"{method}_{pubs}"]
            rows.append([label, pubs, f"{f['batches_per_s']:,.0f}",
                         f"{f['batches_per_s'] / base:.2f}", f"{f['p50_ms']:.2f}",
                         f"{f['p99_ms']:.2f}", f"{f['retries']:,}"])
    t_off = markdown_table(["offset assignment", "publishers", "batches/s", "vs Lua",
                            "ack p50 ms", "ack p99 ms", "retries"], rows)
    base = fan["xread"]["p50_ms"]
    t_fan = markdown_table(
        ["fan-in", "XADD→reader p50 ms", "p99 ms", "p50 vs XREAD"],
        [["XREAD BLOCK (used)", f"{fan['xread']['p50_ms']:.3f}", f"{fan['xread']['p99_ms']:.3f}",
          "1.00"],
         ["pub/sub + XRANGE", f"{fan['pubsub']['p50_ms']:.3f}", f"{fan['pubsub']['p99_ms']:.3f}",
          f"{fan['pubsub']['p50_ms'] / base:.2f}"]])
    print(t_off, "\n", t_fan, sep="\n")
    if not args.no_summary:
        path = write_summary(
            "redis_design", argv=argv, started=started, machine_before=before,
            settings={"batches_per_publisher": args.batches, "messages": args.messages,
                      "body_bytes": len(body)},
            figures={"offsets": off, "fanin": fan},
            tables={"offsets": t_off, "fanin": t_fan}, packages=("redis",),
            notes=["redis-server on loopback, same machine; one asyncio loop for all "
                   "publishers and the reader"],
            summary_dir=args.summary_dir)
        print(f"\nsummary: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
