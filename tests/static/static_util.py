"""Helpers of the static-page tests: a trades feed, page probes, polling with deadlines."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
from testutil import poll  # noqa: F401 - re-exported for the tests here

from livestream.dashboard.static import PAGE_POINTS_JS

SYMBOLS = ("AAPL", "MSFT", "GOOG")



def trades_frame(start: int, n: int) -> pd.DataFrame:
    """``n`` trades: ts (1 ms apart, continuing from row ``start``), sym, price, qty."""
    i = np.arange(start, start + n)
    return pd.DataFrame({
        "ts": pd.Timestamp("2024-01-02T09:30:00") + pd.to_timedelta(i, unit="ms"),
        "sym": pd.Categorical(np.array(SYMBOLS)[i % len(SYMBOLS)], categories=list(SYMBOLS)),
        "price": 100.0 + np.sin(i / 50.0),
        "qty": (i % 100).astype("int64"),
    })


class Feed:
    """Publishes trades into a server from its own thread until stopped (the server's
    loop runs on another thread, so a busy test or kernel never stops the feed)."""

    def __init__(self, srv: Any, topic: str = "trades", batch: int = 50, every: float = 0.02):
        self.srv, self.topic, self.batch, self.every = srv, topic, batch, every
        self.rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-feed", daemon=True)

    def publish(self, n: int) -> None:
        self.srv.publish(self.topic, trades_frame(self.rows, n))
        self.rows += n

    def start(self) -> Feed:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish(self.batch)
            except Exception:  # the server closed under us at teardown
                return
            self._stop.wait(self.every)  # the feed's pace, not a synchronisation

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)



#: Points per Bokeh document on a page (see ``livestream.dashboard.static``).
CDS_POINTS_JS = PAGE_POINTS_JS
