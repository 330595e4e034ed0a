"""Topics: named tables with a schema, a retained history, offsets and an epoch.

A topic is plain state, no I/O. Three modes:

``append``
    rows accumulate; the last ``retention_rows`` rows (and optionally only those
    younger than ``retention_seconds``) are retained for snapshots and resume.
``keyed``
    rows are upserted by key; the snapshot is the current table; the last
    ``retention_rows`` upserts are retained for resume.
``replace``
    every update replaces the whole table (derived topics without a key).

Every accepted row gets the next integer offset, starting at 0. The epoch is a
random id of this history: a restarted server gets a new one, so a client
holding an offset of an older epoch is told it has a gap.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from ..errors import SchemaError, TopicError
from .keyed import KeyedTable
from .schema import Schema
from .window import ColumnWindow

Mode = Literal["append", "keyed", "replace"]
Kind = Literal["append", "upsert", "replace", "snapshot"]

#: Topic names: 1–128 characters of letters, digits, ``_ - . :`` and ``/``, not starting
#: with ``.`` or ``/``.
TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9_\-:][A-Za-z0-9_\-.:/]{0,127}$")

DEFAULT_RETENTION_ROWS = 100_000


def check_topic_name(name: object) -> str:
    """Return ``name`` if it is a valid topic name, else raise :class:`TopicError`."""
    if not isinstance(name, str) or not TOPIC_NAME_RE.match(name):
        raise TopicError(
            f"invalid topic name {name!r}: use 1-128 of A-Z a-z 0-9 _ - . : /, "
            "not starting with . or /",
            code="bad_topic_name",
        )
    return name


def new_epoch() -> str:
    """A fresh random epoch id (16 hex digits)."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Update:
    """Rows a topic accepted (or a full table, for ``snapshot``/``replace``).

    ``offset`` is the offset of the first row in ``frame`` and ``next`` the offset
    after the last: a client that applied this holds everything below ``next``.
    """

    topic: str
    kind: Kind
    epoch: str
    offset: int
    next: int
    frame: pd.DataFrame
    ts: float = field(default_factory=time.time)
    #: the rows already encoded as an Arrow IPC stream, when a backplane has them
    #: (a shared backplane stores these bytes; every node sends them on as they are)
    payload: bytes | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def rows(self) -> int:
        """Rows in ``frame`` (read once per subscriber per update: computed once)."""
        return len(self.frame)


@dataclass(frozen=True)
class Gap:
    """The rows from ``offset`` (of ``epoch``) up to ``until`` are lost to a client."""

    topic: str
    epoch: str | None
    offset: int | None
    new_epoch: str
    until: int
    reason: Literal["epoch", "retention", "slow_consumer"]


@dataclass(frozen=True)
class Resume:
    """What a client resuming at (epoch, offset) must receive.

    Either ``update`` holds exactly the missed rows (possibly none), or ``gap`` is
    set and ``snapshot`` holds the fresh state to start over from.
    """

    update: Update | None = None
    gap: Gap | None = None
    snapshot: Update | None = None


class Topic:
    """One topic's schema, retained history, offsets and epoch."""

    def __init__(
        self,
        name: str,
        *,
        mode: Mode = "append",
        key: Sequence[str] | str | None = None,
        retention_rows: int = DEFAULT_RETENTION_ROWS,
        retention_seconds: float | None = None,
        schema: Schema | None = None,
        epoch: str | None = None,
        clock: Callable[[], float] = time.time,
        next_offset: int = 0,
    ) -> None:
        """``next_offset`` starts the history there (a mirror of a shared log whose
        older rows are no longer retained); ``epoch`` adopts an existing history's."""
        self.name = check_topic_name(name)
        if isinstance(key, str):
            key = (key,)
        if key:
            mode = "keyed"
        if mode == "keyed" and not key:
            raise TopicError(f"keyed topic {name!r} needs key columns")
        if mode not in ("append", "keyed", "replace"):
            raise TopicError(f"unknown topic mode {mode!r}")
        if retention_rows < 1:
            raise TopicError("retention_rows must be at least 1")
        self.mode: Mode = mode
        self.key: tuple[str, ...] = tuple(key or ())
        self.retention_rows = retention_rows
        self.retention_seconds = retention_seconds
        self.epoch = epoch or new_epoch()
        self.clock = clock
        self.schema: Schema | None = None
        self._log: ColumnWindow | None = None  # append rows, or upserts of a keyed topic
        self._table: KeyedTable | None = None  # keyed topics
        self._replaced: pd.DataFrame | None = None  # replace topics
        self._next = next_offset
        self._batches: deque[tuple[int, float]] = deque()  # (end offset, time) for age expiry
        self.updated_at: float | None = None
        if schema is not None:
            self._set_schema(schema)

    # -- state -------------------------------------------------------------------------

    @property
    def next_offset(self) -> int:
        """The offset the next accepted row will get (= rows accepted so far)."""
        return self._next

    @property
    def first_offset(self) -> int:
        """The oldest offset still retained for resume."""
        return self._log.start_offset if self._log is not None else self._next

    def __len__(self) -> int:
        """Rows in the current snapshot."""
        if self.mode == "keyed":
            return len(self._table) if self._table is not None else 0
        if self.mode == "replace":
            return len(self._replaced) if self._replaced is not None else 0
        return len(self._log) if self._log is not None else 0

    def _set_schema(self, schema: Schema) -> None:
        self.schema = schema
        if self.mode == "keyed":
            self._table = KeyedTable(schema, self.key)
        if self.mode != "replace":
            self._log = ColumnWindow(schema, self.retention_rows, start_offset=self._next)

    def conform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Validate a batch against the schema (fixing it from the first batch)."""
        if self.schema is None:
            schema = Schema.from_frame(df)
            if self.mode == "keyed":
                for k in self.key:
                    if k not in schema.names:
                        raise SchemaError(
                            f"key column {k!r} is not in the batch {schema.names}", column=k
                        )
            return schema.conform(df)
        return self.schema.conform(df)

    # -- writing -----------------------------------------------------------------------

    def publish(self, df: pd.DataFrame) -> Update:
        """Accept a batch: append (or upsert, for keyed topics) and give it offsets.

        Raises :class:`SchemaError` (nothing applied) if the batch does not fit.
        """
        if self.mode == "replace":
            return self.replace(df)
        batch = self.conform(df)
        if self.schema is None:
            self._set_schema(Schema.from_frame(batch))
        assert self._log is not None
        if self.mode == "keyed":
            assert self._table is not None
            batch = self._table.upsert(batch)
        offset = self._next
        self._log.append(batch)
        self._next += len(batch)
        now = self.clock()
        self.updated_at = now
        if self.retention_seconds is not None and len(batch):
            self._batches.append((self._next, now))
            self.expire(now)
        kind: Kind = "upsert" if self.mode == "keyed" else "append"
        return Update(self.name, kind, self.epoch, offset, self._next, batch, now)

    def restore_keyed(self, table: pd.DataFrame, history: Sequence[pd.DataFrame] = ()) -> None:
        """Start a keyed topic (empty, with its schema) from a saved state: ``history``
        are upserts already applied to ``table`` (kept for resume only, from
        ``next_offset`` on) and ``table`` the current rows. A mirror of a shared log
        rebuilt from a checkpoint uses this instead of replaying every upsert."""
        if self.mode != "keyed" or self._log is None or self._table is None or len(self._log):
            raise TopicError(f"topic {self.name!r}: restore_keyed needs an empty keyed topic "
                             "with a schema")
        for batch in history:
            batch = self.conform(batch)
            self._log.append(batch)
            self._next += len(batch)
        self._table.upsert(self.conform(table))

    def replace(self, df: pd.DataFrame) -> Update:
        """Replace the whole table (``replace`` topics)."""
        if self.mode != "replace":
            raise TopicError(f"topic {self.name!r} is {self.mode}, not replace")
        batch = self.conform(df)
        if self.schema is None:
            self._set_schema(Schema.from_frame(batch))
        offset = self._next
        self._next += len(batch)
        self._replaced = batch
        now = self.clock()
        self.updated_at = now
        return Update(self.name, "replace", self.epoch, offset, self._next, batch, now)

    def expire(self, now: float | None = None) -> None:
        """Drop rows older than ``retention_seconds`` (append topics)."""
        if self.retention_seconds is None or self._log is None:
            return
        now = self.clock() if now is None else now
        cutoff = now - self.retention_seconds
        drop_to = None
        while self._batches and self._batches[0][1] < cutoff:
            drop_to = self._batches.popleft()[0]
        if drop_to is not None:
            self._log.drop_before(drop_to)

    # -- reading -----------------------------------------------------------------------

    def frame(self) -> pd.DataFrame:
        """The current snapshot's rows as a DataFrame."""
        if self.schema is None:
            return pd.DataFrame()
        if self.mode == "keyed":
            assert self._table is not None
            return self._table.to_frame()
        if self.mode == "replace":
            assert self._replaced is not None
            return self._replaced
        self.expire()
        assert self._log is not None
        return self._log.to_frame()

    def rows(self, start: int, end: int) -> pd.DataFrame:
        """Retained rows with offsets in ``[start, end)``: appended rows, or the upserts
        of a keyed topic. Rows below ``first_offset`` are no longer there."""
        if self._log is None:
            return self.frame().iloc[0:0]
        return self._log.to_frame(from_offset=start, to_offset=end)

    def snapshot(self) -> Update:
        """The current state: the retained window, keyed table or replaced table.

        Its ``offset`` is the first offset it holds (append) and ``next`` the
        offset the next update will start at.
        """
        frame = self.frame()
        if self.mode == "append":
            first = self.first_offset
        else:
            first = self._next - len(frame) if self.mode == "replace" else self._next
        return Update(self.name, "snapshot", self.epoch, first, self._next, frame,
                      self.updated_at or self.clock())

    def since(self, epoch: str | None, offset: int | None) -> Resume:
        """What a client that holds everything below ``offset`` of ``epoch`` misses."""
        if epoch is None or offset is None:
            return Resume(snapshot=self.snapshot())
        if epoch != self.epoch or offset > self._next or offset < 0:
            snap = self.snapshot()
            return Resume(gap=Gap(self.name, epoch, offset, self.epoch, snap.offset, "epoch"),
                          snapshot=snap)
        if offset == self._next:
            return Resume(update=None)
        if self.mode == "replace":
            return Resume(update=self._as_replace())
        self.expire()
        if offset < self.first_offset:
            snap = self.snapshot()
            return Resume(gap=Gap(self.name, epoch, offset, self.epoch, snap.offset, "retention"),
                          snapshot=snap)
        assert self._log is not None
        frame = self._log.to_frame(from_offset=offset)
        kind: Kind = "upsert" if self.mode == "keyed" else "append"
        return Resume(update=Update(self.name, kind, self.epoch, offset, self._next, frame,
                                    self.updated_at or self.clock()))

    def _as_replace(self) -> Update:
        snap = self.snapshot()
        return Update(self.name, "replace", self.epoch, snap.offset, snap.next, snap.frame,
                      snap.ts)

    def info(self) -> dict:
        """A JSON-able description (``GET /topics``)."""
        return {
            "name": self.name,
            "mode": self.mode,
            "key": list(self.key),
            "schema": self.schema.to_json() if self.schema is not None else None,
            "rows": len(self),
            "epoch": self.epoch,
            "first_offset": self.first_offset,
            "next_offset": self._next,
            "retention_rows": self.retention_rows,
            "retention_seconds": self.retention_seconds,
            "updated_at": self.updated_at,
        }
