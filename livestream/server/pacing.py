"""Snapshots sent in slices, paced by each client's send queue, encoded once for all.

A new subscription's snapshot (or the rows its resume missed) is a
:class:`~livestream.core.delivery.Delivery`: a sequence of slices read from the
topic as they are sent (docs/protocol.md §4.4 and §5.6). :class:`SnapshotPacer`
decides when each slice goes:

- **Paced by the client's queue.** A client gets its next slice only while the bytes
  queued for it are below ``send_queue_bytes / 2`` (``ServerConfig.pacing_bytes``);
  otherwise the pacer waits until its socket has taken what is queued, then goes on.
  Snapshot bytes therefore count against the client's queue like any other, a fast
  client subscribing to many big topics is never closed for them (half of its queue
  stays free for live updates), and a client that does not read holds at most half
  its queue until ``send_timeout`` drops it.
- **Bounded loop turns.** Each loop turn sends at most ``turn_bytes`` (four slices)
  of slices over all clients, one slice per client per turn in round-robin, so a
  burst of subscriptions never holds the loop for more than that.
- **Encoded once.** Encoded slices are kept in a small cache keyed by topic, epoch,
  kind, encoding and first offset (rows of a topic's log never change within an
  epoch): forty clients subscribing to the same topic at once share every slice.

A client that reads so slowly that rows still to be sent leave the topic's retention
window is a slow consumer: with ``slow_consumer="close"`` it is closed with 4000, with
``"conflate"`` it gets a gap and the delivery starts over from a fresh snapshot.

Slices aim at ``ServerConfig.slice_bytes``; the rows per slice are learned per topic
and encoding from the slices encoded so far, and a slice that comes out bigger is
encoded again with fewer rows. Keyed snapshots and ``replace`` tables cannot be
split and go as one message, when the client's queue is empty if they are big.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from ..core.delivery import Delivery, Slice, slice_update
from ..core.schema import Schema
from ..core.topic import Topic
from ._tornado_compat import closing, on_flushed

if TYPE_CHECKING:
    from .app import LivestreamServer
    from .websocket import ClientHandler

Encoded = tuple[bytes, int, int]  # (frame bytes, next offset, rows)


class SliceCache:
    """Encoded slices, least recently used dropped first, within ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple, Encoded] = OrderedDict()

    def get(self, key: tuple) -> Encoded | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: tuple, item: Encoded) -> None:
        size = len(item[0])
        if size > self.max_bytes // 2 or key in self._items:
            return
        self._items[key] = item
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= len(old[0])

    def __len__(self) -> int:
        return len(self._items)


def _guess_row_bytes(schema: Schema, encoding: str) -> float:
    """A first guess of encoded bytes per row, before any slice of a topic is encoded."""
    size = 1.0
    for f in schema:
        if f.type in ("string", "category"):
            size += 16
        else:
            size += 12 if encoding == "json" else 9
    return size


class SnapshotPacer:
    """Sends deliveries slice by slice to the clients of one server (on its loop)."""

    def __init__(self, server: LivestreamServer) -> None:
        self.server = server
        cfg = server.config
        self.slice_bytes = cfg.slice_bytes
        #: slice bytes sent per loop turn, over all clients
        self.turn_bytes = 4 * self.slice_bytes
        #: the most slice bytes one turn has sent (a structural check for tests)
        self.max_turn_bytes = 0
        self.cache = SliceCache(8 * self.slice_bytes)
        self._ready: deque[ClientHandler] = deque()
        self._spent = 0
        self._scheduled = False
        self._rows: dict[tuple[str, str], int] = {}

    # -- deliveries --------------------------------------------------------------------

    def start(self, h: ClientHandler, name: str, delivery: Delivery) -> None:
        """Send ``delivery`` to ``h`` (replacing one in progress for the topic); the
        topic is ``"sending"`` for ``h`` until it is done, then ``"live"``."""
        if h.deliveries.pop(name, None) is None:
            self.server.metrics.snapshots_pending += 1
        h.deliveries[name] = delivery
        h.topics[name] = "sending"
        if self._spent < self.turn_bytes:
            self._step(h)
        else:
            self._enqueue(h)

    def cancel(self, h: ClientHandler, name: str) -> None:
        """Stop sending ``name`` to ``h`` (unsubscribed)."""
        if h.deliveries.pop(name, None) is not None:
            self.server.metrics.snapshots_pending -= 1

    def forget(self, h: ClientHandler) -> None:
        """``h`` is gone."""
        self.server.metrics.snapshots_pending -= len(h.deliveries)
        h.deliveries.clear()

    # -- turns -------------------------------------------------------------------------

    def _enqueue(self, h: ClientHandler) -> None:
        if not h.pacing_queued:
            h.pacing_queued = True
            self._ready.append(h)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop = self.server.loop or asyncio.get_running_loop()
            loop.call_soon(self._turn)

    def _turn(self) -> None:
        self._scheduled = False
        self._spent = 0
        for _ in range(len(self._ready)):
            if self._spent >= self.turn_bytes:
                break
            h = self._ready.popleft()
            h.pacing_queued = False
            self._step(h)
        if self._ready:
            self._schedule()

    def _spend(self, n: int) -> None:
        self._spent += n
        if self._spent > self.max_turn_bytes:
            self.max_turn_bytes = self._spent
        self._schedule()  # the next turn starts a new budget

    # -- one slice -----------------------------------------------------------------------

    def _step(self, h: ClientHandler) -> None:
        """Send ``h`` the next slice of its first delivery if its queue allows."""
        if closing(h) or not h.deliveries:
            return
        name, d = next(iter(h.deliveries.items()))
        server = self.server
        topic = server.backplane.get(name)
        if topic is None or topic.schema is None:  # cannot happen: started with a schema
            self.cancel(h, name)
            return
        q = h.queue_now()
        room = server.config.pacing_bytes - q
        if q > 0 and room < self.slice_bytes:
            self._wait(h)
            return
        enc = h.encoding
        sl = d.next_slice(topic, self._rows.get((name, enc)) or self._first_rows(topic, enc))
        if d.fell_behind and server.config.slow_consumer == "close":
            # the topic outran the client: a slow consumer, as if its queue had overflowed
            h._over_limit()
            return
        data, end, rows = self._encoded(topic, sl, enc)
        if q > 0 and len(data) > room:  # a whole table: send it once the queue is empty
            self._wait(h)
            return
        if sl.gap is not None:
            h.send_gap(sl.gap)
        if not h.send_frame(data, binary=enc == "arrow", size=None, rows=rows):
            return
        server.metrics.snapshot_slices += 1
        self._spend(len(data))
        if d.advance(topic, sl, end):
            del h.deliveries[name]
            server.metrics.snapshots_pending -= 1
            h.topics[name] = "live"
        if h.deliveries:
            self._enqueue(h)

    def _wait(self, h: ClientHandler) -> None:
        """Go on with ``h`` once its socket has taken what is queued for it now."""
        self.server.metrics.snapshot_waits += 1
        if h.drain_waiting or h.out_stream is None:
            return
        h.drain_waiting = True

        def drained() -> None:
            h.drain_waiting = False
            if h.deliveries and not closing(h):
                self._enqueue(h)

        on_flushed(h.out_stream, drained)

    # -- encoding ------------------------------------------------------------------------

    def _first_rows(self, topic: Topic, enc: str) -> int:
        assert topic.schema is not None
        return max(1, int(self.slice_bytes * 0.9 / _guess_row_bytes(topic.schema, enc)))

    def _encoded(self, topic: Topic, sl: Slice, enc: str) -> Encoded:
        """The frame of ``sl`` (possibly covering fewer rows than ``sl.end``), from the
        cache or encoded now."""
        key = (sl.topic, sl.epoch, sl.kind, enc, sl.start, sl.end if sl.whole else None)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        assert topic.schema is not None
        budget = self.slice_bytes
        end = sl.end
        while True:
            u = slice_update(topic, sl, end)
            data = self.server.encode(u, topic.schema, enc)
            self.server.metrics.snapshot_encodes += 1
            rows = u.rows
            if sl.whole or rows <= 1:
                break
            if len(data) > budget or len(data) >= budget // 4:
                # learn the rows that fit a slice of this topic in this encoding
                self._rows[(sl.topic, enc)] = max(1, int(rows * budget * 0.9 / len(data)))
            if len(data) <= budget:
                break
            end = sl.start + self._rows[(sl.topic, enc)]
        item = (data, u.next, rows)
        self.cache.put(key, item)
        return item
