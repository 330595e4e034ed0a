"""Helpers shared by the test suite (importable: tests/conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any


def poll(fn: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
         step: float = 0.05, ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Call ``fn()`` until it returns something truthy and return that; fail after
    ``timeout`` seconds. ``step`` is a poll interval, not synchronisation: the
    condition decides. Exceptions of the ``ignore`` types count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except ignore:
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(step)


async def until(fn: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
                step: float = 0.002) -> Any:
    """:func:`poll` for code on an event loop: awaits between calls, so the loop (the
    server or client under test) runs while we wait."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(step)


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Terminate ``proc`` (SIGTERM, so it can shut down cleanly); kill it if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
