"""Helpers for outside-feed tests: a coroutine runner and deadline polling.

pytest-asyncio is not used: :func:`run` runs a coroutine on a fresh asyncio loop
and closes it, and :func:`until` / :func:`wait_for` poll a condition until a
deadline instead of sleeping for a fixed time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from testutil import poll
from testutil import until as shared_until

sys.path.insert(0, os.path.dirname(__file__))

DEADLINE = 20.0  # generous: the machine is shared; this is a hang guard, not a speed check


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
    """Run ``coro`` on a new event loop (closed afterwards, tasks cancelled)."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
        gc.collect()


async def until(cond: Callable[[], Any], what: str = "condition", timeout: float = DEADLINE) -> Any:
    """Await until ``cond()`` is truthy (polling the loop), or fail naming ``what``."""
    return await shared_until(cond, timeout, what)


def wait_for(cond: Callable[[], Any], what: str = "condition", timeout: float = DEADLINE) -> Any:
    """Blocking :func:`until` for code not on a loop (scripts, threads)."""
    return poll(cond, timeout, what, step=0.002)


@pytest.fixture(autouse=True)
def _close_feeds():
    """Close every feed a test left open, so tests do not leak into each other."""
    yield
    from livestream.client import registry

    registry.close_all(timeout=2.0)
