"""What a subscriber must receive before its live updates, handed out in slices.

A subscription starts with a snapshot (fresh subscribe), the rows it missed (resume),
or a gap and a snapshot (resume impossible). Sent as one message, the snapshot of a
big topic can exceed the client's send queue on its own, and encoding it holds the
server's loop for as long as that takes. A :class:`Delivery` hands the same data out
as a sequence of :class:`Slice` s of bounded rows, each read from the topic **when
it is sent**:

- an ``append`` topic's snapshot: the first slice is a ``snapshot`` message holding
  the oldest retained rows ``[first, first + n)``; the following slices are
  ``append`` messages with contiguous offsets, up to the topic's ``next`` at the
  moment the last slice is taken. Rows published meanwhile are simply part of later
  slices: the subscriber sees the snapshot, then updates, in offset order, and is
  live exactly when the delivery has caught up with the topic (``done``).
- a resume within retention: ``append`` / ``upsert`` slices from the client's
  offset, the same way.
- keyed snapshots (one row per key, no per-row offsets) and ``replace`` tables
  cannot be split: they go as one message, taken when it is sent.

If rows the delivery has not sent yet leave the retention window, or the topic's
epoch changes, before they are sent, the next slice carries a :class:`Gap` (to be
sent first) and the delivery starts over with a fresh snapshot. Pure: no I/O, no
encoding; the server decides when to send and how many rows a slice may hold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from .topic import Gap, Kind, Topic, Update

GapReason = Literal["epoch", "retention", "slow_consumer"]


@dataclass(frozen=True)
class Slice:
    """One message of a delivery.

    ``start`` / ``end`` are the message's ``offset`` / ``next``; for a range of the
    log (``whole`` false) ``end`` is the most it may cover and the server may send
    fewer rows (see :meth:`Delivery.advance`). ``gap``, when set, must be sent just
    before this slice.
    """

    kind: Kind
    topic: str
    epoch: str
    start: int
    end: int
    whole: bool
    gap: Gap | None


class Delivery:
    """The data one subscription still needs before it is live, as slices."""

    def __init__(self, topic: str, epoch: str, *, cursor: int | None = None,
                 held: tuple[str | None, int | None] | None = None,
                 gap: GapReason | None = None) -> None:
        self.topic = topic
        self.epoch = epoch
        #: next log offset to send; ``None`` while the next message is a snapshot
        self.cursor = cursor
        #: (epoch, next offset) the client holds, once it holds anything (for gaps)
        self.held = held
        self.gap_reason: GapReason | None = gap
        self.done = False
        self.slices = 0
        #: rows it had still to send left the retention window (the client read too slowly)
        self.fell_behind = False

    def __repr__(self) -> str:
        return (f"<Delivery {self.topic} epoch={self.epoch} cursor={self.cursor} "
                f"gap={self.gap_reason} slices={self.slices} done={self.done}>")

    # -- how a subscription starts ---------------------------------------------------

    @classmethod
    def for_subscribe(cls, topic: Topic, epoch: str | None, offset: int | None
                      ) -> Delivery | None:
        """A subscribe, fresh (no resume point) or resuming at ``(epoch, offset)``.

        ``None`` when the client is already up to date. Mirrors :meth:`Topic.since`.
        """
        name = topic.name
        if epoch is None or offset is None:
            return cls(name, topic.epoch)
        held = (epoch, offset)
        if epoch != topic.epoch or offset > topic.next_offset or offset < 0:
            return cls(name, topic.epoch, held=held, gap="epoch")
        if offset == topic.next_offset:
            return None
        if topic.mode != "replace":
            topic.expire()
            if offset < topic.first_offset:
                return cls(name, topic.epoch, held=held, gap="retention")
        return cls(name, topic.epoch, cursor=offset, held=held)

    @classmethod
    def fresh(cls, topic: Topic, epoch: str | None = None, offset: int | None = None
              ) -> Delivery:
        """A snapshot for a subscription that waited for the topic's first rows; a gap
        (``epoch``) first if the client asked to resume in another epoch."""
        if epoch is not None and epoch != topic.epoch:
            return cls(topic.name, topic.epoch, held=(epoch, offset), gap="epoch")
        return cls(topic.name, topic.epoch)

    @classmethod
    def after_slow_consumer(cls, topic: Topic) -> Delivery:
        """Conflation: updates were dropped for this client; gap, then a snapshot."""
        return cls(topic.name, topic.epoch, held=(topic.epoch, None), gap="slow_consumer")

    @property
    def resumes(self) -> bool:
        """True when no gap precedes the data (a resume that loses nothing)."""
        return self.gap_reason is None

    # -- slices ------------------------------------------------------------------------

    def next_slice(self, topic: Topic, rows: int) -> Slice:
        """The next message to send, for at most ``rows`` rows of the log."""
        if self.done:
            raise RuntimeError("the delivery is complete")
        rows = max(1, rows)
        if topic.epoch != self.epoch:  # the topic's history was lost meanwhile
            if self.held is not None:
                self.gap_reason = self.gap_reason or "epoch"
            self.epoch, self.cursor = topic.epoch, None
        nxt = topic.next_offset
        if topic.mode != "replace":
            topic.expire()
            if self.cursor is not None and self.cursor < topic.first_offset:
                # rows not sent yet left the retention window: start over
                self.gap_reason = self.gap_reason or "retention"
                self.cursor = None
                self.fell_behind = True
        if self.cursor is None:
            kind: Kind = "snapshot"
            if topic.mode == "append":
                start = topic.first_offset
                end, whole = min(nxt, start + rows), False
            else:
                start = nxt if topic.mode == "keyed" else nxt - len(topic)
                end, whole = nxt, True
        elif topic.mode == "replace":
            kind, start, end, whole = "replace", nxt - len(topic), nxt, True
        else:
            kind = "upsert" if topic.mode == "keyed" else "append"
            start = self.cursor
            end, whole = min(nxt, start + rows), False
        gap = None
        if self.gap_reason is not None:
            held_epoch, held_offset = self.held if self.held is not None else (None, None)
            gap = Gap(self.topic, held_epoch, held_offset, topic.epoch, start, self.gap_reason)
        return Slice(kind, self.topic, topic.epoch, start, end, whole, gap)

    def advance(self, topic: Topic, sl: Slice, end: int | None = None) -> bool:
        """Record that ``sl`` was sent, covering up to ``end`` (default ``sl.end``);
        returns ``done``: the subscription is live from here on."""
        end = sl.end if end is None or sl.whole else end
        self.gap_reason = None
        self.held = (sl.epoch, end)
        self.cursor = end
        self.slices += 1
        self.done = sl.whole or end >= topic.next_offset
        return self.done


def slice_update(topic: Topic, sl: Slice, end: int | None = None) -> Update:
    """The rows of ``sl`` (up to ``end``) as an :class:`Update`, read from ``topic`` now."""
    if sl.whole:
        snap = topic.snapshot()
        return Update(sl.topic, sl.kind, snap.epoch, snap.offset, snap.next, snap.frame,
                      snap.ts)
    end = sl.end if end is None else end
    return Update(sl.topic, sl.kind, sl.epoch, sl.start, end, topic.rows(sl.start, end),
                  topic.updated_at or time.time())
