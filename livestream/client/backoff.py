"""Reconnect delays shared by every livestream client (servers and outside feeds)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``min(maximum, initial · factor^(n-1))`` for the n-th consecutive
    failure, each multiplied by a random factor in ``[1 - jitter, 1]``.

    A connection that was live and then dropped starts again at ``n = 1``.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.maximum >= self.initial and self.factor >= 1):
            raise ValueError(
                "backoff needs 0 <= initial <= maximum and factor >= 1, got "
                f"initial={self.initial}, maximum={self.maximum}, factor={self.factor}"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be between 0 and 1, got {self.jitter}")

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """The delay before the next attempt after ``failures`` consecutive failures."""
        n = max(1, failures)
        base = min(self.maximum, self.initial * self.factor ** min(n - 1, 64))
        return base * (1.0 - self.jitter * rng())
