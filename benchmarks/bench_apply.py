"""Per-message cost without a socket: the client's apply path and the server's publish path.

``python -m benchmarks apply`` (``--quick`` for a smoke run).

Both sides of livestream's per-message work, measured in one process with no
transport at all, so that the figures do not depend on the WebSocket library
(the spine benchmark measures the same paths over real sockets):

client apply
    the frames a livestream server sends for a topic of trades (``ts`` int64,
    ``symbol`` string, ``price`` float64, ``size`` int64), encoded by the
    server's own encode path, are fed to 1, 10 or 100 subscriptions
    (``ClientProtocol.receive_data`` → ``SubscriptionState`` → ``Subscription``
    callbacks: offsets checked, rows into each rolling window, no DataFrame built
    since nobody asks for one); every subscription gets every frame (``--messages``
    600 of them: with 100-row batches the pending batches are copied into each
    100,000-row window twice during the run, with 1000-row batches the window is
    passed and the older batches are dropped uncopied). Against
    it, the **bare decode**: ``pyarrow.ipc.open_stream(msg).read_all()`` of the
    same rows as baseline (b) of the spine benchmark encodes them
    (``Table.from_pandas`` → IPC stream). CPU µs per message
    (``time.process_time``), and bare ÷ livestream.
``sub.df`` after the run
    the DataFrame of the window built once (ms), the price of asking for it.
server publish
    ``LivestreamServer.publish`` of a batch (schema check, offsets, retained
    window) plus its encoding (the bytes every subscriber gets) against baseline
    (b)'s encoding of the same batch. CPU µs per publish, and (b) ÷ livestream.

Every figure is the median over ``--repeat`` interleaved rounds; ratios are of the
same round.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import add_summary_options, machine_facts, markdown_table, write_summary
from benchmarks._spine_servers import ArrowBaseline
from benchmarks._trades import TradeBatches

DESCRIPTION = ("per-message CPU without a socket: client apply vs a bare pyarrow decode, "
               "server publish+encode vs a bare Arrow encode")

TARGETS = {"apply_vs_bare": 1.0}


def _frames(batch: int, count: int) -> tuple[list[bytes], list[bytes]]:
    """livestream's frames of ``count`` batches (a snapshot first), and baseline (b)'s."""
    from livestream.server.app import LivestreamServer
    from livestream.server.config import ServerConfig

    core = LivestreamServer(ServerConfig())
    tb = TradeBatches(batch)
    first = core.publish("trades", tb.next())
    topic = core.backplane.get("trades")
    snap = topic.snapshot()
    frames = [core.encode(snap, topic.schema, "arrow")]
    assert first.next == snap.next
    base = []
    for _ in range(count):
        df = tb.next()
        u = core.publish("trades", df)
        frames.append(core.encode(u, topic.schema, "arrow"))
        base.append(ArrowBaseline().encode(df))
    return frames, base


def client_round(frames: list[bytes], base: list[bytes], subs: int) -> dict[str, float]:
    from livestream.client.protocol import ClientProtocol
    from livestream.client.subscription import Subscription

    # bare decode: every subscriber decodes every message
    c0 = time.process_time()
    rows = 0
    for msg in base:
        for _ in range(subs):
            rows += pa.ipc.open_stream(msg).read_all().num_rows
    bare = (time.process_time() - c0) / (len(base) * subs) * 1e6

    states = []
    for _ in range(subs):
        proto = ClientProtocol(encoding="arrow")
        sub = Subscription("trades")
        proto.add(sub.machine)
        proto.connection_made()
        proto.data_to_send()
        sub.dispatch(proto.receive_data(frames[0]))  # the snapshot: warm-up
        states.append((proto, sub))
    c0 = time.process_time()
    for msg in frames[1:]:
        for proto, sub in states:
            sub.dispatch(proto.receive_data(msg))
    ours = (time.process_time() - c0) / ((len(frames) - 1) * subs) * 1e6
    t0 = time.perf_counter()
    df = states[0][1].df
    df_ms = (time.perf_counter() - t0) * 1000
    assert states[0][1].stats_data.messages == len(frames), "not every frame was applied"
    assert len(df) == min(states[0][1].window, len(states[0][1]))
    return {"bare_us": bare, "livestream_us": ours, "ratio": bare / ours, "df_ms": df_ms}


def publish_round(batch: int, count: int) -> dict[str, float]:
    from livestream.server.app import LivestreamServer
    from livestream.server.config import ServerConfig

    core = LivestreamServer(ServerConfig())
    tb = TradeBatches(batch)
    core.publish("trades", tb.next())
    topic = core.backplane.get("trades")
    dfs = [tb.next() for _ in range(16)]
    enc = ArrowBaseline()
    c0 = time.process_time()
    for i in range(count):
        enc.encode(dfs[i % 16])
    bare = (time.process_time() - c0) / count * 1e6
    c0 = time.process_time()
    for i in range(count):
        u = core.publish("trades", dfs[i % 16])
        core.encode(u, topic.schema, "arrow")
    ours = (time.process_time() - c0) / count * 1e6
    return {"bare_us": bare, "livestream_us": ours, "ratio": bare / ours}


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks apply", description=DESCRIPTION)
    p.add_argument("--subs", type=_ints, default=[1, 10, 100],
                   help="subscriptions fed every frame (default 1,10,100)")
    p.add_argument("--batches", type=_ints, default=[100, 1000], help="rows per message")
    p.add_argument("--messages", type=int, default=600,
                   help="messages each subscription gets per client case (default 600)")
    p.add_argument("--publishes", type=int, default=2000, help="publishes per server case")
    p.add_argument("--repeat", type=int, default=5, help="interleaved rounds (medians)")
    p.add_argument("--quick", action="store_true", help="smoke run (no summary by default)")
    add_summary_options(p)
    a = p.parse_args(argv)
    if a.quick:
        if a.summary_dir is None:
            a.no_summary = True
        a.subs, a.batches, a.messages, a.publishes, a.repeat = [1, 10], [100], 100, 200, 1
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_facts()
    print(f"apply benchmark: subs {a.subs} x batches {a.batches}, {a.repeat} round(s); "
          f"load {machine.get('load_avg')}", flush=True)
    raw: dict[str, list[dict[str, Any]]] = {"client": [], "publish": []}
    for rnd in range(a.repeat):
        for batch in a.batches:
            for n in a.subs:
                frames, base = _frames(batch, a.messages)
                r = client_round(frames, base, n)
                r.update(round=rnd, batch=batch, subs=n)
                raw["client"].append(r)
                print(f"  client  batch={batch:<5d} subs={n:<4d} bare {r['bare_us']:7.1f} µs/msg"
                      f"  livestream {r['livestream_us']:7.1f} µs/msg  ratio {r['ratio']:.2f}"
                      f"  (sub.df {r['df_ms']:.1f} ms)", flush=True)
            r = publish_round(batch, a.publishes)
            r.update(round=rnd, batch=batch)
            raw["publish"].append(r)
            print(f"  publish batch={batch:<5d} bare {r['bare_us']:7.1f} µs  livestream "
                  f"{r['livestream_us']:7.1f} µs  ratio {r['ratio']:.2f}", flush=True)

    client_rows, publish_rows, targets = [], [], []
    for batch in a.batches:
        for n in a.subs:
            rs = [r for r in raw["client"] if r["batch"] == batch and r["subs"] == n]
            client_rows.append({"batch": batch, "subs": n,
                                **{k: _med([r[k] for r in rs])
                                   for k in ("bare_us", "livestream_us", "ratio", "df_ms")}})
        rs = [r for r in raw["publish"] if r["batch"] == batch]
        publish_rows.append({"batch": batch, **{k: _med([r[k] for r in rs])
                                                for k in ("bare_us", "livestream_us", "ratio")}})
    for row in client_rows:
        targets.append({"target": f"client apply, {row['batch']}-row, {row['subs']} subs: "
                                  f"bare decode ÷ livestream ≥ {TARGETS['apply_vs_bare']}×",
                        "value": row["ratio"], "goal": TARGETS["apply_vs_bare"],
                        "met": row["ratio"] >= TARGETS["apply_vs_bare"]})
    tables = {
        "client": markdown_table(
            ["batch", "subs", "bare pyarrow decode (µs/msg)", "livestream apply (µs/msg)",
             "bare ÷ livestream", "sub.df once after (ms)"],
            [[r["batch"], r["subs"], f"{r['bare_us']:.1f}", f"{r['livestream_us']:.1f}",
              f"{r['ratio']:.2f}×", f"{r['df_ms']:.1f}"] for r in client_rows], "r" * 6),
        "publish": markdown_table(
            ["batch", "(b) Arrow encode (µs)", "livestream publish + encode (µs)",
             "(b) ÷ livestream"],
            [[r["batch"], f"{r['bare_us']:.1f}", f"{r['livestream_us']:.1f}",
              f"{r['ratio']:.2f}×"] for r in publish_rows], "r" * 4),
    }
    for t in tables.values():
        print(t + "\n")
    if not a.no_summary:
        path = write_summary(
            "apply", argv=argv, started=started, machine_before=machine,
            settings={k: v for k, v in vars(a).items() if k not in ("summary_dir", "no_summary")},
            figures={"client": client_rows, "publish": publish_rows, "targets": targets,
                     "raw": raw},
            tables=tables, packages=("pandas", "pyarrow", "numpy", "orjson"),
            summary_dir=a.summary_dir)
        print(f"summary: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
