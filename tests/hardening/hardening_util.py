"""Helpers for the hardening tests: a server in its own process, valid Arrow publish
bodies, seeded byte mutators, and structured bad JSON messages.

Everything random here is seeded (``random.Random(seed)``): a failing case is
reproduced by its seed and index.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import select
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
from spine_util import RawClient
from testutil import stop_process
from tornado.websocket import WebSocketClosedError

from livestream.core.schema import STRING_DTYPE, Schema
from livestream.protocol import frame_to_arrow, pack_binary
from livestream.protocol.codec import encode_arrow

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ARROW_STREAM = "application/vnd.apache.arrow.stream"

#: Log lines that mean the server failed on input instead of answering it.
PROBLEM = re.compile(r"internal error|Traceback|Uncaught exception|Task exception|"
                     r"Exception in callback|Fatal Python error|Segmentation fault")


# -- a server in its own process ------------------------------------------------------------


class ServerProcess:
    """``hardening_server.py`` as a subprocess: its port, liveness, RSS and log."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "hardening_server.py"), *args],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60.0)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"test server did not start: {line!r}\n{self.log()}")
        self.port = int(line)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return psutil.Process(self.proc.pid).memory_info().rss

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_size(self) -> int:
        """Characters logged so far (for ``problems(since=...)``)."""
        return len(self.log())

    def problems(self, since: int = 0) -> list[str]:
        """Log lines (after the first ``since`` characters) showing that the server
        failed on some input."""
        return [line for line in self.log()[since:].splitlines() if PROBLEM.search(line)]

    def death(self) -> str:
        """How the process ended, for assertion messages."""
        try:  # a connection that just dropped may belong to a process still dying
            rc = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return "alive"
        return f"exit status {rc}" + (" (SIGSEGV)" if rc == -11 else "") + "\n" + self.log()[-3000:]

    def http(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        """One HTTP request; returns the status and the decoded JSON body (or raw bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data

    def topic_next(self, name: str) -> int | None:
        """The topic's ``next_offset`` from ``GET /topics`` (None: no such topic)."""
        _, body = self.http("GET", "/topics")
        for t in body["topics"]:
            if t["name"] == name:
                return t["next_offset"]
        return None

    def internal_errors(self) -> float:
        """``livestream_errors_total{code="internal"}`` from ``/metrics``."""
        _, text = self.http("GET", "/metrics")
        text = text.decode() if isinstance(text, bytes) else str(text)
        m = re.search(r'livestream_errors_total\{code="internal"\} (\S+)', text)
        return float(m.group(1)) if m else 0.0

    def stop(self) -> None:
        try:
            stop_process(self.proc)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._log.close()


# -- valid publish bodies ---------------------------------------------------------------------


def rich_frame(n: int = 5, start: int = 0) -> pd.DataFrame:
    """A batch with every kind of column livestream carries."""
    rng = np.random.default_rng(start)
    seq = np.arange(start, start + n, dtype=np.int64)
    nulls = seq % 3 == 1
    return pd.DataFrame({
        "seq": seq,
        "ts": pd.Timestamp("2024-01-02", tz="UTC") + pd.to_timedelta(seq, "ms"),
        "naive": pd.Timestamp("2024-01-02") + pd.to_timedelta(seq, "s"),
        "sym": pd.Categorical(rng.choice(["AAA", "BBB", "CCC", "DDD"], n)),
        "text": pd.array([None if z else f"zé{i}☃" for i, z in zip(seq, nulls, strict=True)],
                         dtype=STRING_DTYPE),
        "price": rng.normal(100, 1, n),
        "qty": pd.array([None if z else int(i) for i, z in zip(seq, nulls, strict=True)],
                        dtype="Int64"),
        "flag": pd.array([None if z else bool(i % 2) for i, z in zip(seq, nulls, strict=True)],
                         dtype="boolean"),
        "small": (seq % 100).astype(np.int16),
        "ok": seq % 2 == 0,
    })


def simple_frame(n: int = 5, start: int = 0) -> pd.DataFrame:
    seq = np.arange(start, start + n, dtype=np.int64)
    return pd.DataFrame({"seq": seq, "price": seq * 0.5,
                         "symbol": [f"S{i % 7}" for i in seq]})


def base_bodies() -> list[tuple[str, bytes]]:
    """Valid Arrow IPC publish bodies, each with the topic it belongs to."""
    rich = rich_frame(6)
    schema = Schema.from_frame(rich)
    two = pa.Table.from_pandas(simple_frame(8), preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, two.schema) as w:
        for batch in two.to_batches(max_chunksize=3):
            w.write_batch(batch)
    return [
        ("fz-simple", frame_to_arrow(simple_frame(5))),
        ("fz-rich", frame_to_arrow(rich)),
        ("fz-plain", encode_arrow(rich, schema)),
        ("fz-chunks", sink.getvalue().to_pybytes()),
    ]


def publish_frame(topic: str, body: bytes, mid: Any) -> bytes:
    """A binary WebSocket publish frame."""
    return pack_binary({"type": "publish", "topic": topic, "id": mid}, body)


# -- byte mutations ---------------------------------------------------------------------------

_I32 = [0, 1, -1, 7, 8, 64, 255, 0x7FFF, 0xFFFF, 0x10000, 1 << 24, 0x7FFFFFFF, -0x80000000]
_I64 = [0, 1, -1, 8, 1 << 31, 1 << 32, 1 << 40, 1 << 62, -(1 << 62), 0x7FFFFFFFFFFFFFFF]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to eight random edits of ``data``: bit flips, special bytes, overwritten
    32/64-bit words (lengths, offsets), nudged words, truncation, splices."""
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 5, 8))):
        if not b:
            b = bytearray(b"\0")
        i = rng.randrange(len(b))
        k = rng.randrange(8)
        if k == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif k == 1:
            b[i] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif k == 2 and (i & ~3) + 4 <= len(b):
            b[i & ~3:(i & ~3) + 4] = struct.pack("<i", rng.choice(_I32))
        elif k == 3 and (i & ~7) + 8 <= len(b):
            b[i & ~7:(i & ~7) + 8] = struct.pack("<q", rng.choice(_I64))
        elif k == 4 and (i & ~3) + 4 <= len(b):
            j = i & ~3
            v = struct.unpack_from("<i", b, j)[0] + rng.choice((-8, -1, 1, 8, 136, 4096))
            b[j:j + 4] = struct.pack("<i", max(-0x80000000, min(0x7FFFFFFF, v)))
        elif k == 5:
            del b[i:]
        elif k == 6:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.choice((4, 8, 16, 64))]
        else:
            j = rng.randrange(len(b))
            n = rng.choice((4, 8))
            b[i:i + n], b[j:j + n] = b[j:j + n], b[i:i + n]
    return bytes(b)


def arrow_cases(seed: int, n: int) -> Iterator[tuple[int, str, bytes]]:
    """``n`` mutated publish bodies: (index, topic, body)."""
    bodies = base_bodies()
    rng = random.Random(seed)
    for i in range(n):
        topic, body = rng.choice(bodies)
        yield i, topic, mutate(rng, body)


# -- structured bad JSON ----------------------------------------------------------------------

_DEEP = {"__DEEP_LIST__": lambda d: "[" * d + "]" * d,
         "__DEEP_DICT__": lambda d: '{"a":' * d + "1" + "}" * d,
         "__DEEP_MIX__": lambda d: '[{"a":' * (d // 2) + "0" + "}]" * (d // 2)}

BAD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.5, -0.0, 2**63, -(2**63) - 1, 2**64 + 1, 1e308, -1e308,
    "", "x", "NaN", "Infinity", "-Infinity", "1e999", "null", "\u0000", "é☃𝄞\u2028",
    "x" * 3000, "../etc", "datetime64[ns, Mars/Olympus]", "datetime64[ns, ]", "int60",
    [], [1], [None], ["a", None], [[1, 2], [3]], [{"name": "a", "type": "int64"}],
    {}, {"a": 1}, {"a": [1, 2]}, {"name": "x", "type": "float64"},
    "__DEEP_LIST__", "__DEEP_DICT__", "__DEEP_MIX__",
]

SCHEMA = [{"name": "f", "type": "float64"}, {"name": "i", "type": "int64"},
          {"name": "b", "type": "bool"}, {"name": "s", "type": "string"},
          {"name": "c", "type": "category"}, {"name": "t", "type": "datetime64[ns, UTC]"},
          {"name": "n", "type": "Int64"}, {"name": "g", "type": "Float64"},
          {"name": "o", "type": "boolean"}, {"name": "d", "type": "datetime64[ms]"}]
COLUMNS = {"f": [1.5, "NaN"], "i": [1, 2], "b": [True, False], "s": ["a", None],
           "c": ["x", "y"], "t": [1, "2024-01-01T00:00:00Z"], "n": [None, 3],
           "g": [None, "Infinity"], "o": [True, None], "d": [0, 86_400_000]}


def template_messages(topic: str) -> list[dict]:
    """Valid client messages of every type (the starting points of mutations)."""
    return [
        {"type": "hello", "v": 1, "encoding": "json", "client": "fuzz", "id": 1},
        {"type": "subscribe", "topic": topic, "id": 2},
        {"type": "subscribe", "topic": topic, "id": 3, "epoch": "0123456789abcdef", "offset": 0},
        {"type": "unsubscribe", "topic": topic, "id": 4},
        {"type": "publish", "topic": topic, "id": 5, "schema": SCHEMA, "columns": COLUMNS,
         "categories": {"c": ["x", "y"]}},
        {"type": "publish", "topic": topic, "id": 6,
         "rows": [{k: v[0] for k, v in COLUMNS.items()}, {k: v[1] for k, v in COLUMNS.items()}]},
        {"type": "ping", "id": 7, "t": 1714557600123.5},
    ]


def _bad(rng: random.Random) -> Any:
    v = rng.choice(BAD_VALUES)
    return json.loads(json.dumps(v))  # a fresh copy


def _mutate_message(rng: random.Random, msg: dict) -> Any:
    k = rng.randrange(10)
    if k == 0:
        return _bad(rng)  # not an object at all, or a random object
    if not msg:
        return _bad(rng)
    key = rng.choice(list(msg))
    if k == 1:
        del msg[key]
    elif k == 2:
        msg[rng.choice(["x", "columns", "rows", "schema", "categories", "t", "token"])] = _bad(rng)
    elif k in (3, 4) or msg.get("type") != "publish":
        msg[key] = _bad(rng)
    elif k == 5 and isinstance(msg.get("columns"), dict):
        msg["columns"][rng.choice(list(COLUMNS))] = _bad(rng)
    elif k == 6 and isinstance(msg.get("columns"), dict):
        col = msg["columns"].get(rng.choice(list(COLUMNS)))
        if isinstance(col, list) and col:
            col[rng.randrange(len(col))] = _bad(rng)
    elif k == 7 and isinstance(msg.get("schema"), list) and msg["schema"]:
        j = rng.randrange(len(msg["schema"]))
        field = msg["schema"][j]
        if isinstance(field, dict):
            field[rng.choice(["name", "type", "x"])] = _bad(rng)
        else:
            msg["schema"][j] = _bad(rng)
    elif k == 8 and isinstance(msg.get("categories"), dict):
        msg["categories"][rng.choice(["c", "f", "zz"])] = _bad(rng)
    elif isinstance(msg.get("rows"), list) and msg["rows"]:
        row = msg["rows"][rng.randrange(len(msg["rows"]))]
        if isinstance(row, dict):
            row[rng.choice([*COLUMNS, "extra"])] = _bad(rng)
    else:
        msg[key] = _bad(rng)
    return msg


def _to_text(rng: random.Random, obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    for token, make in _DEEP.items():
        text = text.replace(json.dumps(token), make(rng.choice((40, 300, 1100))))
    return text


def json_cases(seed: int, n: int, topic: str = "jz") -> Iterator[tuple[int, str]]:
    """``n`` JSON text frames of wrong shapes and types: (index, text)."""
    rng = random.Random(seed)
    for i in range(n):
        msg = json.loads(json.dumps(rng.choice(template_messages(topic))))
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            if not isinstance(msg, dict):
                break
            msg = _mutate_message(rng, msg)
        text = _to_text(rng, msg)
        if rng.random() < 0.05:  # a character-level edit (still valid UTF-8)
            j = rng.randrange(len(text) + 1)
            text = text[:j] + rng.choice(['"', "{", "]", ",", "\\", "0", "\ud7ff"]) + text[j + 1:]
        yield i, text


def corpus_files() -> list[Path]:
    """Every regression body in corpus/ (files ``*.bin``)."""
    return sorted(CORPUS.glob("*.bin"))



# -- hand-made bad bodies ---------------------------------------------------------------------


def _patch(body: bytes, old: bytes, new: bytes) -> bytes:
    assert body.count(old) == 1, f"pattern found {body.count(old)} times"
    return body.replace(old, new)


def _with_metadata(frame: pd.DataFrame, pandas_meta: bytes) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({b"pandas": pandas_meta})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _stream(table: pa.Table, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    opts = pa.ipc.IpcWriteOptions(**options) if options else None
    with pa.ipc.new_stream(sink, table.schema, options=opts) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def crafted_bodies() -> dict[str, tuple[pd.DataFrame, bytes]]:
    """Arrow publish bodies each broken in one known way: name → (the valid frame the
    body was made from, which creates its topic; the broken body)."""
    out: dict[str, tuple[pd.DataFrame, bytes]] = {}
    strings = pd.DataFrame({"s": pd.array(["abc", "de"], dtype=STRING_DTYPE)})
    # the last string offset points 136 bytes past the end of the frame
    out["string offset past the frame"] = (strings, _patch(
        frame_to_arrow(strings), struct.pack("<qqq", 0, 3, 5), struct.pack("<qqq", 0, 3, 141)))
    cats = pd.DataFrame({"c": pd.Categorical.from_codes([3, 1, 4, 1, 0], categories=list("abcde"))})
    out["dictionary index out of range"] = (cats, _patch(
        encode_arrow(cats, Schema.from_frame(cats)), struct.pack("<5i", 3, 1, 4, 1, 0),
        struct.pack("<5i", 3, 1, 400_000, 1, 0)))
    text = pd.DataFrame({"s": pd.array(["zq\u00e9zq"], dtype=STRING_DTYPE)})
    out["invalid UTF-8"] = (text, _patch(frame_to_arrow(text), b"zq\xc3\xa9zq", b"zq\xff\xfezq"))
    ints = pd.DataFrame({"x": np.arange(5, dtype=np.int64)})
    out["column length beyond its buffers"] = (ints, _patch(
        frame_to_arrow(ints), struct.pack("<qq", 5, 0), struct.pack("<qq", 1 << 40, 0)))
    out["buffer beyond the body"] = (ints, _patch(
        frame_to_arrow(ints), struct.pack("<qq", 0, 40), struct.pack("<qq", 4096, 40)))
    big = pd.DataFrame({"x": np.zeros(4096, dtype=np.int64)})
    out["compressed body"] = (ints, _stream(pa.Table.from_pandas(big, preserve_index=False),
                                            compression="zstd"))
    out["truncated stream"] = (ints, frame_to_arrow(ints)[:-20])
    out["empty body after the header"] = (ints, b"\xff\xff\xff\xff\x00\x00\x00\x00")
    return out


def bad_pandas_metadata() -> dict[str, bytes]:
    """Arrow bodies of a valid ``{"x": int64}`` frame whose pandas metadata is malformed."""
    frame = pd.DataFrame({"x": np.arange(3, dtype=np.int64)})
    good = json.loads(pa.Table.from_pandas(frame).schema.metadata[b"pandas"])
    cases = {
        "not JSON": b"{not json",
        "not UTF-8": b'{"columns": "\xff"}',
        "a JSON array": b"[]",
        "columns not an array": json.dumps({**good, "columns": 5}).encode(),
        "a column entry not an object": json.dumps({**good, "columns": [5]}).encode(),
        "numpy_type not a string": json.dumps(
            {**good, "columns": [{**good["columns"][0], "numpy_type": 5}]}).encode(),
        "name not a string": json.dumps(
            {**good, "columns": [{**good["columns"][0], "name": [1], "field_name": [1]}]}).encode(),
        "index_columns not an array": json.dumps({**good, "index_columns": "x"}).encode(),
        "index_columns names a missing column": json.dumps(
            {**good, "index_columns": ["nope"]}).encode(),
    }
    return {name: _with_metadata(frame, meta) for name, meta in cases.items()}


def odd_pandas_metadata() -> dict[str, bytes]:
    """Arrow bodies of a valid ``{"x": int64}`` frame (x = 0, 1, 2) whose pandas metadata
    is well-formed but names dtypes that do not exist or do not fit the Arrow type."""
    frame = pd.DataFrame({"x": np.arange(3, dtype=np.int64)})
    good = json.loads(pa.Table.from_pandas(frame).schema.metadata[b"pandas"])
    col = good["columns"][0]
    cases = {
        "an unknown numpy_type": {**col, "numpy_type": "int60"},
        "a categorical pandas_type": {**col, "pandas_type": "categorical",
                                      "metadata": {"num_categories": 9}},
        "a datetimetz pandas_type without a timezone": {**col, "pandas_type": "datetimetz",
                                                        "numpy_type": "datetime64[ns]",
                                                        "metadata": 5},
        "a nullable type of another kind": {**col, "numpy_type": "boolean"},
    }
    return {name: _with_metadata(frame, json.dumps({**good, "columns": [c]}).encode())
            for name, c in cases.items()}


# -- talking to the server --------------------------------------------------------------------

#: What a server may answer to a bad publish body (anything but ``internal``).
PUBLISH_ERRORS = {"bad_frame", "schema_mismatch", "too_many_rows", "too_many_columns"}


class Closed(Exception):
    """The server closed the connection (``code`` is its close code)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed with {code}")
        self.code = code


async def exchange(client: RawClient, frame: Any, sentinel: str,
                   timeout: float = 60.0) -> list[dict]:
    """Send ``frame``, then a ping with id ``sentinel``; return every frame the server
    sent before the pong. Raises :class:`Closed` if the connection closes."""
    try:
        await client.send(frame)
        await client.send({"type": "ping", "id": sentinel})
    except WebSocketClosedError:
        raise Closed(client.ws.close_code) from None
    out = []
    while True:
        msg = await client.recv(timeout)
        if msg is None:
            raise Closed(client.ws.close_code)
        if msg.get("type") == "pong" and msg.get("id") == sentinel:
            return out
        out.append(msg)


def http_publish(server: ServerProcess, topic: str, body: bytes,
                 content_type: str = ARROW_STREAM) -> tuple[int, Any]:
    return server.http("POST", f"/topics/{topic}", body, content_type)
