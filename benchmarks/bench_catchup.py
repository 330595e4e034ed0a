"""Catching up: a client that stopped reading for a while, with and without merged appends.

``python -m benchmarks catchup`` (``--quick`` for a smoke run).

One livestream server in this process, one real client (``livestream.connect`` →
``subscribe``, Arrow frames) in a subscriber process (``benchmarks/_catchup_sub.py``).
The client blocks its loop for ``--pause`` seconds, as a notebook kernel busy with a cell
or a long redraw does; meanwhile the server publishes ``--batches`` batches of
``--rows`` trades, as fast as it can. Then the client reads again. Measured from the end
of the pause until every row is in: the wall time, the client process's CPU time, and
the messages it received. Three servers, alternating in every round:

* **before**: ``kernel_unsent_bytes=0, merge_bytes=0`` — the kernel's send buffer takes
  what it can, every append goes out as it was published (the server before issue 13's
  last change);
* **queue only**: ``merge_bytes=0`` — the kernel keeps at most 64 KiB unsent
  (``TCP_NOTSENT_LOWAT``), the rest waits in the server's queue, unmerged;
* **merged** (the defaults): the appends waiting in the server's queue go out merged,
  up to 1 MiB per frame (docs/protocol.md §3.3).

Figures are medians over ``--repeat`` rounds; ratios (before ÷ this) of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import add_summary_options, machine_facts, markdown_table, write_summary
from benchmarks._trades import TradeBatches

DESCRIPTION = ("catching up after a pause: wall and CPU time of a real client to take the "
               "rows published while it did not read, with and without merged appends")
REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "before": {"kernel_unsent_bytes": 0, "merge_bytes": 0},
    "queue only": {"merge_bytes": 0},
    "merged": {},
}


class Sub:
    """The subscriber process, spoken to by JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> Sub:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks._catchup_sub", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, cwd=str(REPO), env=env)
        sub = cls(proc)
        await sub.expect("hello", 60.0)
        return sub

    async def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, ev: str, timeout: float) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError("the subscriber process exited")
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("ev") == ev:
                return msg

    async def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def measure(sub: Sub, options: dict, a: argparse.Namespace) -> dict[str, Any]:
    import livestream as ls

    srv = ls.serve(port=0, send_queue_bytes=256 * 1024 * 1024, **options)
    try:
        trades = TradeBatches(a.rows)
        srv.publish("trades", trades.next())
        await sub.send({"cmd": "open", "url": srv.url, "topic": "trades"})
        await sub.expect("ready", 60.0)
        await sub.send({"cmd": "pause", "seconds": a.pause, "rows": a.batches * a.rows})
        await sub.expect("paused", 30.0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(a.batches):
            srv.publish("trades", trades.next())
            await asyncio.sleep(0)
        published_s = loop.time() - t0
        done = await sub.expect("caught_up", a.pause + 90.0)
        await sub.send({"cmd": "close"})
        await sub.expect("closed", 30.0)
        if done["rows"] < a.batches * a.rows:
            raise RuntimeError(f"only {done['rows']} rows arrived")
        return {"wall_ms": done["wall_s"] * 1000, "cpu_ms": done["cpu_s"] * 1000,
                "messages": done["messages"], "published_s": published_s,
                "merged": srv.metrics.appends_merged}
    finally:
        await srv.aclose()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks catchup", description=DESCRIPTION)
    p.add_argument("--rows", type=int, default=100, help="rows per batch (default 100)")
    p.add_argument("--batches", type=int, default=2000,
                   help="batches published during the pause (default 2000)")
    p.add_argument("--pause", type=float, default=2.0,
                   help="seconds the client does not read (default 2)")
    p.add_argument("--repeat", type=int, default=9, help="rounds (default 9)")
    p.add_argument("--quick", action="store_true", help="smoke run (no summary by default)")
    add_summary_options(p)
    a = p.parse_args(argv)
    if a.quick:
        if a.summary_dir is None:
            a.no_summary = True
        a.batches, a.pause, a.repeat = 100, 0.5, 1
    return a


async def _run(a: argparse.Namespace) -> dict[str, list[dict]]:
    raw: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    sub = await Sub.start()
    try:
        for rnd in range(a.repeat):
            order = list(VARIANTS) if rnd % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                r = await measure(sub, VARIANTS[name], a)
                raw[name].append(r)
                print(f"  round {rnd + 1} {name:10s} caught up in {r['wall_ms']:8.1f} ms, "
                      f"client CPU {r['cpu_ms']:8.1f} ms, {r['messages']:5d} messages "
                      f"(published in {r['published_s']:.2f} s)", flush=True)
    finally:
        await sub.stop()
    return raw


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    print(f"catch-up benchmark: {a.batches} batches of {a.rows} rows during a {a.pause:g} s "
          f"pause, {a.repeat} round(s); load {machine.get('load_avg')}", flush=True)
    raw = asyncio.run(_run(a))
    if any(r["published_s"] > a.pause for rs in raw.values() for r in rs):
        print("warning: publishing outlasted the pause in some rounds", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in raw[name])

    def ratio(name: str, key: str) -> float:
        return statistics.median(b[key] / r[key] for b, r in zip(raw["before"], raw[name],
                                                                     strict=True) if r[key])

    rows = []
    for name in VARIANTS:
        rows.append([name, f"{med(name, 'wall_ms'):.1f}", f"{med(name, 'cpu_ms'):.1f}",
                     f"{med(name, 'messages'):.0f}",
                     "—" if name == "before" else f"{ratio(name, 'wall_ms'):.2f}×",
                     "—" if name == "before" else f"{ratio(name, 'cpu_ms'):.2f}×"])
    table = markdown_table(["server", "catch-up (ms)", "client CPU (ms)", "messages",
                            "before ÷ this, time", "before ÷ this, CPU"], rows, "lrrrrr")
    print(table)
    if not a.no_summary:
        path = write_summary(
            "catchup", argv=argv, started=started, machine_before=machine,
            settings={"rows": a.rows, "batches": a.batches, "pause": a.pause,
                      "repeat": a.repeat, "variants": VARIANTS},
            figures={"raw": raw}, tables={"catchup": table},
            packages=("pandas", "pyarrow", "tornado", "picows"), summary_dir=a.summary_dir)
        print(f"summary: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
