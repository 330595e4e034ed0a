"""The default backplane: topics held in this process's memory.

History is lost when the process ends; a restarted server starts every topic
with a new epoch, so resuming clients get a gap and a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..core.topic import Mode, Topic, Update
from ..errors import TopicError
from .base import Backplane


class MemoryBackplane(Backplane):
    """Topics in a dict; updates delivered synchronously to listeners."""

    def __init__(self) -> None:
        super().__init__()
        self._topics: dict[str, Topic] = {}

    def create(
        self,
        name: str,
        *,
        mode: Mode = "append",
        key: Sequence[str] | None = None,
        retention_rows: int,
        retention_seconds: float | None = None,
    ) -> Topic:
        existing = self._topics.get(name)
        wanted_mode = "keyed" if key else mode
        if existing is not None:
            if existing.mode != wanted_mode or tuple(key or ()) != existing.key:
                raise TopicError(
                    f"topic {name!r} exists as {existing.mode} (key {list(existing.key)}); "
                    f"cannot redeclare it as {wanted_mode} (key {list(key or ())})",
                    code="topic_exists",
                )
            return existing
        topic = Topic(name, mode=mode, key=key, retention_rows=retention_rows,
                      retention_seconds=retention_seconds)
        self._topics[name] = topic
        return topic

    def get(self, name: str) -> Topic | None:
        return self._topics.get(name)

    def names(self) -> list[str]:
        return sorted(self._topics)

    def publish(self, name: str, df: pd.DataFrame) -> Update:
        topic = self._topics.get(name)
        if topic is None:
            raise TopicError(f"unknown topic {name!r}", code="unknown_topic")
        update = topic.publish(df)
        self._deliver(update)
        return update

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
        if name in self._topics:
            raise TopicError(f"topic {name!r} already exists", code="topic_exists")
        topic = Topic(name, mode=mode, key=key, retention_rows=retention_rows,
                      retention_seconds=retention_seconds)
        update = topic.publish(df)  # a refused batch raises here, before the topic is listed
        self._topics[name] = topic
        self._deliver(update)
        return update

    def delete(self, name: str) -> bool:
        topic = self._topics.pop(name, None)
        if topic is None:
            return False
        self._deliver_delete(topic)
        return True
