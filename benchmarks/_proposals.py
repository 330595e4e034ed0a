"""Prototypes of the optimisations proposed to livestream's server and client (monkeypatches).

The benchmark's ``proposed`` system is livestream with these applied, measured in
the same run as the others (``--systems livestream,proposed,json,arrow``). They
live here, not in ``livestream/``, only until the lead takes the diffs written
in ``docs/benchmarks.md``; each patch is a no-op if livestream already does it.

1. ``ClientHandler.send_frame``: one ``stream.write`` per frame (header and
   payload joined: one syscall and one TCP segment instead of two) and, when
   nothing is queued for the client, a direct non-blocking ``socket.send``
   first, so the common case creates no Tornado ``Future`` and schedules no
   done-callback per frame per client.
2. ``Schema.conform``: a fast path when a batch already has the schema's
   columns, in order, with the schema's dtypes and a default index (what
   every publisher of a fixed-shape table sends): a shallow copy instead of a
   per-column check and a new DataFrame.
3. ``Update.rows`` computed once (``cached_property``) instead of
   ``len(frame)`` once per subscriber in ``send_update``.
"""

from __future__ import annotations

import functools
from typing import Any

import pandas as pd
from tornado.iostream import IOStream, StreamClosedError

from livestream.core import schema as _schema
from livestream.core import topic as _topic
from livestream.server import websocket as _ws

_saved: dict[tuple[Any, str], Any] = {}


# 1. one write per frame; direct send when nothing is queued --------------------------------


def send_frame(self: Any, data: bytes, *, binary: bool, size: int | None,
               rows: int = 0) -> bool:
    conn = self.ws_connection
    if conn is None or conn.is_closing():
        return False
    stream = conn.stream
    n = len(data)
    queued = self.queued = _ws.unflushed(stream)
    if queued + n > self.server.config.send_queue_bytes and queued > 0:
        return self._over_limit()
    frame = _ws._frame_header(0x2 if binary else 0x1, n) + data
    try:
        sent = 0
        if queued == 0 and type(stream) is IOStream:  # plain TCP: try the kernel first
            try:
                sent = stream.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                stream.close()
                return False
        if sent < len(frame):
            stream.write(memoryview(frame)[sent:] if sent else frame)
    except StreamClosedError:
        return False
    m = self.server.metrics
    m.messages_sent += 1
    m.bytes_sent += n
    m.rows_sent += rows
    return True


# 2. conform fast path -------------------------------------------------------------------------


def conform(self: Any, df: pd.DataFrame) -> pd.DataFrame:
    if type(df) is pd.DataFrame:
        idx = df.index
        if (isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1
                and list(df.columns) == self.names):
            want = _dtypes(self)
            if want is not None and all(a == b for a, b in zip(df.dtypes, want, strict=True)):
                return df.copy(deep=False)
    return _saved[(_schema.Schema, "conform")](self, df)


_dtype_cache: dict[Any, tuple | None] = {}


def _dtypes(schema: Any) -> tuple | None:
    """The schema's pandas dtypes, or None if a type needs the full check (category)."""
    got = _dtype_cache.get(schema, False)
    if got is False:
        types = [f.type for f in schema.fields]
        got = None if "category" in types else tuple(_schema.pandas_dtype(t) for t in types)
        _dtype_cache[schema] = got
    return got


# 3. Update.rows once ---------------------------------------------------------------------------


def _rows(self: Any) -> int:
    return len(self.frame)


_cached_rows = functools.cached_property(_rows)
_cached_rows.__set_name__(_topic.Update, "rows")


# -- switching ----------------------------------------------------------------------------------

_PATCHES = [
    (_ws.ClientHandler, "send_frame", send_frame),
    (_schema.Schema, "conform", conform),
    (_topic.Update, "rows", _cached_rows),
]


def apply() -> None:
    """Install the prototypes (idempotent)."""
    for owner, name, fn in _PATCHES:
        key = (owner, name)
        if key not in _saved:
            _saved[key] = getattr(owner, name)
            setattr(owner, name, fn)


def restore() -> None:
    """Put livestream's own functions back."""
    for (owner, name), fn in list(_saved.items()):
        setattr(owner, name, fn)
        del _saved[(owner, name)]
