"""Streaming spine: livestream against hand-written Tornado servers, in the same run.

``python -m benchmarks spine`` (``--help`` for options; ``--quick`` for a smoke run).

Three servers (see ``_spine_servers.py``) run in turn in *this* process, on its
asyncio loop; the subscribers run in a separate process (``_spine_sub.py``:
many Tornado WebSocket clients on one loop), so on a 2-core machine each side
has a core. Everything is loopback; each case starts a fresh server on a free
port and stops it; the subscriber process exits with us.

Measurements
------------
fan-out
    for each batch size (100, 1000 rows) and subscriber count (1, 10, 100),
    each system publishes trades batches for ``--seconds``, as fast as the
    slowest subscriber allows: before each batch the publisher waits while any
    client has more than ``--gate`` bytes not yet handed to the kernel (the
    same gate for all three, read from each connection's Tornado stream).
    **delivered rows/s** = rows decoded by all subscribers together ÷ (time the
    last subscriber decoded its last row − time of the first publish).
    "Decoded" (``mode=decode``): baseline (a) ``orjson.loads`` → list of dicts;
    baseline (b) Arrow IPC → ``pyarrow.Table``; livestream frame header split +
    Arrow IPC → ``pyarrow.Table`` (the wire protocol spoken by hand, no pandas).
real client
    fan-out again, 100-row batches to 1, 10 and 100 subscribers, with livestream's
    subscribers being the real client (``livestream.connect(url).subscribe(topic)``
    each, all in one process: offsets checked, rows kept in each subscription's
    rolling window) against baseline (b)'s bare Tornado + pyarrow decode loop.
    Besides rows/s, the subscriber process's CPU (``time.process_time``) per
    message received, for both.
pandas
    one subscriber, 1000-row batches, until a pandas DataFrame of the newest
    ``--pandas-window`` rows (100k) is ready — the same end point for all three:
    livestream's real ``Connection``/``Subscription`` (rolling ``ColumnWindow``)
    then ``sub.df``; baseline (a) ``pd.DataFrame(orjson.loads(msg))`` per message
    then one ``pd.concat``; baseline (b) ``read_all()`` per message then one
    ``pa.concat_tables(...).to_pandas()`` (see ``_spine_sub.py``).
latency
    publish→receive at a fixed ``--latency-rate`` rows/s (100-row batches) to
    ``--latency-subs`` subscribers: every (batch, subscriber) gives one sample,
    ``time.time_ns()`` after decoding minus the batch's first ``ts`` (stamped
    just before ``publish``). Percentiles over all samples.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import add_summary_options, machine_facts, markdown_table, results_dir, write_summary
from ._spine_servers import LABELS, SYSTEMS, make_target
from ._trades import TradeBatches

DESCRIPTION = ("streaming spine: livestream vs hand-written Tornado JSON / Arrow servers — "
               "fan-out rows/s, pandas ingest, latency")

REPO = Path(__file__).resolve().parent.parent

TARGETS = {
    "fanout_vs_arrow": 1.0,  # ≥ 1.0× baseline (b) at 100 subscribers
    "fanout_vs_json": 3.0,  # ≥ 3× baseline (a) at 100 subscribers
    "pandas_rows_per_s": 1_000_000,  # one subscriber into pandas, 1000-row batches
    "latency_p99_ms": 5.0,  # 100 subscribers at 10k rows/s
    "client_vs_arrow": 1.0,  # ≥ 1.0× baseline (b) with 100 real-client subscribers
}
#: the systems of the real-client cases: livestream's client against the bare loop (b)
CLIENT_SYSTEMS = ("livestream", "arrow")


# -- the subscriber process ------------------------------------------------------------------


class SubProcess:
    """One ``_spine_sub`` process, driven with JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid

    @classmethod
    async def start(cls) -> SubProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks._spine_sub",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(REPO),
            env=env, limit=1 << 22,
        )
        sp = cls(proc)
        hello = await sp.recv(60.0)
        if hello.get("ev") != "hello":
            raise RuntimeError(f"subscriber process said {hello!r}")
        return sp

    async def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()

    async def recv(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"subscriber process {self.pid} exited "
                                   f"(code {self.proc.returncode})")
            try:
                return json.loads(line)
            except ValueError:
                continue  # stray output

    async def close(self) -> None:
        if self.proc.returncode is not None:
            return
        try:
            await self.send({"cmd": "quit"})
            await asyncio.wait_for(self.proc.wait(), 5.0)
        except (Exception, asyncio.TimeoutError):
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


def _split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


# -- one measurement ----------------------------------------------------------------------------


async def measure(
    subs: list[SubProcess],
    system: str,
    *,
    mode: str,
    n: int,
    batch: int,
    seconds: float,
    gate: int,
    rate: float | None = None,
    latency: bool = False,
    timeout: float = 60.0,
    window: int = 100_000,
) -> dict[str, Any]:
    """Run one case; returns its figures (``error`` set if it could not run)."""
    topic = "trades"
    target = make_target(system)
    await target.start()
    res: dict[str, Any] = {"system": system, "mode": mode, "subs": n, "batch": batch,
                           "rate": rate}
    active: list[SubProcess] = []
    try:
        batches = TradeBatches(batch)
        target.prepare(topic, batches.next())  # livestream: schema + the snapshot subscribers get
        for sp, k in zip(subs, _split(n, len(subs)), strict=False):
            if k:
                active.append(sp)
                await sp.send({"cmd": "case", "system": system, "mode": mode, "url": target.url,
                               "topic": topic, "n": k, "latency": latency})
        for sp in active:
            ev = await sp.recv(90.0)
            if ev.get("ev") != "ready":
                raise RuntimeError(f"subscribers not ready: {ev}")
        deadline = time.monotonic() + 10.0
        while target.subscribers(topic) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {target.subscribers(topic)} of {n} subscribed")
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)

        cpu0 = time.process_time()
        t0 = time.monotonic()
        count = 0
        waited = 0
        calls: list[float] = []  # how long each publish() call took (server-side fan-out)
        if rate is None:
            end = t0 + seconds
            while time.monotonic() < end:
                if target.backlog(topic) > gate:
                    waited += 1
                    await asyncio.sleep(0.0005)
                    continue
                df = batches.next()
                c0 = time.perf_counter()
                target.publish(topic, df)
                calls.append(time.perf_counter() - c0)
                count += 1
                await asyncio.sleep(0)
        else:
            period = batch / rate
            total = max(1, int(seconds / period))
            for i in range(total):
                delay = t0 + i * period - time.monotonic()
                await asyncio.sleep(max(0.0, delay))
                df = batches.next()
                c0 = time.perf_counter()
                target.publish(topic, df)
                calls.append(time.perf_counter() - c0)
                count += 1
        t_pub = time.monotonic() - t0
        for sp in active:
            await sp.send({"cmd": "expect", "rows": count * batch, "timeout": timeout})
        dones = [await sp.recv(timeout + 30.0) for sp in active]
        cpu_srv = time.process_time() - cpu0
        last = max(d["last"] for d in dones if d.get("last") is not None)
        wall = last - t0
        delivered = sum(d["rows"] for d in dones)
        res.update(
            batches=count,
            publish_s=t_pub,
            wall_s=wall,
            delivered_rows=delivered,
            expected_rows=count * batch * n,
            complete=all(d["complete"] for d in dones),
            rows_per_s=delivered / wall if wall > 0 else 0.0,
            published_rows_per_s=count * batch / t_pub,
            server_cpu=cpu_srv / wall if wall > 0 else 0.0,
            subscriber_cpu=sum(d["cpu_s"] for d in dones) / max(d["wall_s"] for d in dones),
            gate_waits=waited,
            publish_call_ms=_pcts(calls),
            errors=[e for d in dones for e in d.get("errors", [])],
            messages=sum(d.get("messages", 0) for d in dones),
            subscriber_cpu_s=sum(d["cpu_s"] for d in dones),
        )
        if res["messages"]:
            res["subscriber_cpu_us_per_message"] = res["subscriber_cpu_s"] / res["messages"] * 1e6
            res["rows_per_message"] = delivered / res["messages"]
        if mode == "pandas":
            rows = [r for d in dones for r in d.get("frame_rows", [])]
            res.update(frame_rows=rows, frame_ms=[m for d in dones for m in d.get("frame_ms", [])],
                       window=window)
            # the DataFrame each subscriber ended with holds the newest rows it received
            # (livestream's also holds the warm-up snapshot: one batch more)
            res["complete"] = res["complete"] and len(rows) == n and all(
                min(window, delivered // n) <= r <= min(window, delivered // n + batch)
                for r in rows)
        if latency:
            lat = [d["latency"] for d in dones if d.get("latency")]
            res["latency"] = _merge_latency(lat)
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
        for sp in active:  # let a waiting subscriber process move on
            with contextlib.suppress(Exception):
                await sp.send({"cmd": "abort"})
    finally:
        await target.stop()
    return res


def _pcts(secs: list[float]) -> dict:
    if not secs:
        return {}
    ms = sorted(x * 1000.0 for x in secs)
    at = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {"p50": at(0.5), "p99": at(0.99), "max": ms[-1], "mean": sum(ms) / len(ms)}


def _merge_latency(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    # several subscriber processes: weight the percentiles by sample count (approximate)
    total = sum(p["samples"] for p in parts)
    out = {"samples": total}
    for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms"):
        out[k] = sum(p[k] * p["samples"] for p in parts) / total
    out["max_ms"] = max(p["max_ms"] for p in parts)
    return out


# -- the whole run ------------------------------------------------------------------------------


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks spine", description=DESCRIPTION)
    p.add_argument("--subs", type=_ints, default=[1, 10, 100],
                   help="subscriber counts for fan-out (default 1,10,100)")
    p.add_argument("--batches", type=_ints, default=[100, 1000],
                   help="rows per batch for fan-out (default 100,1000)")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="publishing time per fan-out case (default 2)")
    p.add_argument("--gate", type=int, default=256 * 1024,
                   help="publisher waits while a client has more unflushed bytes (default 256 KiB)")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help="systems to run (default livestream,json,arrow)")
    p.add_argument("--client-subs", type=_ints, default=[1, 10, 100],
                   help="subscriber counts of the real-client cases (default 1,10,100)")
    p.add_argument("--client-batch", type=int, default=100)
    p.add_argument("--client-seconds", type=float, default=2.0,
                   help="publishing time per real-client case (0 skips them)")
    p.add_argument("--pandas-seconds", type=float, default=2.0,
                   help="publishing time of the 1-subscriber pandas case (0 skips it)")
    p.add_argument("--pandas-batch", type=int, default=1000)
    p.add_argument("--pandas-window", type=int, default=100_000,
                   help="rows of the DataFrame every system ends with (default 100000)")
    p.add_argument("--latency-subs", type=_ints, default=[1, 100],
                   help="subscriber counts for the latency cases (default 1,100)")
    p.add_argument("--latency-rate", type=float, default=10_000, help="rows/s (default 10000)")
    p.add_argument("--latency-batch", type=int, default=100)
    p.add_argument("--latency-seconds", type=float, default=3.0, help="(0 skips latency)")
    p.add_argument("--sub-procs", type=int, default=1,
                   help="subscriber processes sharing the connections (default 1: 2 cores)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of every case; figures are medians, spreads min–max")
    p.add_argument("--out", default=None, help="results directory (default benchmarks/results)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 subscriber, 100-row batches, a fraction of a second each "
                        "(writes no summary unless --summary-dir is given)")
    add_summary_options(p)
    a = p.parse_args(argv)
    if a.quick:
        if a.summary_dir is None:
            a.no_summary = True
        a.subs, a.batches, a.seconds = [1], [100], 0.3
        a.pandas_seconds, a.pandas_batch = 0.3, 100
        a.client_subs, a.client_seconds = [1], 0.3
        a.latency_subs, a.latency_seconds, a.latency_rate = [1], 0.3, 2000
        a.repeat = 1
    a.systems = [s for s in a.systems.split(",") if s]
    for s in a.systems:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    return a


async def run(a: argparse.Namespace, log: Any) -> dict:
    subs = [await SubProcess.start() for _ in range(max(1, a.sub_procs))]
    log(f"subscriber process(es): {', '.join(str(s.pid) for s in subs)}; server process {os.getpid()}")
    fanout: list[dict] = []
    pandas: list[dict] = []
    latency: list[dict] = []
    client: list[dict] = []
    try:
        for rnd in range(a.repeat):
            order = a.systems if rnd % 2 == 0 else list(reversed(a.systems))
            for batch in a.batches:
                for n in a.subs:
                    for system in order:
                        r = await measure(subs, system, mode="decode", n=n, batch=batch,
                                          seconds=a.seconds, gate=a.gate)
                        r["round"] = rnd
                        fanout.append(r)
                        log(_line("fan-out", r))
            if a.client_seconds > 0:
                for n in a.client_subs:
                    for system in [s for s in order if s in CLIENT_SYSTEMS]:
                        r = await measure(subs, system, mode="client", n=n,
                                          batch=a.client_batch, seconds=a.client_seconds,
                                          gate=a.gate)
                        r["round"] = rnd
                        client.append(r)
                        log(_line("client", r))
            if a.pandas_seconds > 0:
                for system in order:
                    r = await measure(subs, system, mode="pandas", n=1, batch=a.pandas_batch,
                                      seconds=a.pandas_seconds, gate=a.gate,
                                      window=a.pandas_window)
                    r["round"] = rnd
                    pandas.append(r)
                    log(_line("pandas", r))
            if a.latency_seconds > 0:
                for n in a.latency_subs:
                    for system in order:
                        r = await measure(subs, system, mode="decode", n=n,
                                          batch=a.latency_batch, seconds=a.latency_seconds,
                                          gate=a.gate, rate=a.latency_rate, latency=True)
                        r["round"] = rnd
                        latency.append(r)
                        log(_line("latency", r))
    finally:
        for s in subs:
            await s.close()
    return {"fanout": fanout, "pandas": pandas, "latency": latency, "client": client}


def _line(kind: str, r: dict) -> str:
    head = f"  {kind:8s} {r['system']:10s} subs={r['subs']:<4d} batch={r['batch']:<5d}"
    if "error" in r:
        return f"{head} ERROR {r['error']}"
    s = f"{head} {r['rows_per_s'] / 1e6:7.3f} M rows/s  (srv cpu {r['server_cpu']:.0%}, " \
        f"sub cpu {r['subscriber_cpu']:.0%}"
    if r.get("subscriber_cpu_us_per_message") is not None:
        s += f", {r['subscriber_cpu_us_per_message']:.1f} µs/msg"
    if r.get("rows_per_message") is not None:
        s += f", {r['rows_per_message']:.0f} rows/msg"
    if r.get("wall_s") is not None:
        s += f", published {r['publish_s']:.1f} s, delivered {r['wall_s']:.1f} s"
    s += ")"
    if not r["complete"]:
        s += " INCOMPLETE"
    if r.get("latency"):
        lat = r["latency"]
        s += f"  p50 {lat['p50_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms"
    return s


# -- summarising --------------------------------------------------------------------------------

_OURS = ("livestream",)
_BASES = ("json", "arrow")
_SHORT = {"livestream": "ls", "json": "(a)", "arrow": "(b)"}
_TICK = {"livestream": "livestream", "json": "(a) json", "arrow": "(b) arrow"}


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _spread(xs: list[float]) -> tuple[float, float, float]:
    return (_med(xs), min(xs), max(xs)) if xs else (float("nan"),) * 3


def summarise(raw: dict, a: argparse.Namespace) -> dict:
    def rate(rows: list[dict], **key: Any) -> dict[int, float]:
        out = {}
        for r in rows:
            if all(r.get(k) == v for k, v in key.items()) and "error" not in r:
                out[r["round"]] = r["rows_per_s"]
        return out

    fan = []
    for batch in a.batches:
        for n in a.subs:
            row: dict[str, Any] = {"batch": batch, "subs": n}
            per = {s: rate(raw["fanout"], system=s, batch=batch, subs=n) for s in a.systems}
            for s in a.systems:
                row[s] = _spread(list(per[s].values()))
            for ours in _OURS:
                for base in _BASES:
                    if ours in per and base in per:
                        ratios = [per[ours][k] / per[base][k]
                                  for k in per[ours] if k in per[base] and per[base][k]]
                        row[f"{ours}_vs_{base}"] = _spread(ratios)
            # how each system got there, per round: CPU of both sides, messages, how long the
            # subscribers took to receive what was published for `seconds`
            detail: dict[str, dict] = {}
            for s in a.systems:
                rs = [r for r in raw["fanout"] if r["system"] == s and r["batch"] == batch
                      and r["subs"] == n and "error" not in r]
                detail[s] = {k: [r.get(k) for r in rs] for k in (
                    "server_cpu", "subscriber_cpu", "subscriber_cpu_us_per_message",
                    "rows_per_message", "publish_s", "wall_s", "gate_waits")}
            row["detail"] = detail
            fan.append(row)
    pan: dict[str, Any] = {}
    for s in a.systems:
        pan[s] = _spread(list(rate(raw["pandas"], system=s).values()))
        pan[f"{s}_frame_ms"] = _spread([m for r in raw["pandas"] if r["system"] == s
                                        and "error" not in r for m in r.get("frame_ms", [])])
    for base in _BASES:
        if "livestream" in a.systems and base in a.systems:
            per = {s: rate(raw["pandas"], system=s) for s in ("livestream", base)}
            pan[f"livestream_vs_{base}"] = _spread(
                [per["livestream"][k] / per[base][k] for k in per["livestream"]
                 if per[base].get(k)])
    lat = []
    for n in a.latency_subs:
        row = {"subs": n, "rate": a.latency_rate, "batch": a.latency_batch}
        for s in a.systems:
            rs = [r for r in raw["latency"] if r["system"] == s and r["subs"] == n
                  and "error" not in r and r.get("latency", {}).get("samples")]
            row[s] = {k: _spread([r["latency"][k] for r in rs])
                      for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")}
            row[s]["publish_p50_ms"] = _spread([r["publish_call_ms"]["p50"] for r in rs])
            row[s]["publish_p99_ms"] = _spread([r["publish_call_ms"]["p99"] for r in rs])
        lat.append(row)

    cli = []
    for n in a.client_subs if a.client_seconds > 0 else []:
        row = {"subs": n, "batch": a.client_batch}
        per = {s: rate(raw["client"], system=s, subs=n) for s in CLIENT_SYSTEMS
               if s in a.systems}
        for s in per:
            row[s] = _spread(list(per[s].values()))
            row[f"{s}_cpu_us"] = _spread([r["subscriber_cpu_us_per_message"]
                                          for r in raw["client"] if r["system"] == s
                                          and r["subs"] == n and "error" not in r
                                          and r.get("subscriber_cpu_us_per_message")])
        if len(per) == 2:
            row["livestream_vs_arrow"] = _spread(
                [per["livestream"][k] / per["arrow"][k] for k in per["livestream"]
                 if per["arrow"].get(k)])
        cli.append(row)

    targets = []
    top = max(a.subs) if a.subs else None
    for ours in _OURS:
        if ours not in a.systems:
            continue
        who = "" if ours == "livestream" else f" [{LABELS[ours]}]"
        for row in fan:
            if row["subs"] != top or top != 100:
                continue
            for base, key in (("arrow", "fanout_vs_arrow"), ("json", "fanout_vs_json")):
                if f"{ours}_vs_{base}" in row:
                    v = row[f"{ours}_vs_{base}"][0]
                    targets.append({"target": f"{top} subs, {row['batch']}-row batches: "
                                              f"÷ {LABELS[base]} ≥ {TARGETS[key]}×{who}",
                                    "value": v, "goal": TARGETS[key], "met": v >= TARGETS[key]})
        if a.pandas_batch == 1000 and a.pandas_seconds > 0:
            v = pan[ours][0]
            targets.append({"target": f"1 subscriber into pandas, 1000-row batches ≥ 1 M rows/s"
                                      f"{who}",
                            "value": v, "goal": TARGETS["pandas_rows_per_s"],
                            "met": v >= TARGETS["pandas_rows_per_s"]})
        for row in cli:
            if row["subs"] == 100 and "livestream_vs_arrow" in row and ours == "livestream":
                v = row["livestream_vs_arrow"][0]
                targets.append({"target": f"100 real-client subscribers, {row['batch']}-row "
                                          f"batches: ÷ {LABELS['arrow']} ≥ "
                                          f"{TARGETS['client_vs_arrow']}×",
                                "value": v, "goal": TARGETS["client_vs_arrow"],
                                "met": v >= TARGETS["client_vs_arrow"]})
        for row in lat:
            if row["subs"] == 100:
                v = row[ours]["p99_ms"][0]
                targets.append({"target": f"p99 latency, 100 subs at {a.latency_rate:,.0f} "
                                          f"rows/s ≤ {TARGETS['latency_p99_ms']} ms{who}",
                                "value": v, "goal": TARGETS["latency_p99_ms"],
                                "met": v <= TARGETS["latency_p99_ms"]})
    return {"fanout": fan, "pandas": pan, "latency": lat, "client": cli, "targets": targets}


def _fmt_rate(t: tuple[float, float, float], spread: bool) -> str:
    m, lo, hi = t
    if m != m:  # nan
        return "—"
    s = f"{m / 1e6:.3f} M"
    if spread:
        s += f" [{lo / 1e6:.2f}–{hi / 1e6:.2f}]"
    return s


def _fmt_ratio(t: tuple[float, float, float] | None, spread: bool) -> str:
    if t is None or t[0] != t[0]:
        return "—"
    s = f"{t[0]:.2f}×"
    if spread:
        s += f" [{t[1]:.2f}–{t[2]:.2f}]"
    return s


def print_tables(summary: dict, a: argparse.Namespace, console: Any) -> None:
    from rich.table import Table

    spread = a.repeat > 1
    t = Table(title="Fan-out: delivered rows/s (all subscribers together)")
    t.add_column("batch", justify="right")
    t.add_column("subs", justify="right")
    for s in a.systems:
        t.add_column(LABELS[s], justify="right")
    pairs = [(o, b) for o in _OURS for b in _BASES if o in a.systems and b in a.systems]
    for o, b in pairs:
        t.add_column(f"{_SHORT[o]} ÷ {_SHORT[b]}", justify="right")
    for row in summary["fanout"]:
        cells = [str(row["batch"]), str(row["subs"])]
        cells += [_fmt_rate(row[s], spread) for s in a.systems]
        cells += [_fmt_ratio(row.get(f"{o}_vs_{b}"), spread) for o, b in pairs]
        t.add_row(*cells)
    console.print(t)

    if summary["client"]:
        t = Table(title=f"Real client, {a.client_batch}-row batches: delivered rows/s; "
                        "subscriber CPU µs per message")
        t.add_column("subs", justify="right")
        for col in ("livestream client", "(b) bare loop", "ls ÷ (b)", "ls µs/msg",
                    "(b) µs/msg"):
            t.add_column(col, justify="right")
        for row in summary["client"]:
            t.add_row(*_client_cells(row, spread, md=False))
        console.print(t)

    if a.pandas_seconds > 0:
        t = Table(title=f"One subscriber into pandas, {a.pandas_batch}-row batches: rows/s")
        for s in a.systems:
            t.add_column(LABELS[s], justify="right")
        t.add_row(*[_fmt_rate(summary["pandas"][s], spread) for s in a.systems])
        console.print(t)

    if a.latency_seconds > 0:
        t = Table(title=f"Publish→receive latency at {a.latency_rate:,.0f} rows/s "
                        f"({a.latency_batch}-row batches), ms: p50 / p99 / max "
                        "(server side: the publish() call, p50 / p99)")
        t.add_column("subs", justify="right")
        for s in a.systems:
            t.add_column(LABELS[s], justify="right")
        for row in summary["latency"]:
            cells = [str(row["subs"])]
            for s in a.systems:
                v = row[s]
                if v["p50_ms"][0] != v["p50_ms"][0]:
                    cells.append("—")
                else:
                    cells.append(f"{v['p50_ms'][0]:.2f} / {v['p99_ms'][0]:.2f} / "
                                 f"{v['max_ms'][0]:.1f}  (publish() {v['publish_p50_ms'][0]:.2f}"
                                 f" / {v['publish_p99_ms'][0]:.2f})")
            t.add_row(*cells)
        console.print(t)

    if summary["targets"]:
        t = Table(title="Targets")
        t.add_column("target")
        t.add_column("measured", justify="right")
        t.add_column("", justify="center")
        for tg in summary["targets"]:
            v = tg["value"]
            shown = f"{v / 1e6:.3f} M rows/s" if tg["goal"] >= 1000 else (
                f"{v:.2f} ms" if "latency" in tg["target"] else f"{v:.2f}×")
            t.add_row(tg["target"], shown, "[green]met[/]" if tg["met"] else "[red]missed[/]")
        console.print(t)


def _client_cells(row: dict, spread: bool, md: bool) -> list[str]:
    def us(t: tuple[float, float, float] | None) -> str:
        return "—" if t is None or t[0] != t[0] else f"{t[0]:.1f}"

    fmt = _md_rate if md else (lambda t: _fmt_rate(t, spread))
    return [str(row["subs"]), fmt(row.get("livestream", (float("nan"),) * 3)),
            fmt(row.get("arrow", (float("nan"),) * 3)),
            _md_ratio(row.get("livestream_vs_arrow"), spread),
            us(row.get("livestream_cpu_us")), us(row.get("arrow_cpu_us"))]


def _md_rate(t: tuple[float, float, float]) -> str:
    m = t[0]
    if m != m:
        return "—"
    return f"{m / 1e6:.3g}"


def _md_ratio(t: tuple[float, float, float] | None, spread: bool) -> str:
    if t is None or t[0] != t[0]:
        return "—"
    return f"{t[0]:.2f}×" + (f" [{t[1]:.2f}–{t[2]:.2f}]" if spread else "")


def markdown_tables(summary: dict, a: argparse.Namespace) -> dict[str, str]:
    """The tables docs/benchmarks.md quotes (M rows/s medians; ratios with [min–max] over
    rounds when there are several)."""
    spread = a.repeat > 1
    systems = [s for s in a.systems]
    pairs = [(o, b) for o in _OURS for b in _BASES if o in systems and b in systems]
    tables: dict[str, str] = {}
    rows = []
    for row in summary["fanout"]:
        rows.append([row["batch"], row["subs"], *[_md_rate(row[s]) for s in systems],
                     *[_md_ratio(row.get(f"{o}_vs_{b}"), spread) for o, b in pairs]])
    tables["fanout"] = markdown_table(
        ["batch", "subs", *[LABELS[s] for s in systems],
         *[f"{_SHORT[o]} ÷ {_SHORT[b]}" for o, b in pairs]], rows, "r" * (2 + len(systems)
                                                                        + len(pairs)))
    drows = []
    for row in summary["fanout"]:
        for s in systems:
            d = row.get("detail", {}).get(s)
            if not d or not d["wall_s"]:
                continue
            drows.append([row["batch"], row["subs"], LABELS[s], _md_span(d["server_cpu"], 100, "%"),
                          _md_span(d["subscriber_cpu"], 100, "%"),
                          _md_span(d["subscriber_cpu_us_per_message"], 1, ""),
                          _md_span(d["rows_per_message"], 1, ""),
                          _md_span(d["wall_s"], 1, "", digits=1)])
    if drows:
        tables["fanout_detail"] = markdown_table(
            ["batch", "subs", "system", "server CPU", "subscriber CPU",
             "subscriber CPU µs/msg", "rows/msg", f"last row received (s; published for "
             f"{a.seconds:g} s)"], drows, "rrlrrrrr")
    if summary["client"]:
        tables["client"] = markdown_table(
            ["subs", "livestream client (M rows/s)", f"{LABELS['arrow']}: bare decode loop "
             "(M rows/s)", "ls ÷ (b)", "livestream client CPU µs/msg",
             "(b) bare loop CPU µs/msg"],
            [_client_cells(row, spread, md=True) for row in summary["client"]], "r" * 6)
    cases = []
    if a.pandas_seconds > 0:
        pan = summary["pandas"]
        cases.append([f"1 subscriber, {a.pandas_batch}-row batches, until a DataFrame of the "
                      f"newest {a.pandas_window:,} rows exists (M rows/s)",
                      *[_md_rate(pan[s]) for s in systems]])
        cases.append(["… livestream ÷ this system (per-round ratios)",
                      *["—" if s == "livestream" else _md_ratio(pan.get(f"livestream_vs_{s}"),
                                                                 spread) for s in systems]])
        cases.append(["… of which building that DataFrame once at the end (ms)",
                      *[f"{pan[f'{s}_frame_ms'][0]:.1f}" if pan[f"{s}_frame_ms"][0]
                        == pan[f"{s}_frame_ms"][0] else "—" for s in systems]])
    for row in summary["latency"]:
        cases.append([f"latency p50 / p99, {row['subs']} subscriber{'s' if row['subs'] > 1 else ''}"
                      f" (ms)", *[_md_lat(row[s], "p50_ms", "p99_ms") for s in systems]])
    for row in summary["latency"]:
        if row["subs"] == max(r["subs"] for r in summary["latency"]):
            subs = f"{row['subs']} subscriber{'s' if row['subs'] > 1 else ''}"
            cases.append([f"server `publish()` p50 / p99, {subs}, "
                          f"{a.latency_batch}-row (ms)",
                          *[_md_lat(row[s], "publish_p50_ms", "publish_p99_ms") for s in systems]])
    if cases:
        tables["cases"] = markdown_table(["case", *[LABELS[s] for s in systems]], cases)
    if summary["targets"]:
        trows = []
        for tg in summary["targets"]:
            v = tg["value"]
            shown = f"{v / 1e6:.2f} M rows/s" if tg["goal"] >= 1000 else (
                f"{v:.2f} ms" if "latency" in tg["target"] else f"{v:.2f}×")
            trows.append([tg["target"], shown, "met" if tg["met"] else "**missed**"])
        tables["targets"] = markdown_table(["target", "measured", ""], trows, "lrl")
    return tables


def _md_span(xs: list, scale: float, unit: str, digits: int = 0) -> str:
    """``lo–hi`` over the rounds (one value if they agree at this precision)."""
    vals = [x * scale for x in xs if x is not None]
    if not vals:
        return "—"
    lo, hi = f"{min(vals):.{digits}f}", f"{max(vals):.{digits}f}"
    return f"{lo}{unit}" if lo == hi else f"{lo}–{hi}{unit}"


def _md_lat(v: dict, lo: str, hi: str) -> str:
    if v[lo][0] != v[lo][0]:
        return "—"
    return f"{v[lo][0]:.2f} / {v[hi][0]:.2f}"


def plot(summary: dict, a: argparse.Namespace, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    colors = {"livestream": "#1f77b4", "json": "#d62728", "arrow": "#2ca02c"}
    panels = len(a.batches) + (1 if a.pandas_seconds > 0 else 0) + (
        1 if a.latency_seconds > 0 else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.0), squeeze=False)
    axes = list(axes[0])
    width = 0.8 / max(1, len(a.systems))
    for batch in a.batches:
        ax = axes.pop(0)
        rows = [r for r in summary["fanout"] if r["batch"] == batch]
        for j, s in enumerate(a.systems):
            xs = [i + (j - (len(a.systems) - 1) / 2) * width for i in range(len(rows))]
            ys = [r[s][0] / 1e6 for r in rows]
            lo = [max(0.0, (r[s][0] - r[s][1]) / 1e6) for r in rows]
            hi = [max(0.0, (r[s][2] - r[s][0]) / 1e6) for r in rows]
            ax.bar(xs, ys, width, label=LABELS[s], color=colors[s],
                   yerr=[lo, hi] if a.repeat > 1 else None)
        ax.set_xticks(range(len(rows)), [str(r["subs"]) for r in rows])
        ax.set_xlabel("subscribers")
        ax.set_ylabel("delivered M rows/s")
        ax.set_title(f"fan-out, {batch}-row batches")
        ax.legend(fontsize=7)
    if a.pandas_seconds > 0:
        ax = axes.pop(0)
        ax.bar([_TICK[s] for s in a.systems],
               [summary["pandas"][s][0] / 1e6 for s in a.systems],
               color=[colors[s] for s in a.systems])
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_ylabel("M rows/s")
        ax.set_title(f"1 subscriber into pandas, {a.pandas_batch}-row")
        ax.tick_params(axis="x", labelsize=8)
    if a.latency_seconds > 0:
        ax = axes.pop(0)
        rows = summary["latency"]
        labels = []
        vals50, vals99, cols = [], [], []
        for row in rows:
            for s in a.systems:
                labels.append(f"{s}\n{row['subs']} subs")
                vals50.append(row[s]["p50_ms"][0])
                vals99.append(row[s]["p99_ms"][0])
                cols.append(colors[s])
        xs = range(len(labels))
        ax.bar(xs, vals99, color=cols, alpha=0.45, label="p99")
        ax.bar(xs, vals50, color=cols, label="p50")
        ax.axhline(TARGETS["latency_p99_ms"], color="grey", ls="--", lw=1)
        ax.set_xticks(list(xs), labels, fontsize=6)
        ax.set_ylabel("ms")
        ax.set_title(f"latency at {a.latency_rate:,.0f} rows/s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _versions() -> dict:
    import numpy
    import orjson
    import pandas
    import pyarrow
    import tornado

    import livestream

    return {"python": platform.python_version(), "livestream": livestream.__version__,
            "tornado": tornado.version, "pandas": pandas.__version__,
            "pyarrow": pyarrow.__version__, "numpy": numpy.__version__,
            "orjson": orjson.__version__}


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    a = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=132)
    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    t0 = time.monotonic()
    console.print(f"[bold]spine benchmark[/] — systems {', '.join(a.systems)}; "
                  f"fan-out subs {a.subs} × batches {a.batches}, {a.seconds:g} s each; "
                  f"{a.repeat} round(s); {os.cpu_count()} CPUs")
    raw = asyncio.run(run(a, lambda s: console.print(s, highlight=False)))
    summary = summarise(raw, a)
    print_tables(summary, a, console)
    out = results_dir(a.out)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    cmd = "python -m benchmarks spine" + (" " + shlex.join(argv) if argv else "")
    doc = {
        "benchmark": "spine",
        "command": cmd,
        "started": started.isoformat(),
        "duration_s": time.monotonic() - t0,
        "machine": machine,
        "versions": _versions(),
        "settings": {k: v for k, v in vars(a).items() if k not in ("out",)},
        "targets_goal": TARGETS,
        "summary": summary,
        "raw": raw,
    }
    path = out / f"spine-{stamp}.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    (out / "spine-latest.json").write_text(path.read_text())
    msg = f"results: {path}"
    if not a.no_plot:
        png = plot(summary, a, out / f"spine-{stamp}.png")
        if png is not None:
            (out / "spine-latest.png").write_bytes(png.read_bytes())
            msg += f"\nplot:    {png}"
        else:
            msg += "\nplot:    skipped (pip install matplotlib)"
    errors = [r for part in raw.values() for r in part if "error" in r or not r.get("complete")]
    if not a.no_summary:
        if errors:
            msg += "\nsummary: not written (some cases failed or were incomplete)"
        else:
            tables = markdown_tables(summary, a)
            spath = write_summary(
                "spine", argv=argv, started=started, machine_before=machine,
                settings={k: v for k, v in vars(a).items()
                          if k not in ("out", "summary_dir", "no_summary", "no_plot")},
                figures={**summary, "targets_goal": TARGETS}, tables=tables,
                summary_dir=a.summary_dir,
                packages=("tornado", "pandas", "pyarrow", "numpy", "orjson"),
                notes=[f"raw per-case figures: benchmarks/results/spine-{stamp}.json "
                       "(not committed)"])
            msg += f"\nsummary: {spath}"
    console.print(msg + f"\n({time.monotonic() - t0:.0f} s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
