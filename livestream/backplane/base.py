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
- ``publish_new(name, df, ...)`` creates a topic **with** its first batch: the
  topic exists afterwards only if the batch was accepted (a refused first batch
  leaves no empty topic behind).
- ``delete(name)`` removes a topic, its history and its epoch, and returns
  whether it existed. Every deletion (also one made by another process sharing
  the backplane) is delivered to every listener registered with
  ``add_delete_listener``, on the server's loop, after the topic is gone, with
  the removed topic's last local state (name, epoch, offsets). A
  topic created again under the same name is a new history: a new epoch,
  offsets from 0, so no client can resume into it with stale offsets. A
  shared backplane deletes the shared log and epoch atomically and tells
  the other processes, which drop their local mirror.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import pandas as pd

from ..core.topic import Mode, Topic, Update

UpdateListener = Callable[[Update], None]
DeleteListener = Callable[[Topic], None]
ResetListener = Callable[[Topic, Topic], None]


class Backplane(ABC):
    """Storage and fan-in of topics for one server process."""

    #: True for a backplane shared between processes (Redis): its writes are
    #: asynchronous (``publish_async``, ``create_async``, ``delete_async``) and a topic
    #: must be loaded (``await ensure(name)``) before ``get`` returns it.
    shared: bool = False

    def __init__(self) -> None:
        self._listeners: list[UpdateListener] = []
        self._delete_listeners: list[DeleteListener] = []
        self._reset_listeners: list[ResetListener] = []

    def add_listener(self, listener: UpdateListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: UpdateListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _deliver(self, update: Update) -> None:
        for listener in list(self._listeners):
            listener(update)

    def add_delete_listener(self, listener: DeleteListener) -> None:
        """Call ``listener(topic)`` after every deletion, with the removed topic's last
        local state (its name, epoch and offsets)."""
        self._delete_listeners.append(listener)

    def _deliver_delete(self, topic: Topic) -> None:
        for listener in list(self._delete_listeners):
            listener(topic)

    def add_reset_listener(self, listener: ResetListener) -> None:
        """Call ``listener(old, new)`` when a topic's local state is replaced by a new
        history (a shared backplane lost its data: ``new`` has another epoch)."""
        self._reset_listeners.append(listener)

    def _deliver_reset(self, old: Topic, new: Topic) -> None:
        for listener in list(self._reset_listeners):
            listener(old, new)

    # -- the asynchronous face (shared backplanes override it) --------------------------

    async def ensure(self, name: str) -> Topic | None:
        """The topic's local state, loading it from shared storage first if needed."""
        return self.get(name)

    async def publish_async(self, name: str, df: pd.DataFrame, *,
                            create: dict | None = None) -> Update:
        """``publish`` (or ``publish_new`` with ``create``'s settings, if the topic does
        not exist), awaited until the shared log accepted it."""
        if self.get(name) is None and create is not None:
            return self.publish_new(name, df, **create)
        return self.publish(name, df)

    async def create_async(self, name: str, **settings: object) -> Topic:
        return self.create(name, **settings)  # type: ignore[arg-type]

    async def delete_async(self, name: str) -> bool:
        return self.delete(name)

    def status(self) -> dict | None:
        """What ``/health`` shows of the backplane (``None``: in-process, nothing to show)."""
        return None

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

    @abstractmethod
    def publish_new(
        self,
        name: str,
        df: pd.DataFrame,
        *,
        mode: Mode = "append",
        key: Sequence[str] | None = None,
        retention_rows: int,
        retention_seconds: float | None = None,
    ) -> Update:
        """Create ``name`` with ``df`` as its first batch; nothing is created if the
        batch is refused (``SchemaError``). ``TopicError`` if it exists already."""

    @abstractmethod
    def delete(self, name: str) -> bool:
        """Remove a topic and its history; ``False`` if there was none."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to shared storage, if any."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release shared storage, if any."""
