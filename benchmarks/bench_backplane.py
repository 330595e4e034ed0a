"""The Redis backplane: what sharing topics through Redis costs, what two nodes give, and
the Redis memory a retained row takes. All in one run, as ratios.

``python -m benchmarks backplane`` (``--help`` for options; ``--quick`` for a smoke run).

Everything is real and local: one ``redis-server`` (no persistence) on a free loopback
port, server nodes as ``livestream serve [--backplane redis://…]`` subprocesses, the
subscribers in two ``_spine_sub`` processes (many WebSocket clients each, speaking the
protocol by hand and decoding every Arrow frame: see ``_spine_sub.py``), and the
publisher in this process (``ls.connect(node).publish(...)``, so every row crosses a
socket into the node as it would in production).

Measurements
------------
cost (1 node on Redis against 1 node in memory)
    latency: ``--latency-subs`` subscribers, 100-row batches at ``--latency-rate`` rows/s
    for ``--latency-seconds``; each (batch, subscriber) is one sample,
    ``time.time_ns()`` after decoding minus the batch's ``ts`` (stamped just before
    publishing). delivered rows/s: ``--subs`` subscribers, ``--batches`` batches of
    ``--rows`` rows published as fast as the acks come back (``--inflight`` publishes
    in flight); rows decoded by all subscribers ÷ (last decode − first publish).
scaling
    ``--scale-subs`` subscribers (100) on 1 node against half of them on each of
    2 nodes (the publisher on the first), both on Redis, plus 1 node in memory as
    the reference; ``--scale-batches`` batches, delivered rows/s as above. Subscriber processes are the same two
    in every case, each holding half of the clients.
memory
    Redis ``INFO memory`` ``used_memory`` before and after publishing
    ``--memory-rows`` rows (in ``--rows``-row batches) to one topic retaining them
    all; bytes per retained row, next to the Arrow IPC bytes of the same rows. Then
    as many rows again: retention (``--memory-rows``) trims the log, so memory stays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import add_summary_options, machine_facts, markdown_table, results_dir, write_summary
from ._trades import TradeBatches
from .bench_spine import SubProcess, _merge_latency, _split

DESCRIPTION = ("Redis backplane: 1 node on Redis vs in memory (latency, rows/s), "
               "2 nodes x 50 vs 1 node x 100 subscribers, Redis bytes per retained row")

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESTREAM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _until(pred: Any, timeout: float, what: str) -> Any:
    """Poll ``pred`` (run in a thread: it may do blocking I/O) until truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(pred)
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class Redis:
    """A ``redis-server`` without persistence on a free loopback port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client: Any = None

    async def ready(self) -> None:
        import redis

        self.client = redis.Redis.from_url(self.url)

        def ping() -> bool:
            try:
                return bool(self.client.ping())
            except redis.RedisError:
                return False

        await _until(ping, 30, "redis-server")

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def flush(self) -> None:
        self.client.flushall()

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Node:
    """One ``livestream serve`` subprocess, in memory or on the Redis backplane."""

    def __init__(self, backplane: str | None, retention: int, log: Path) -> None:
        self.port = _free_port()
        self.backplane = backplane
        cmd = [sys.executable, "-m", "livestream.cli", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--retention-rows", str(retention),
               "--send-queue-bytes", str(64 * 2**20), "--log-level", "warning"]
        if backplane:
            cmd += ["--backplane", backplane]
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"node exited with {self.proc.returncode} (log: {self._log.name})")
        try:
            with urllib.request.urlopen(f"{self.http}/health", timeout=2) as resp:
                health = json.loads(resp.read())
        except OSError:
            return False
        if not self.backplane:
            return True
        bp = health.get("backplane")
        return isinstance(bp, dict) and bp.get("connected") is True

    async def ready(self) -> Node:
        await _until(self._ready, 60, f"node on :{self.port}")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# -- one measurement ----------------------------------------------------------------------------


async def measure(subs: list[SubProcess], pub_url: str, sub_urls: list[str], topic: str, *,
                  n: int, rows: int, batches: int | None = None, rate: float | None = None,
                  seconds: float = 0.0, inflight: int = 4, latency: bool = False,
                  timeout: float = 120.0) -> dict[str, Any]:
    """Publish to ``pub_url`` and count what ``n`` subscribers (spread over ``subs``, process
    i connecting to ``sub_urls[i % len(sub_urls)]``) decode. Either ``batches`` as fast as
    acks allow, or ``rate`` rows/s for ``seconds``."""
    import livestream as ls

    res: dict[str, Any] = {"subs": n, "rows": rows, "rate": rate}
    gen = TradeBatches(rows)
    conn = ls.connect(pub_url, backoff=(0.05, 0.5), reuse="new")
    active: list[SubProcess] = []
    try:
        await conn.wait_live(30)
        await asyncio.wait_for(conn.publish(topic, gen.next()), 30)  # schema + warm-up snapshot
        for i, (sp, k) in enumerate(zip(subs, _split(n, len(subs)), strict=False)):
            if k:
                active.append(sp)
                await sp.send({"cmd": "case", "system": "livestream", "mode": "decode",
                               "url": sub_urls[i % len(sub_urls)], "topic": topic, "n": k,
                               "latency": latency})
        for sp in active:
            ev = await sp.recv(90.0)
            if ev.get("ev") != "ready":
                raise RuntimeError(f"subscribers not ready: {ev}")
        t0 = time.monotonic()
        pending: set[asyncio.Future] = set()
        count = 0
        if rate is None:
            assert batches is not None
            for _ in range(batches):
                while len(pending) >= inflight:
                    _done, pending = await asyncio.wait(pending,
                                                        return_when=asyncio.FIRST_COMPLETED)
                    for f in _done:
                        f.result()
                pending.add(asyncio.ensure_future(conn.publish(topic, gen.next())))
                count += 1
        else:
            period = rows / rate
            for i in range(max(1, int(seconds / period))):
                await asyncio.sleep(max(0.0, t0 + i * period - time.monotonic()))
                pending.add(asyncio.ensure_future(conn.publish(topic, gen.next())))
                count += 1
        for f in asyncio.as_completed(list(pending), timeout=timeout):
            (await f)
        t_pub = time.monotonic() - t0
        for sp in active:
            await sp.send({"cmd": "expect", "rows": count * rows, "timeout": timeout})
        dones = [await sp.recv(timeout + 30.0) for sp in active]
        last = max(d["last"] for d in dones if d.get("last") is not None)
        wall = last - t0
        delivered = sum(d["rows"] for d in dones)
        res.update(batches=count, publish_s=t_pub, wall_s=wall, delivered_rows=delivered,
                   expected_rows=count * rows * n,
                   complete=all(d["complete"] for d in dones) and delivered == count * rows * n,
                   rows_per_s=delivered / wall if wall > 0 else 0.0,
                   errors=[e for d in dones for e in d.get("errors", [])])
        if latency:
            res["latency"] = _merge_latency([d["latency"] for d in dones if d.get("latency")])
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
        res["complete"] = False
        for sp in active:
            with contextlib.suppress(Exception):
                await sp.send({"cmd": "abort"})
    finally:
        conn.close()
    return res


def _arrow_bytes_per_row(rows: int) -> float:
    import pyarrow as pa

    df = TradeBatches(rows).next()
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return len(sink.getvalue()) / rows


async def run(a: argparse.Namespace, say: Any) -> dict[str, Any]:
    binary = a.redis_server or shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"redis-server not found ({binary}); install Debian's redis-server")
    work = results_dir(a.out) / "backplane-run"
    work.mkdir(parents=True, exist_ok=True)
    redis = Redis(binary, work)
    subs: list[SubProcess] = []
    nodes: list[Node] = []
    raw: dict[str, Any] = {"cost": {}, "scaling": {}, "memory": {}}

    async def start(backplane: str | None, k: int = 1) -> list[Node]:
        made = [Node(backplane, a.retention, work / f"node-{len(nodes) + i}.log")
                for i in range(k)]
        nodes.extend(made)
        for node in made:
            await node.ready()
        return made

    def stop_all() -> None:
        while nodes:
            nodes.pop().stop()

    try:
        await redis.ready()
        raw["redis_version"] = redis.version()
        subs = [await SubProcess.start() for _ in range(2)]
        case = 0
        for rnd in range(a.repeat):
            # paired cases back to back, their order alternating between rounds (drift in
            # the machine's load then favours neither)
            pair = (("memory", None), ("redis", redis.url))
            for name, bp in (pair if rnd % 2 == 0 else pair[::-1]):
                (node,) = await start(bp)
                case += 1
                lat = await measure(subs[:1], node.url, [node.url], f"lat{case}",
                                    n=a.latency_subs, rows=100, rate=a.latency_rate,
                                    seconds=a.latency_seconds, latency=True)
                case += 1
                thr = await measure(subs, node.url, [node.url], f"thr{case}", n=a.subs,
                                    rows=a.rows, batches=a.batches, inflight=a.inflight)
                stop_all()
                raw["cost"].setdefault(name, []).append({"latency": lat, "throughput": thr})
                say(f"cost[{rnd}] {name}: p50 {lat.get('latency', {}).get('p50_ms', '?')} ms, "
                    f"{thr.get('rows_per_s', 0):,.0f} rows/s {thr.get('error', '')}")
                redis.flush()
            trio = (("1 node in memory", None, 1), ("1 node on Redis", redis.url, 1),
                    ("2 nodes on Redis", redis.url, 2))
            for name, bp, k in (trio if rnd % 2 == 0 else trio[::-1]):
                made = await start(bp, k)
                case += 1
                r = await measure(subs, made[0].url, [n.url for n in made], f"scale{case}",
                                  n=a.scale_subs, rows=a.rows, batches=a.scale_batches,
                                  inflight=a.inflight)
                stop_all()
                raw["scaling"].setdefault(name, []).append(r)
                say(f"scaling[{rnd}] {name}: {r.get('rows_per_s', 0):,.0f} rows/s "
                    f"{r.get('error', '')}")
                redis.flush()
        # memory: one topic retaining --memory-rows rows
        import livestream as ls

        (node,) = await start(redis.url)
        conn = ls.connect(node.url, reuse="new")
        await conn.wait_live(30)
        gen = TradeBatches(a.rows)
        n_batches = max(1, a.memory_rows // a.rows)
        await asyncio.wait_for(conn.publish("mem_warm", gen.next()), 30)  # the node's own keys
        before = redis.used_memory()
        for _ in range(n_batches):
            await asyncio.wait_for(conn.publish("mem", gen.next()), 30)
        after = redis.used_memory()
        for _ in range(n_batches):
            await asyncio.wait_for(conn.publish("mem", gen.next()), 30)
        after2 = redis.used_memory()
        conn.close()
        stop_all()
        retained = n_batches * a.rows
        raw["memory"] = {"rows": retained, "batch_rows": a.rows, "used_before": before,
                         "used_after": after, "used_after_twice": after2,
                         "bytes_per_row": (after - before) / retained,
                         "bytes_per_row_twice": (after2 - before) / retained,
                         "arrow_bytes_per_row": _arrow_bytes_per_row(a.rows)}
        say(f"memory: {raw['memory']['bytes_per_row']:.1f} bytes per retained row")
    finally:
        stop_all()
        for sp in subs:
            await sp.close()
        redis.stop()
    return raw


# -- summary --------------------------------------------------------------------------------------


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds of every figure; each ratio is the median over rounds of the
    ratio measured within the round (cases of one round ran back to back, so load drift
    between rounds cancels out)."""
    out: dict[str, Any] = {"cost": {}, "scaling": {}, "memory": raw["memory"]}
    cost = raw["cost"]

    def lat(r: dict, q: str) -> float:
        return r["latency"]["latency"][q]

    for name, runs in cost.items():
        base = cost["memory"]
        out["cost"][name] = {
            "p50_ms": _median([lat(r, "p50_ms") for r in runs]),
            "p99_ms": _median([lat(r, "p99_ms") for r in runs]),
            "samples": sum(r["latency"]["latency"]["samples"] for r in runs),
            "rows_per_s": _median([r["throughput"]["rows_per_s"] for r in runs]),
            "p50_ratio": _median([lat(r, "p50_ms") / lat(b, "p50_ms")
                                  for r, b in zip(runs, base, strict=True)]),
            "p99_ratio": _median([lat(r, "p99_ms") / lat(b, "p99_ms")
                                  for r, b in zip(runs, base, strict=True)]),
            "rows_per_s_ratio": _median([r["throughput"]["rows_per_s"]
                                         / b["throughput"]["rows_per_s"]
                                         for r, b in zip(runs, base, strict=True)]),
            "rounds": [{"p50_ms": lat(r, "p50_ms"), "p99_ms": lat(r, "p99_ms"),
                        "rows_per_s": r["throughput"]["rows_per_s"]} for r in runs],
        }
    ref = raw["scaling"]["1 node on Redis"]
    for name, runs in raw["scaling"].items():
        out["scaling"][name] = {
            "rows_per_s": _median([r["rows_per_s"] for r in runs]),
            "ratio": _median([r["rows_per_s"] / b["rows_per_s"]
                              for r, b in zip(runs, ref, strict=True)]),
            "rounds": [r["rows_per_s"] for r in runs],
        }
    return out


def markdown_tables(s: dict[str, Any], a: argparse.Namespace) -> dict[str, str]:
    cost = markdown_table(
        ["node", "p50 ms", "p99 ms", "p50 ÷ memory", "p99 ÷ memory", "delivered rows/s",
         "rows/s ÷ memory"],
        [[label, f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}", f"{f['p50_ratio']:.2f}",
          f"{f['p99_ratio']:.2f}", f"{f['rows_per_s']:,.0f}", f"{f['rows_per_s_ratio']:.2f}"]
         for label, f in (("in memory", s["cost"]["memory"]),
                          ("on Redis", s["cost"]["redis"]))])
    scaling = markdown_table(
        ["topology", "subscribers", "delivered rows/s", "÷ 1 node on Redis"],
        [[name, f"{a.scale_subs}" if name.startswith("1") else
          f"{a.scale_subs // 2} + {a.scale_subs - a.scale_subs // 2}",
          f"{f['rows_per_s']:,.0f}", f"{f['ratio']:.2f}"]
         for name, f in s["scaling"].items()])
    m = s["memory"]
    memory = markdown_table(
        ["retained rows", "Redis bytes/row", "Arrow IPC bytes/row", "× Arrow",
         "bytes/row after 2× retention published"],
        [[f"{m['rows']:,}", f"{m['bytes_per_row']:.1f}", f"{m['arrow_bytes_per_row']:.1f}",
          f"{m['bytes_per_row'] / m['arrow_bytes_per_row']:.2f}",
          f"{m['bytes_per_row_twice']:.1f}"]])
    return {"cost": cost, "scaling": scaling, "memory": memory}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks backplane",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--subs", type=int, default=10, help="subscribers in the cost case [10]")
    p.add_argument("--scale-subs", type=int, default=100, help="subscribers in scaling [100]")
    p.add_argument("--rows", type=int, default=500, help="rows per batch [500]")
    p.add_argument("--batches", type=int, default=100,
                   help="batches in the cost rows/s case [100]")
    p.add_argument("--scale-batches", type=int, default=40,
                   help="batches in each scaling case [40]")
    p.add_argument("--inflight", type=int, default=4, help="publishes in flight [4]")
    p.add_argument("--latency-subs", type=int, default=10, help="subscribers for latency [10]")
    p.add_argument("--latency-rate", type=float, default=1000.0,
                   help="rows/s for latency (100-row batches; below what a loaded 2-core "
                        "machine sustains, so queueing does not dominate) [1000]")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="[10]")
    p.add_argument("--memory-rows", type=int, default=100_000, help="retained rows [100000]")
    p.add_argument("--retention", type=int, default=None,
                   help="--retention-rows of the nodes [--memory-rows]")
    p.add_argument("--repeat", type=int, default=5, help="rounds; medians are reported [5]")
    p.add_argument("--redis-server", default=None, help="redis-server binary [on PATH]")
    p.add_argument("--out", default=None, help="raw results directory [benchmarks/results]")
    p.add_argument("--quick", action="store_true", help="a smoke run: small and fast")
    add_summary_options(p)
    a = p.parse_args(argv)
    if a.quick:
        a.subs, a.scale_subs, a.batches, a.scale_batches, a.rows = 2, 4, 10, 10, 100
        a.latency_subs, a.latency_seconds, a.memory_rows, a.repeat = 2, 0.5, 2000, 1
    if a.retention is None:
        a.retention = a.memory_rows
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    t0 = time.monotonic()
    print(f"backplane benchmark: {a.repeat} round(s), {os.cpu_count()} CPUs, "
          f"load {machine.get('load_avg')}", flush=True)
    raw = asyncio.run(run(a, lambda s: print(s, flush=True)))
    bad = [r for part in ("cost", "scaling") for runs in raw[part].values() for r in runs
           for r in ((r["latency"], r["throughput"]) if part == "cost" else (r,))
           if not r.get("complete")]
    out = results_dir(a.out)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (out / f"backplane-{stamp}.json").write_text(json.dumps(raw, indent=1, default=str))
    if bad:
        print(f"{len(bad)} case(s) failed or were incomplete: "
              f"{[r.get('error') or r.get('errors') for r in bad]}", file=sys.stderr)
        return 1
    summary = summarise(raw)
    tables = markdown_tables(summary, a)
    for title, table in tables.items():
        print(f"\n{title}\n{table}")
    if not a.no_summary:
        path = write_summary(
            "backplane", argv=argv, started=started, machine_before=machine,
            settings={k: v for k, v in vars(a).items()
                      if k not in ("out", "summary_dir", "no_summary")},
            figures={**summary, "redis_version": raw.get("redis_version")}, tables=tables,
            summary_dir=a.summary_dir, packages=("redis", "tornado", "pandas", "pyarrow"),
            notes=[f"raw per-case figures: benchmarks/results/backplane-{stamp}.json "
                   "(not committed)",
                   "nodes, Redis, the two subscriber processes and the publisher all share "
                   "the machine's cores: two nodes cannot show more than the spare CPU allows"])
        print(f"\nsummary: {path}")
    print(f"({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
