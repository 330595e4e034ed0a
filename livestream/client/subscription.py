"""Subscriptions: the live window of a topic (or of an outside feed) as pandas.

A :class:`Subscription` is filled by a source (a livestream :class:`Connection`
or an outside-feed stream) on the source's event loop and read from anywhere:
``.df`` assembles the current window from columnar buffers under a lock, so a
script's main thread can read while a background loop writes.

Views (charts, tables) do not need a callback per message: they ask
:meth:`Subscription.rows_since` for what arrived after the offset they last drew.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa

from ..core.keyed import KeyedTable
from ..core.schema import Schema
from ..core.window import ColumnWindow
from ..errors import ConnectionClosed, LivestreamError
from ..notebook.mixin import ViewsMixin
from ..protocol.codec import table_to_frame

if TYPE_CHECKING:
    pass

log = logging.getLogger("livestream.client")

DEFAULT_WINDOW = 100_000

UpdateKind = Literal["snapshot", "append", "upsert", "replace"]
UpdateCallback = Callable[["Subscription", pd.DataFrame, str], Any]
GapCallback = Callable[["Subscription", dict], Any]


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


class Subscription(ViewsMixin):
    """A live, bounded window of one topic or feed stream.

    Attributes worth knowing: ``df`` (the window as a DataFrame), ``offset``
    (the offset after the last row received: a resume point), ``epoch``,
    ``stats``. Keyed topics keep one row per key instead of a rolling window.
    """

    def __init__(
        self,
        name: str,
        *,
        window: int | None = DEFAULT_WINDOW,
        key: Sequence[str] | None = None,
        source: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if window is not None and window < 1:
            raise ValueError("window must be a positive number of rows (or None for unbounded)")
        self.name = name
        self.window = window
        self.key: tuple[str, ...] = tuple(key or ())
        self.mode: str | None = "keyed" if self.key else None
        self.source = source
        self.loop = loop
        self.schema: Schema | None = None
        self.epoch: str | None = None
        self.offset: int | None = None  # next offset expected
        self._lock = threading.RLock()
        self._rows: ColumnWindow | None = None
        self._table: KeyedTable | None = None
        self._replaced: pd.DataFrame | None = None
        self._version = 0  # bumps on every applied update
        self._resets = 0  # bumps when the window restarts (snapshot, gap)
        self._cond = threading.Condition(self._lock)
        self._update_cbs: list[UpdateCallback] = []
        self._gap_cbs: list[GapCallback] = []
        self._gaps: list[dict] = []
        self._meter = RateMeter()
        self._last_update: float | None = None
        self._closed = False
        self.paused = False
        self.stats_data = SubscriptionStats()

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Subscription {self.name!r} {s.state} rows={len(self)} "
            f"offset={self.offset} epoch={self.epoch}>"
        )

    # -- reading ------------------------------------------------------------------------

    @property
    def df(self) -> pd.DataFrame:
        """The live window as a new pandas DataFrame (safe to keep and modify)."""
        with self._lock:
            if self._table is not None:
                return self._table.to_frame()
            if self._replaced is not None:
                return self._replaced.copy()
            if self._rows is not None:
                return self._rows.to_frame()
            return self.schema.empty_frame() if self.schema is not None else pd.DataFrame()

    def __len__(self) -> int:
        with self._lock:
            if self._table is not None:
                return len(self._table)
            if self._replaced is not None:
                return len(self._replaced)
            return len(self._rows) if self._rows is not None else 0

    @property
    def version(self) -> int:
        """Increases with every applied update; views compare it to skip idle frames."""
        return self._version

    @property
    def resets(self) -> int:
        """Increases whenever the window restarts from a snapshot (after a gap, say)."""
        return self._resets

    def rows_since(self, offset: int | None) -> tuple[pd.DataFrame | None, int | None, bool]:
        """Rows of an append window that arrived at or after ``offset``.

        Returns ``(frame, end_offset, reset)``: ``reset`` is True when the view must
        redraw everything (first call, snapshot after a gap, keyed or replaced
        tables), in which case ``frame`` is the whole current window.
        """
        with self._lock:
            if self._rows is None or self._table is not None or self._replaced is not None:
                return self.df if self.schema is not None else None, self.offset, True
            end = self._rows.end_offset
            if offset is None or offset < self._rows.start_offset:
                return self._rows.to_frame(), end, True
            if offset >= end:
                return None, end, False
            return self._rows.to_frame(from_offset=offset), end, False

    @property
    def stats(self) -> SubscriptionStats:
        """Counters: rows, rows/s, last update age, lag, reconnects, gaps, errors."""
        s = self.stats_data
        s.rows_per_s = self._meter.rate()
        s.last_update_age = (
            None if self._last_update is None else time.monotonic() - self._last_update
        )
        return s

    @property
    def gaps(self) -> list[dict]:
        """Every gap event seen (most recent last)."""
        return list(self._gaps)

    def _resize(self, rows: int | None) -> None:
        """Change the number of rows kept (the views' ``set_window`` calls this)."""
        if rows is not None and rows < 1:
            raise ValueError("window must be a positive number of rows (or None for unbounded)")
        with self._lock:
            self.window = rows
            if self._rows is not None:
                self._rows.set_max_rows(rows)

    # -- callbacks ----------------------------------------------------------------------

    def on_update(self, callback: UpdateCallback) -> UpdateCallback:
        """Call ``callback(sub, frame, kind)`` on the source's loop after each update.

        ``frame`` holds the rows of that update only. Usable as a decorator.
        Exceptions are logged and counted in ``stats.errors``; they stop nothing.
        """
        self._update_cbs.append(callback)
        return callback

    def on_gap(self, callback: GapCallback) -> GapCallback:
        """Call ``callback(sub, gap)`` when rows were lost (``gap`` is a dict)."""
        self._gap_cbs.append(callback)
        return callback

    def remove_callback(self, callback: Callable) -> None:
        for lst in (self._update_cbs, self._gap_cbs):
            if callback in lst:
                lst.remove(callback)

    def _run_callbacks(self, cbs: list, *args: Any) -> None:
        for cb in list(cbs):
            try:
                cb(self, *args)
            except Exception as exc:
                s = self.stats_data
                s.errors += 1
                s.last_error = f"callback {getattr(cb, '__name__', cb)!r}: {exc!r}"
                log.exception("livestream: callback on %r failed", self.name)

    # -- waiting ------------------------------------------------------------------------

    def wait(self, rows: int = 1, timeout: float | None = 10.0) -> Subscription:
        """Block until the window holds at least ``rows`` rows (scripts; not on the loop).

        Raises ``TimeoutError`` after ``timeout`` seconds, and
        :class:`ConnectionClosed` if the subscription closes first.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self.loop:
            raise LivestreamError(
                "Subscription.wait() would block the event loop that feeds it; "
                "use 'await sub.wait_async(...)' in async code and notebooks"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self) < rows:
                if self._closed:
                    raise ConnectionClosed(f"subscription {self.name!r} is closed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"subscription {self.name!r}: {len(self)} rows after {timeout}s, "
                        f"wanted {rows}"
                    )
                self._cond.wait(left)
        return self

    async def wait_async(self, rows: int = 1, timeout: float | None = 10.0) -> Subscription:
        """Await until the window holds at least ``rows`` rows (on the feeding loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self) < rows:
            if self._closed:
                raise ConnectionClosed(f"subscription {self.name!r} is closed")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"subscription {self.name!r}: {len(self)} rows after {timeout}s, wanted {rows}"
                )
            await asyncio.sleep(0.01)
        return self

    # -- feeding (called by sources, on their loop) ----------------------------------------

    def _ensure_storage(self, schema: Schema) -> None:
        if self.schema == schema and (self._rows is not None or self._table is not None):
            return
        self.schema = schema
        if self.key:
            self._table = KeyedTable(schema, self.key)
            self._rows = None
        else:
            self._table = None
            self._rows = ColumnWindow(schema, self.window, start_offset=self.offset or 0)

    def _apply(
        self,
        kind: str,
        frame: pd.DataFrame,
        *,
        schema: Schema | None = None,
        epoch: str | None = None,
        offset: int | None = None,
        next_offset: int | None = None,
        ts: float | None = None,
        mode: str | None = None,
        key: Sequence[str] | None = None,
        columns: dict[str, Any] | None = None,
    ) -> None:
        """Apply one update. ``kind`` is snapshot, append, upsert or replace.

        ``frame`` may be an Arrow table for appends to a rolling window: its columns
        are copied into the window without a DataFrame being built (one is built for
        ``on_update`` callbacks only if there are any). ``columns``, the frame's
        columns as arrays (name → array), lets an append to a rolling window copy them
        without a Series per column.
        """
        if self._closed:
            return
        if isinstance(frame, pa.Table) and (kind != "append" or self._table is not None
                                            or self._rows is None):
            frame = table_to_frame(frame, schema or self.schema)
        with self._cond:
            if mode is not None:
                self.mode = mode
            if key:
                self.key = tuple(key)
            if schema is None and self.schema is None:
                schema = Schema.from_frame(frame)
            if kind == "snapshot":
                self._resets += 1
                if self.mode == "replace":
                    self._replaced = frame
                    self.schema = schema or self.schema
                else:
                    assert schema is not None or self.schema is not None
                    self.schema = None  # force fresh storage
                    self.offset = offset
                    self._ensure_storage(schema or Schema.from_frame(frame))
                    if self._table is not None:
                        self._table.upsert(frame)
                    else:
                        assert self._rows is not None
                        self._rows.reset(offset or 0)
                        self._rows.append(frame)
            elif kind == "replace":
                self._resets += 1
                self._replaced = frame
                if schema is not None:
                    self.schema = schema
            else:
                if schema is not None and schema != self.schema:
                    self._ensure_storage(schema)
                elif self._rows is None and self._table is None:
                    self._ensure_storage(self.schema)  # type: ignore[arg-type]
                if self._table is not None:
                    self._table.upsert(frame)
                else:
                    assert self._rows is not None
                    if offset is not None and offset != self._rows.end_offset:
                        # a source that does not track offsets (outside feeds) passes None
                        self._rows.reset(offset)
                        self._resets += 1
                    self._rows.append(frame if columns is None else columns)
            if epoch is not None:
                self.epoch = epoch
            if next_offset is not None:
                self.offset = next_offset
            elif self._rows is not None:
                self.offset = self._rows.end_offset
            self._version += 1
            n = len(frame)
            s = self.stats_data
            s.rows += n
            s.messages += 1
            self._meter.add(n)
            self._last_update = time.monotonic()
            if ts is not None:
                s.lag_ms = max(0.0, time.time() * 1000.0 - ts)
            self._cond.notify_all()
        if self._update_cbs:
            if isinstance(frame, pa.Table):
                frame = table_to_frame(frame, self.schema)
            self._run_callbacks(self._update_cbs, frame, kind)

    def _gap(self, gap: dict) -> None:
        """Record a gap event (rows lost); the snapshot that follows resets the window."""
        self._gaps.append(gap)
        if len(self._gaps) > 100:
            del self._gaps[0]
        self.stats_data.gaps += 1
        self._run_callbacks(self._gap_cbs, gap)

    def _set_state(self, state: str) -> None:
        self.stats_data.state = state

    def _error(self, message: str) -> None:
        self.stats_data.errors += 1
        self.stats_data.last_error = message

    def _mark_closed(self) -> None:
        with self._cond:
            self._closed = True
            self.stats_data.state = "closed"
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- control ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving and release the window. Safe to call twice."""
        if self._closed:
            return
        src = self.source
        if src is not None and hasattr(src, "_unsubscribe"):
            src._unsubscribe(self)
        self._mark_closed()
        with self._lock:
            self._rows = None
            self._table = None
            self._replaced = None

    def pause(self) -> None:
        """Stop applying updates until :meth:`resume` (the source decides how: a
        livestream topic unsubscribes and later resumes by offset, losing nothing
        within retention)."""
        if self.paused:
            return
        self.paused = True
        self.stats_data.state = "paused"
        src = self.source
        if src is not None and hasattr(src, "_pause"):
            src._pause(self)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if not self.paused:
            return
        self.paused = False
        src = self.source
        if src is not None and hasattr(src, "_resume"):
            src._resume(self)
