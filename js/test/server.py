"""A real livestream server for the JS client's tests, driven over stdin/stdout.

Usage: python test/server.py '{"retention_rows": 50}'   (ServerConfig options, and "port", as JSON)

Prints one JSON line {"url": ..., "http": ...} once serving, then answers each JSON command read
from stdin with one JSON line {"id": ..., "ok": true, ...} or {"id": ..., "error": "..."}:

    {"cmd": "topic", "topic": T, "key": K?, "retention_rows": N?}   declare a topic
    {"cmd": "append", "topic": T, "n": N}       publish N sequential rows (seq continues per topic;
                                                "plain": true makes sym a string, not a category)
    {"cmd": "upsert", "topic": T, "n": N, "keys": K, "seed": S}   N random upserts over K keys
    {"cmd": "types", "topic": T}                publish one batch holding every logical type
    {"cmd": "table", "topic": T}                the topic's snapshot as JSON columns + schema
    {"cmd": "quit"}
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

import livestream as ls
from livestream.protocol import dumps, encode_columns_json

BASE = pd.Timestamp("2024-01-01T00:00:00")  # seq i has ts = BASE + i ms (+ i ns)


def seq_frame(start: int, n: int) -> pd.DataFrame:
    seq = np.arange(start, start + n, dtype="int64")
    price = 100.0 + seq / 8.0
    price[seq % 7 == 3] = np.nan
    note = np.array([None if i % 5 == 0 else f"n{i}" for i in seq], dtype=object)
    return pd.DataFrame({
        "seq": seq,
        "ts": (BASE + pd.to_timedelta(seq, unit="ms") + pd.to_timedelta(seq, unit="ns")).as_unit("ns"),
        "price": price,
        "sym": pd.Categorical(np.array(["a", "b", "c"])[seq % 3], categories=["a", "b", "c"]),
        "note": pd.array(note, dtype="string"),
    })


def types_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "b": [True, False, True],
        "i8": np.array([-128, 0, 127], dtype="int8"),
        "u32": np.array([0, 1, 4294967295], dtype="uint32"),
        "i64": np.array([-(2**53), 0, 2**53], dtype="int64"),
        "f32": np.array([1.5, -0.25, 3.0], dtype="float32"),
        "f64": [1.25, np.nan, np.inf],
        "f64n": [-np.inf, 0.5, 2.0],
        "bb": pd.array([True, None, False], dtype="boolean"),
        "I64": pd.array([1, None, -3], dtype="Int64"),
        "F64": pd.array([0.5, None, 1.5], dtype="Float64"),
        "s": pd.array(["x", None, "zé"], dtype="string"),
        "c": pd.Categorical(["u", None, "v"]),
        "t_s": pd.to_datetime([0, 1_700_000_000, None], unit="s").as_unit("s"),
        "t_ms": pd.to_datetime([1, 1_700_000_000_123, 2], unit="ms").as_unit("ms"),
        "t_us": pd.to_datetime([1, 1_700_000_000_123_456, 2], unit="us").as_unit("us"),
        "t_ns": pd.to_datetime([1_000_000, 1_700_000_000_123_456_789, None], unit="ns").as_unit("ns"),
        "t_tz": pd.to_datetime([0, 1_700_000_000_000, 5], unit="ms", utc=True).tz_convert("Europe/Paris"),
    })


def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    port = options.pop("port", 0)
    srv = ls.serve(port=port, **options)
    counters: dict[str, int] = {}
    print(json.dumps({"url": srv.url, "http": srv.http_url}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        out: dict = {"id": req.get("id")}
        try:
            cmd = req["cmd"]
            topic = req.get("topic")
            if cmd == "quit":
                print(json.dumps({**out, "ok": True}), flush=True)
                break
            if cmd == "topic":
                srv.topic(topic, key=req.get("key"), retention_rows=req.get("retention_rows"))
            elif cmd == "append":
                start = counters.get(topic, 0)
                df = seq_frame(start, int(req["n"]))
                if req.get("plain"):  # no category column: its appends can merge
                    df["sym"] = df["sym"].astype(object).astype("string")
                u = srv.publish(topic, df)
                counters[topic] = start + int(req["n"])
                out.update(offset=u.offset, next=u.next, epoch=u.epoch)
            elif cmd == "upsert":
                rng = np.random.default_rng(req.get("seed", 0))
                n, k = int(req["n"]), int(req["keys"])
                df = pd.DataFrame({
                    "sym": [f"k{j}" for j in rng.integers(0, k, n)],
                    "price": rng.normal(100, 5, n).round(3),
                    "qty": rng.integers(0, 1000, n).astype("int64"),
                })
                u = srv.publish(topic, df)
                out.update(offset=u.offset, next=u.next, epoch=u.epoch)
            elif cmd == "delete":
                out.update(deleted=srv.delete(topic))
                counters.pop(topic, None)
            elif cmd == "types":
                u = srv.publish(topic, types_frame())
                out.update(offset=u.offset, next=u.next)
            elif cmd == "table":
                t = next(i for i in srv.topics() if i["name"] == topic)
                schema = ls.Schema.from_json(t["schema"])
                cols, _ = encode_columns_json(srv.snapshot(topic), schema)
                out.update(json.loads(dumps({"columns": cols, "schema": t["schema"],
                                             "epoch": t["epoch"], "next": t["next_offset"]})))
            else:
                raise ValueError(f"unknown command {cmd!r}")
            out["ok"] = True
        except Exception as exc:  # reported to the test, which fails with it
            out["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(out), flush=True)
    srv.close()


if __name__ == "__main__":
    main()
