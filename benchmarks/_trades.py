"""The trades table the spine benchmark publishes.

Columns: ``ts`` int64 (nanoseconds since the epoch, stamped when the batch is
built, just before it is published: subscribers measure latency from it),
``symbol`` str (50 distinct values), ``price`` float64, ``size`` int64.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

SYMBOLS = [f"SYM{i:02d}" for i in range(50)]


class TradeBatches:
    """Batches of ``rows`` trades; columns other than ``ts`` cycle through a small pool.

    Building a batch costs the same for every system measured (a dict of ready
    arrays and one fresh ``ts`` array), so it is part of the publish cost of all.
    """

    def __init__(self, rows: int, pool: int = 16, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.rows = rows
        self._pool = []
        for _ in range(pool):
            sym = np.array(SYMBOLS, dtype=object)[rng.integers(0, len(SYMBOLS), rows)]
            self._pool.append((
                pd.array(sym, dtype="str"),
                np.round(rng.uniform(10.0, 500.0, rows), 2),
                rng.integers(1, 1000, rows).astype(np.int64),
            ))
        self._i = 0
        self._steps = np.arange(rows, dtype=np.int64)

    def next(self) -> pd.DataFrame:
        sym, price, size = self._pool[self._i % len(self._pool)]
        self._i += 1
        ts = self._steps + time.time_ns()
        return pd.DataFrame({"ts": ts, "symbol": sym, "price": price, "size": size},
                            copy=False)
