"""The backplane interface: the storage of topics behind a server.

A server never touches topics directly; it asks its backplane. The contract:

- ``create(name, ...)`` declares a topic (mode, key, retention); idempotent for
  the same settings.
- ``publish(name, df)`` validates and accepts a batch, returning the
  :class:`~livestream.core.Update` with its offsets, or raises ``SchemaError``
  with nothing applied. ``replace(name, df)`` does the same for replace topics.
- Every accepted update is delivered to every listener registered with
  ``add_listener``, **in offset order, exactly once, on the server's loop**.
  For the in-memory backplane that happens synchronously inside ``publish``; a
  shared backplane (Redis) delivers updates published by other processes the
  same way, so the server code does not change.
- ``get(name)`` returns the topic's local state, from which snapshots and
  resume decisions (``since``) are served. A shared backplane keeps that local
  mirror in step with the shared log and gives it the shared epoch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import pandas as pd

from ..core.topic import Mode, Topic, Update

UpdateListener = Callable[[Update], None]


class Backplane(ABC):
    """Storage and fan-in of topics for one server process."""

    def __init__(self) -> None:
        self._listeners: list[UpdateListener] = []

    def add_listener(self, listener: UpdateListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: UpdateListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _deliver(self, update: Update) -> None:
        for listener in list(self._listeners):
            listener(update)

    @abstractmethod
    def create(
        self,
        name: str,
        *,
        mode: Mode = "append",
        key: Sequence[str] | None = None,
        retention_rows: int,
        retention_seconds: float | None = None,
    ) -> Topic: ...

    @abstractmethod
    def get(self, name: str) -> Topic | None: ...

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def publish(self, name: str, df: pd.DataFrame) -> Update: ...

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to shared storage, if any."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release shared storage, if any."""
