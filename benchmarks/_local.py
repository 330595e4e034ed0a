"""Feeding a subscription in-process, without a server (the in-process benchmark variants).

Benchmarks that measure the notebook side alone hand rows straight to a
``Subscription`` the way its connection does. That goes through the
subscription's internal entry point, so it lives here, in one place.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def feed_rows(sub: Any, df: pd.DataFrame, offset: int) -> None:
    """Append ``df`` to ``sub`` as rows ``offset … offset + len(df) - 1`` of its topic."""
    sub.apply("append", df, offset=offset, next_offset=offset + len(df))
