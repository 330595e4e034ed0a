"""Bytes queued for clients: per client, for the whole process, and for how long.

A frame the server writes and the client's socket does not take at once waits in
that connection's Tornado write buffer (its *send queue*). :class:`SendBudget` keeps

- each client's count (``ClientHandler.queued``), read from its buffer whenever the
  server writes to it and on every sweep;
- their sum, the process total, against ``max_send_bytes_total``: when a write takes
  the running sum over it, the exact sum is recomputed, and while it is still over,
  the clients with the largest queues are disconnected (close code 4000, connection
  aborted so their queues are freed at once);
- for each client with bytes queued, when its socket last took any; after
  ``send_timeout`` without progress it is disconnected the same way;
- conflating clients (``slow_consumer="conflate"``): once their queue drained below
  half of ``send_queue_bytes`` they get a gap and fresh snapshots.

The running sum only over-estimates between sweeps (sockets take bytes without
telling us), so the budget is never exceeded by more than the frame being written.
Only clients with bytes queued are swept (every 50 ms while there are any): an idle
server does no work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ._tornado_compat import closing

if TYPE_CHECKING:
    from .app import LivestreamServer
    from .websocket import ClientHandler

log = logging.getLogger("livestream.server")

#: seconds between sweeps while some client has bytes queued
SWEEP_INTERVAL = 0.05


class SendBudget:
    """The send-queue accounting of one server (on its loop)."""

    def __init__(self, server: LivestreamServer) -> None:
        self.server = server
        self.config = server.config
        self.metrics = server.metrics
        self.total = 0
        self.busy: set[ClientHandler] = set()
        self._timer: asyncio.TimerHandle | None = None

    def changed(self, h: ClientHandler, queued: int) -> None:
        """``h`` has ``queued`` bytes queued now (read from its buffer)."""
        self.total += queued - h.queued
        h.queued = queued
        m = self.metrics
        m.send_queue_bytes = self.total
        if self.total > m.send_queue_bytes_peak:
            m.send_queue_bytes_peak = self.total
        if queued and h not in self.busy:
            self.busy.add(h)
            h.progress = (h.bytes_out - queued, time.monotonic())
            self._arm()
        if self.total > self.config.max_send_bytes_total:
            self._enforce()

    def forget(self, h: ClientHandler) -> None:
        """``h`` is gone (or aborted): nothing is queued for it any more."""
        self.total -= h.queued
        h.queued = 0
        self.busy.discard(h)
        self.metrics.send_queue_bytes = self.total

    def _refresh(self, h: ClientHandler) -> int:
        q = h.unsent()
        self.total += q - h.queued
        h.queued = q
        return q

    def _enforce(self) -> None:
        budget = self.config.max_send_bytes_total
        for h in list(self.busy):
            self._refresh(h)
        if self.total > budget:
            for h in sorted(self.busy, key=lambda c: c.queued, reverse=True):
                if self.total <= budget:
                    break
                h.drop_slow("send_budget", "slow consumer: the server's send budget is exhausted")
        self.metrics.send_queue_bytes = self.total

    def _arm(self) -> None:
        if self._timer is None:
            loop = self.server.loop or asyncio.get_running_loop()
            self._timer = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = time.monotonic()
        cfg = self.config
        for h in list(self.busy):
            if h not in self.busy:
                continue  # dropped during this sweep
            q = self._refresh(h)
            if h.stalled and not closing(h) and q <= cfg.send_queue_bytes // 2:
                h.stalled = False
                self.server.resync(h)
                q = h.queued
            if q == 0:
                if not h.stalled or closing(h):
                    self.busy.discard(h)
                continue
            flushed = h.bytes_out - q
            mark, since = h.progress
            if flushed > mark:
                h.progress = (flushed, now)
            elif now - since >= cfg.send_timeout:
                h.drop_slow("send_timeout", f"slow consumer: no data taken for "
                                            f"{cfg.send_timeout:g} s")
        self.metrics.send_queue_bytes = self.total
        if self.busy:
            self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
