"""One subscription's state, without I/O: its window, its resume point, and the §10 rules.

A :class:`SubscriptionState` is the client side of one topic: the rolling window
(or keyed table, or replaced table) the rows land in, the ``(epoch, next)`` resume
point, the topic's mode, key and schema, and counters. It is fed decoded
messages and returns :data:`Event` objects saying what happened; it opens no
socket, runs no loop and calls no user code, so it is tested directly
(``tests/client/test_state.py``), the way the server's ``core/`` is.

Feeding it:

* :meth:`SubscriptionState.receive` takes one server message addressed to the
  topic (``subscribed``, ``snapshot``/``append``/``upsert``/``replace``, ``gap``,
  ``error``; the header as a dict and, for binary frames, the Arrow payload) and
  applies the client obligations of ``docs/protocol.md`` §10: an update already
  held is dropped, an overlapping one is trimmed, a hole is reported as a gap,
  a snapshot starts over. This is what a livestream connection uses.
* :meth:`SubscriptionState.apply` applies one decoded update as given (no
  offsets checked): what sources without offsets (outside feeds) and tests use.
* :meth:`set_state`, :meth:`error`, :meth:`gap`, :meth:`resize`, :meth:`close`.

Reading it (from any thread: every method holds :attr:`lock`, and :attr:`changed`
is notified after each update): :meth:`frame`, :meth:`rows_since`, ``len()``,
:attr:`version`, :attr:`resets`, :meth:`resume_point`, :attr:`stats`.

A :class:`~livestream.client.subscription.Subscription` is the user's handle on
one of these: it adds callbacks, waiting, pause/close through its source, and
views. :class:`~livestream.client.protocol.ClientProtocol` routes a
connection's messages to the states of its topics.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from ..core.keyed import KeyedTable
from ..core.schema import Schema
from ..core.window import ColumnWindow
from ..protocol import decode_data
from ..protocol.codec import ArrowStreamReader, table_to_frame

DEFAULT_WINDOW = 100_000

#: Arrow appends kept as record batches before they are copied into the window in one
#: go (see :meth:`SubscriptionState.apply`): a read copies them, and so do this many small
#: batches (fewer than :data:`LARGE_BATCH_ROWS` rows each on average) ...
MAX_PENDING_BATCHES = 256
#: ... or this many batches of :data:`LARGE_BATCH_ROWS` rows or more on average. A pending
#: batch costs its own Python and Arrow objects beside its rows, whatever its size: small batches
#: are copied early so that this overhead stays small; larger ones wait for a read (a chart's
#: next frame, ``sub.df``), bounded in rows by the window (older pending batches that a
#: window's worth of newer rows hides are dropped, never copied).
MAX_PENDING_LARGE_BATCHES = 4096
LARGE_BATCH_ROWS = 64

_concat_batches = getattr(pa, "concat_batches", None)  # pyarrow >= 19

#: pandas copy-on-write (always on from pandas 3): a shallow copy of the cached frame
#: is then a frame of its own for whoever holds it.
_COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3 or \
    getattr(pd.options.mode, "copy_on_write", False) is True

#: How many gap events a subscription remembers (:attr:`SubscriptionState.gaps`).
GAP_HISTORY = 100

UpdateKind = Literal["snapshot", "append", "upsert", "replace"]
DATA_TYPES: tuple[str, ...] = ("snapshot", "append", "upsert", "replace")


# -- events ------------------------------------------------------------------------------


@dataclass(slots=True)
class RowsApplied:
    """An update was applied to the window. ``data`` holds its rows only: a DataFrame,
    or an Arrow table or record batch for Arrow appends (:meth:`frame` converts).

    Made once per message on the apply path, so it is not frozen: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``, several times the cost.
    Treat it as read-only."""

    topic: str
    kind: str  #: snapshot, append, upsert or replace
    rows: int
    data: Any
    ts: float | None = None  #: the server's time of the update (ms since the epoch)
    schema: Schema | None = None

    def frame(self) -> pd.DataFrame:
        """The rows of the update as a DataFrame."""
        if isinstance(self.data, pa.Table | pa.RecordBatch):
            return table_to_frame(self.data, self.schema)
        return self.data


@dataclass(frozen=True)
class GapDetected:
    """Rows were lost (``gap`` is the server's gap message, or a hole the client saw)."""

    topic: str
    gap: dict


@dataclass(frozen=True)
class StateChanged:
    """The subscription's state changed (connecting, waiting, live, reconnecting,
    paused, closed, ...)."""

    topic: str
    state: str


@dataclass(frozen=True)
class ErrorReported:
    """An error concerning this subscription (a server error frame, a bad batch, a
    failing callback or view)."""

    topic: str
    message: str


Event = RowsApplied | GapDetected | StateChanged | ErrorReported


# -- counters ----------------------------------------------------------------------------


class RateMeter:
    """Rows per second over the last few seconds (one-second buckets)."""

    def __init__(self, seconds: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._buckets: deque[list] = deque()

    def add(self, n: int) -> None:
        now = int(self.clock())
        b = self._buckets
        if b and b[-1][0] == now:
            b[-1][1] += n
        else:
            b.append([now, n])
            while b and b[0][0] <= now - self.seconds - 1:
                b.popleft()

    def rate(self) -> float:
        now = self.clock()
        lo = now - self.seconds
        total = sum(n for t, n in self._buckets if t >= lo)
        if not self._buckets:
            return 0.0
        span = min(self.seconds, max(1.0, now - self._buckets[0][0]))
        return total / span


@dataclass
class SubscriptionStats:
    """Counters of one subscription, for humans and for tests."""

    state: str = "connecting"
    rows: int = 0
    messages: int = 0
    rows_per_s: float = 0.0
    last_update_age: float | None = None
    lag_ms: float | None = None
    reconnects: int = 0
    gaps: int = 0
    errors: int = 0
    last_error: str | None = None
    dropped: int = 0
    extra: dict = field(default_factory=dict)


def check_window(rows: int | None) -> None:
    """Raise ValueError unless ``rows`` is a positive number of rows or None (unbounded)."""
    if rows is not None and rows < 1:
        raise ValueError("window must be a positive number of rows (or None for unbounded)")


# -- the state machine ---------------------------------------------------------------------


class SubscriptionState:
    """The sans-I/O state of one subscription (see the module doc).

    ``window`` bounds the rows of an append topic (None: unbounded); ``key`` makes
    a keyed table (one row per key). ``clock`` (monotonic seconds) and ``wall``
    (epoch seconds) are injectable for tests.
    """

    def __init__(
        self,
        name: str,
        *,
        window: int | None = DEFAULT_WINDOW,
        key: Sequence[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        check_window(window)
        self.name = name
        self.window = window
        self.key: tuple[str, ...] = tuple(key or ())
        #: ``append``, ``keyed`` or ``replace`` once known (from ``subscribed`` or data)
        self.mode: str | None = "keyed" if self.key else None
        #: the schema of the rows held (None before the first update)
        self.schema: Schema | None = None
        #: the schema the server announced in ``subscribed`` (used until rows arrive)
        self.announced_schema: Schema | None = None
        self.epoch: str | None = None
        #: the next offset expected: with :attr:`epoch`, the resume point
        self.offset: int | None = None
        self.stats = SubscriptionStats()
        self.meter = RateMeter(clock=clock)
        self.clock = clock
        self.wall = wall
        self.last_update: float | None = None  #: ``clock()`` of the last update
        self.closed = False
        #: held by every method; readers on other threads take it too
        self.lock = threading.RLock()
        #: notified after every update and when the state closes
        self.changed = threading.Condition(self.lock)
        self._rows: ColumnWindow | None = None
        self._table: KeyedTable | None = None
        self._replaced: pd.DataFrame | None = None
        self._version = 0
        self._resets = 0
        self._gaps: deque[dict] = deque(maxlen=GAP_HISTORY)
        # Arrow appends not yet copied into ``_rows`` (they follow its end offset)
        self._pending: deque[pa.RecordBatch] = deque()
        self._pending_rows = 0
        # rows between the window's end and the first pending batch, dropped unseen: a
        # window's worth of newer rows is pending (the window will be reset to them)
        self._skipped = 0
        self._frame: pd.DataFrame | None = None  # frame() of the current version
        #: reads this topic's Arrow payloads, parsing the schema once (reset on gaps)
        self.decoder = ArrowStreamReader()

    def __repr__(self) -> str:
        return (f"<SubscriptionState {self.name!r} {self.stats.state} rows={len(self)} "
                f"offset={self.offset} epoch={self.epoch}>")

    # -- reading ------------------------------------------------------------------------

    def frame(self) -> pd.DataFrame:
        """The rows held, as a DataFrame of the caller's own.

        Built when asked for, not per update, and kept until the next update: asking
        again before then returns a (copy-on-write) copy of the same frame.
        """
        with self.lock:
            df = self._frame
            if df is None:
                df = self._frame = self._build_frame()
            return df.copy(deep=not _COPY_ON_WRITE)

    def _build_frame(self) -> pd.DataFrame:
        if self._table is not None:
            return self._table.to_frame()
        if self._replaced is not None:
            return self._replaced.copy()
        if self._rows is not None:
            self._fold()
            return self._rows.to_frame()
        return self.schema.empty_frame() if self.schema is not None else pd.DataFrame()

    def __len__(self) -> int:
        with self.lock:
            if self._table is not None:
                return len(self._table)
            if self._replaced is not None:
                return len(self._replaced)
            if self._rows is None:
                return 0
            n = len(self._rows) + self._pending_rows
            return n if self.window is None else min(n, self.window)

    def _end_offset(self) -> int:
        """The offset after the last row held, pending rows included."""
        assert self._rows is not None
        return self._rows.end_offset + self._skipped + self._pending_rows

    def _fold(self) -> None:
        """Copy the pending Arrow appends into the window, all at once (under the lock)."""
        assert self._rows is not None
        if self._skipped:  # everything in the window is older than the pending rows
            self._rows.reset(self._rows.end_offset + self._skipped)
            self._skipped = 0
        if not self._pending:
            return
        batches, self._pending, self._pending_rows = self._pending, deque(), 0
        if len(batches) == 1:
            data: pa.RecordBatch | pa.Table = batches[0]
        elif _concat_batches is not None:  # one batch of contiguous columns, in C++
            data = _concat_batches(list(batches))
        else:  # pragma: no cover - pyarrow < 19
            data = pa.Table.from_batches(list(batches))
        self._rows.append(data)

    def _drop_pending(self) -> None:
        self._pending, self._pending_rows, self._skipped = deque(), 0, 0

    def _bound_pending(self) -> None:
        """After a batch joined the pending ones: drop the pending batches a window's
        worth of newer rows hides (never copied), and copy into the window once
        :data:`MAX_PENDING_BATCHES` small or :data:`MAX_PENDING_LARGE_BATCHES` larger
        batches wait."""
        window, pending = self.window, self._pending
        if window is not None:
            while len(pending) > 1 and self._pending_rows - pending[0].num_rows >= window:
                n = pending.popleft().num_rows
                self._pending_rows -= n
                self._skipped += n
        k = len(pending)
        if k >= MAX_PENDING_BATCHES and (k >= MAX_PENDING_LARGE_BATCHES
                                         or self._pending_rows < LARGE_BATCH_ROWS * k):
            self._fold()

    @property
    def version(self) -> int:
        """Increases with every applied update (views compare it to skip idle frames)."""
        return self._version

    @property
    def resets(self) -> int:
        """Increases whenever the window restarts (snapshot, replace, gap)."""
        return self._resets

    @property
    def gaps(self) -> list[dict]:
        """The last :data:`GAP_HISTORY` gap events, oldest first."""
        with self.lock:
            return list(self._gaps)

    def resume_point(self) -> tuple[str, int] | None:
        """``(epoch, offset)`` to resubscribe with, or None before any data (§10.1)."""
        with self.lock:
            if self.epoch is None or self.offset is None:
                return None
            return self.epoch, self.offset

    def rows_since(self, offset: int | None) -> tuple[pd.DataFrame | None, int | None, bool]:
        """Rows of an append window that arrived at or after ``offset``.

        Returns ``(frame, end_offset, reset)``: ``reset`` is True when the reader
        must redraw everything (first call, a snapshot after a gap, keyed or
        replaced tables), in which case ``frame`` is the whole current window.
        """
        with self.lock:
            if self._rows is None or self._table is not None or self._replaced is not None:
                return (self.frame() if self.schema is not None else None), self.offset, True
            self._fold()
            end = self._rows.end_offset
            if offset is None or offset < self._rows.start_offset:
                return self._rows.to_frame(), end, True
            if offset >= end:
                return None, end, False
            return self._rows.to_frame(from_offset=offset), end, False

    # -- server messages (§10) -------------------------------------------------------------

    def receive(self, msg: dict, payload: Any = None) -> list[Event]:
        """Take one decoded server message for this topic; returns what happened.

        ``payload`` is the Arrow IPC part of a binary data frame (None for JSON).
        Data messages follow ``docs/protocol.md`` §10: an ``append``/``upsert`` of the
        held epoch whose ``next`` is at or below the held offset is dropped (no
        events), an overlapping one is trimmed to the new rows, and one that starts
        beyond the held offset is reported as a gap (reason ``hole``) before it is
        applied. Unknown types are ignored (§10.9).
        """
        if self.closed:
            return []
        mtype = msg.get("type")
        if mtype == "append" and payload is not None:
            return self._receive_append(msg, payload)
        if mtype in DATA_TYPES:
            return self._receive_data(mtype, msg, payload)
        if mtype == "subscribed":
            return self._subscribed(msg)
        if mtype == "gap":
            self.decoder.reset()
            return self.gap(msg)
        if mtype == "error":
            return self.error(f"{msg.get('code')}: {msg.get('message')}")
        return []

    def _subscribed(self, msg: dict) -> list[Event]:
        with self.lock:
            if msg.get("mode"):
                self.mode = msg["mode"]
            if msg.get("key"):
                self.key = tuple(msg["key"])
            if msg.get("schema") is not None:
                self.announced_schema = Schema.from_json(msg["schema"])
            self.decoder.reset()
        # "waiting": the topic has no rows (or does not exist) yet
        return self.set_state("live" if msg.get("schema") is not None else "waiting")

    def _receive_append(self, msg: dict, payload: Any) -> list[Event]:
        """A binary ``append``: the steady state of a live topic, in one step.

        When the append continues what is held (same epoch, its ``offset`` the held
        offset, no schema or mode in it, a plain rolling window) and its payload reads
        with the kept Arrow schema, the record batch joins the pending ones here: the
        same result as :meth:`_receive_data` → :meth:`apply` → :meth:`_append_pending`
        without their general checks. Anything else takes the general path.
        """
        held, rows = self.offset, self._rows
        if (held is None or rows is None or msg.get("offset") != held
                or msg.get("epoch") != self.epoch or "schema" in msg or "mode" in msg
                or self._table is not None or self._replaced is not None or self.key
                or self.stats.state == "waiting" or not self.decoder.cached):
            return self._receive_data("append", msg, payload)
        nxt = msg.get("next")
        if type(nxt) is not int or type(held) is not int or nxt <= held:
            return self._receive_data("append", msg, payload)
        decoder = self.decoder
        hits = decoder.hits
        data = decoder.read(payload, msg.get("rows"))
        if decoder.hits == hits:  # the schema changed: read in full
            return self._receive_data("append", msg, payload, data)
        n = data.num_rows
        ts = msg.get("ts")
        with self.lock:
            if self.closed:
                return []
            if held != rows.end_offset + self._skipped + self._pending_rows:
                return self._receive_data("append", msg, payload, data)
            self._frame = None
            pending = self._pending
            if type(data) is pa.RecordBatch:
                pending.append(data)
            else:  # several record batches: a merged append (docs/protocol.md §3.3)
                pending.extend(data.to_batches())
            self._pending_rows += n
            window = self.window
            if len(pending) >= MAX_PENDING_BATCHES or (
                    window is not None and self._pending_rows - pending[0].num_rows >= window):
                self._bound_pending()
            self.offset = nxt
            self._counted(n, ts)
        return [RowsApplied(self.name, "append", n, data, ts, self.schema)]

    def _receive_data(self, kind: str, msg: dict, payload: Any,
                      decoded: pa.RecordBatch | pa.Table | None = None) -> list[Event]:
        events: list[Event] = []
        schema_json = msg.get("schema")
        schema = Schema.from_json(schema_json) if schema_json is not None else (
            self.schema or self.announced_schema)
        offset, nxt, epoch = msg.get("offset"), msg.get("next"), msg.get("epoch")
        held = self.offset
        same = kind in ("append", "upsert") and held is not None and epoch == self.epoch \
            and isinstance(offset, int)
        if same and isinstance(nxt, int):
            if nxt <= held:
                return events  # already held: never apply twice
            if offset > held:
                # a hole the server should never produce; say so rather than hide it
                events += self.gap({"type": "gap", "topic": self.name, "epoch": epoch,
                                    "offset": held, "new_epoch": epoch, "until": offset,
                                    "reason": "hole"})
        if epoch != self.epoch:
            self.decoder.reset()  # a new history: its schema is read afresh
        if decoded is not None:  # read by _receive_append
            data = decoded
            if kind != "append":
                data = table_to_frame(data, schema)
        elif payload is not None and len(payload):
            # Arrow: the schema parsed once per topic (decoder); appends stay Arrow
            data = self.decoder.read(payload, msg.get("rows"))
            if kind != "append":
                data = table_to_frame(data, schema)
        else:
            data = decode_data(msg, schema, payload, trusted=True)
        if same and offset < held:  # an overlap: keep the rows not held yet
            skip = held - offset
            data = data.slice(skip) if isinstance(data, pa.Table | pa.RecordBatch) else \
                data.iloc[skip:].reset_index(drop=True)
            offset = held
        if self.stats.state == "waiting":
            events += self.set_state("live")
        events += self.apply(kind, data, schema=schema, epoch=epoch, offset=offset,
                             next_offset=nxt, ts=msg.get("ts"), mode=msg.get("mode"))
        return events

    # -- updates ------------------------------------------------------------------------

    def _ensure_storage(self, schema: Schema) -> None:
        if self.schema == schema and (self._rows is not None or self._table is not None):
            return
        self._drop_pending()  # rows of the storage being replaced
        self.schema = schema
        if self.key:
            self._table = KeyedTable(schema, self.key)
            self._rows = None
        else:
            self._table = None
            self._rows = ColumnWindow(schema, self.window, start_offset=self.offset or 0,
                                      arrow_strings=True)

    def apply(
        self,
        kind: str,
        data: pd.DataFrame | pa.Table,
        *,
        schema: Schema | None = None,
        epoch: str | None = None,
        offset: int | None = None,
        next_offset: int | None = None,
        ts: float | None = None,
        mode: str | None = None,
        key: Sequence[str] | None = None,
        columns: dict[str, Any] | None = None,
    ) -> list[Event]:
        """Apply one decoded update as given; returns ``[RowsApplied]`` (``[]`` once closed).

        ``kind`` is snapshot, append, upsert or replace. ``data`` may be an Arrow
        table (or record batch) for appends to a rolling window: no DataFrame is built,
        and its columns are copied into the window's arrays later, many batches at
        once (when the window is read, or enough batches wait: :meth:`_bound_pending`);
        pending batches that a window's worth of newer rows hides are dropped without
        ever being copied. ``columns``, the frame's columns as arrays
        (name → array), lets an append copy them without a Series per column.
        ``offset``/``next_offset`` place the rows (a source without offsets passes
        None: the rows follow what is held). ``ts`` is the server's time of the update
        in ms (for ``stats.lag_ms``).
        """
        if self.closed:
            return []
        if kind == "append" and type(data) is pa.RecordBatch and columns is None \
                and mode is None and not key:
            events = self._append_pending(data, schema, epoch, offset, next_offset, ts)
            if events is not None:
                return events
        if kind not in DATA_TYPES:
            raise ValueError(f"kind must be one of {DATA_TYPES}, got {kind!r}")
        if isinstance(data, pa.Table | pa.RecordBatch) and (
                kind != "append" or self._table is not None or self._rows is None):
            data = table_to_frame(data, schema or self.schema)
        with self.changed:
            self._frame = None
            if mode is not None:
                self.mode = mode
            if key:
                self.key = tuple(key)
            if schema is None and self.schema is None:
                schema = Schema.from_frame(data)
            if kind == "snapshot":
                self._resets += 1
                if self.mode == "replace":
                    self._replaced = data
                    self.schema = schema or self.schema
                else:
                    self.schema = None  # force fresh storage
                    self.offset = offset
                    self._ensure_storage(schema or Schema.from_frame(data))
                    if self._table is not None:
                        self._table.upsert(data)
                    else:
                        assert self._rows is not None
                        self._rows.reset(offset or 0)
                        self._rows.append(data)
            elif kind == "replace":
                self._resets += 1
                self._replaced = data
                if schema is not None:
                    self.schema = schema
            else:
                if schema is not None and schema is not self.schema and schema != self.schema:
                    self._ensure_storage(schema)
                elif self._rows is None and self._table is None:
                    self._ensure_storage(self.schema)  # type: ignore[arg-type]
                if self._table is not None:
                    self._table.upsert(data)
                else:
                    assert self._rows is not None
                    if offset is not None and offset != self._end_offset():
                        self._drop_pending()
                        self._rows.reset(offset)
                        self._resets += 1
                    if columns is not None:
                        self._fold()
                        self._rows.append(columns)
                    else:
                        self._fold_in(data)
            if epoch is not None:
                self.epoch = epoch
            if next_offset is not None:
                self.offset = next_offset
            elif self._rows is not None:
                self.offset = self._end_offset()
            n = len(data)
            self._counted(n, ts)
        return [RowsApplied(self.name, kind, n, data, ts, self.schema)]

    def _counted(self, n: int, ts: float | None) -> None:
        """Count one applied message of ``n`` rows (under ``self.changed``) and wake
        the waiters."""
        self._version += 1
        s = self.stats
        s.rows += n
        s.messages += 1
        self.meter.add(n)
        self.last_update = self.clock()
        if ts is not None:
            s.lag_ms = max(0.0, self.wall() * 1000.0 - ts)
        self.changed.notify_all()

    def _append_pending(self, batch: pa.RecordBatch, schema: Schema | None, epoch: str | None,
                        offset: int | None, next_offset: int | None, ts: float | None
                        ) -> list[Event] | None:
        """:meth:`apply` of an Arrow append that follows what is held, with the same
        schema (every message of a live topic): the batch joins the pending ones.
        None (nothing done) for any other append."""
        n = batch.num_rows
        with self.changed:
            if self._rows is None or self._table is not None or self._replaced is not None \
                    or (schema is not None and schema is not self.schema) \
                    or (offset is not None and offset != self._end_offset()):
                return None
            self._frame = None
            self._pending.append(batch)
            self._pending_rows += n
            self._bound_pending()
            if epoch is not None:
                self.epoch = epoch
            self.offset = next_offset if next_offset is not None else self._end_offset()
            self._counted(n, ts)
        return [RowsApplied(self.name, "append", n, batch, ts, self.schema)]

    def _fold_in(self, data: pd.DataFrame | pa.Table | pa.RecordBatch) -> None:
        """Append ``data`` to the window: Arrow data waits in ``_pending`` (see
        :meth:`apply`), anything else is copied now, after what is pending."""
        assert self._rows is not None
        if not isinstance(data, pa.Table | pa.RecordBatch):
            self._fold()
            self._rows.append(data)
            return
        if isinstance(data, pa.Table):
            self._pending.extend(data.to_batches())
        else:
            self._pending.append(data)
        self._pending_rows += len(data)
        self._bound_pending()

    def gap(self, gap: dict) -> list[Event]:
        """Record that rows were lost; the snapshot that follows resets the window (§10.4)."""
        with self.lock:
            self._gaps.append(gap)
            self.stats.gaps += 1
        return [GapDetected(self.name, gap)]

    def set_state(self, state: str) -> list[Event]:
        """Set the state shown in ``stats.state``; ``[StateChanged]`` if it changed."""
        if self.stats.state == state:
            return []
        self.stats.state = state
        return [StateChanged(self.name, state)]

    def error(self, message: str) -> list[Event]:
        """Count an error concerning this subscription (``stats.errors``, ``last_error``)."""
        s = self.stats
        s.errors += 1
        s.last_error = message
        return [ErrorReported(self.name, message)]

    def resize(self, rows: int | None) -> None:
        """Change the number of rows kept (None: unbounded)."""
        check_window(rows)
        with self.lock:
            self.window = rows
            self._frame = None
            if self._rows is not None:
                self._fold()
                self._rows.set_max_rows(rows)

    def close(self) -> list[Event]:
        """No more updates: later ones are ignored, waiters wake up (state ``closed``)."""
        with self.changed:
            self.closed = True
            events = self.set_state("closed")
            self.changed.notify_all()
        return events

    def release(self) -> None:
        """Drop the rows held (after :meth:`close`)."""
        with self.lock:
            self._rows = None
            self._table = None
            self._replaced = None
            self._frame = None
            self._drop_pending()
