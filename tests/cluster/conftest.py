"""Fixtures of the multi-node tests (see cluster_util.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_util import Cluster


@pytest.fixture
def make_cluster(make_redis: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """A factory: ``make_cluster(appendonly=False)`` → a :class:`Cluster` on its own fresh
    ``redis-server`` (no node started yet). Every node is SIGKILLed and every Redis stopped
    after the test, whatever happened."""
    made: list[Cluster] = []

    def make(appendonly: bool = False) -> Cluster:
        cluster = Cluster(make_redis(appendonly=appendonly), tmp_path)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()
