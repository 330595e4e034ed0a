"""Derived topics: a pandas function of another topic's window, recomputed at a bounded rate.

``Derivation`` holds the function and its rate limit; it never runs by itself.
The server calls :meth:`Derivation.source_changed` when the source topic moves
and runs :meth:`Derivation.compute` when told to. With ``key=`` the result is
published as upserts of the rows that changed since the last result (1-second
OHLC bars keyed by bar time: only the current bar travels); without a key every
result replaces the derived table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ..errors import LivestreamError
from .keyed import KeyedTable
from .schema import normalize_frame
from .topic import Topic, check_topic_name

DEFAULT_DERIVE_RATE = 4.0


class DeriveError(LivestreamError):
    """A derived topic's function raised or returned something unusable."""

    code = "derive_failed"


@dataclass
class Derivation:
    """How one derived topic is computed from its source."""

    name: str
    source: str
    fn: Callable[[pd.DataFrame], pd.DataFrame]
    key: tuple[str, ...] = ()
    rate: float = DEFAULT_DERIVE_RATE
    window: int | None = None
    last_run: float | None = None
    dirty: bool = False
    scheduled: bool = False
    errors: int = 0
    last_error: str | None = None
    _previous: KeyedTable | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_topic_name(self.name)
        check_topic_name(self.source)
        if isinstance(self.key, str):
            self.key = (self.key,)
        self.key = tuple(self.key)
        if self.rate <= 0:
            raise ValueError("rate must be positive (recomputations per second)")

    @property
    def min_interval(self) -> float:
        return 1.0 / self.rate

    def source_changed(self, now: float) -> float | None:
        """Note that the source moved. Returns the delay after which to compute,
        or ``None`` if a computation is already scheduled."""
        self.dirty = True
        if self.scheduled:
            return None
        self.scheduled = True
        if self.last_run is None:
            return 0.0
        return max(0.0, self.last_run + self.min_interval - now)

    def compute(self, source: pd.DataFrame, now: float) -> pd.DataFrame:
        """Run the function on the source window; returns the rows to publish.

        For keyed derivations only new or changed rows are returned. Raises
        :class:`DeriveError` if the function fails or returns a non-DataFrame.
        """
        self.scheduled = False
        self.dirty = False
        self.last_run = now
        if self.window is not None:
            source = source.iloc[-self.window :].reset_index(drop=True)
        try:
            result = self.fn(source)
            if isinstance(result, pd.Series):
                result = result.to_frame()
            if not isinstance(result, pd.DataFrame):
                raise TypeError(f"returned {type(result).__name__}, expected a DataFrame")
            result = normalize_frame(result)
            if isinstance(result.columns, pd.MultiIndex):
                raise TypeError("returned MultiIndex columns; flatten them")
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise DeriveError(f"derived topic {self.name!r}: {self.last_error}") from exc
        return result

    def changed_rows(self, topic: Topic, result: pd.DataFrame) -> pd.DataFrame:
        """For a keyed derivation: the rows of ``result`` that differ from the topic."""
        if topic.schema is None or topic._table is None:
            return result
        conformed = topic.conform(result)
        return topic._table.changed(conformed)
