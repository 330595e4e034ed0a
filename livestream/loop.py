"""Which event loop livestream runs on, and how to reach it from other threads.

In a Jupyter kernel or an ``async`` program the running asyncio loop is used: a
notebook cell returns at once and updates flow while other cells run. In a
plain script (no running loop) livestream starts one daemon thread with its own
loop, named ``livestream-io``, and every socket, buffer write and callback of
the library happens there. Other threads hand work over with
:func:`call_in_loop` (``loop.call_soon_threadsafe``); nothing touches a socket
from another thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_background: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> tuple[asyncio.AbstractEventLoop, bool]:
    """The running loop, or the library's background loop. ``owned`` is True for the latter."""
    try:
        return asyncio.get_running_loop(), False
    except RuntimeError:
        return background_loop(), True


def background_loop() -> asyncio.AbstractEventLoop:
    """The ``livestream-io`` thread's loop, started on first use."""
    global _background, _thread
    with _lock:
        if _background is not None and _thread is not None and _thread.is_alive():
            return _background
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        t = threading.Thread(target=run, name="livestream-io", daemon=True)
        t.start()
        ready.wait()
        _background, _thread = loop, t
        return loop


def on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop``'s thread (and may touch its objects)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return loop is _background and threading.current_thread() is _thread


def call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop``: now if already there, else handed over thread-safely."""
    if on_loop_thread(loop):
        fn(*args)
    else:
        loop.call_soon_threadsafe(fn, *args)


def run_in_loop(
    loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any, timeout: float | None = 30.0
) -> T:
    """Run ``fn(*args)`` on ``loop`` and return its result (or raise its exception).

    From the loop's own thread it is a plain call. From another thread it blocks
    until the loop has run it. A coroutine result is awaited on the loop.
    """
    if on_loop_thread(loop):
        return fn(*args)
    fut: concurrent.futures.Future = concurrent.futures.Future()

    def call() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            fut.set_exception(exc)
            return
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)

            def done(t: asyncio.Future) -> None:
                if t.cancelled():
                    fut.cancel()
                elif t.exception() is not None:
                    fut.set_exception(t.exception())  # type: ignore[arg-type]
                else:
                    fut.set_result(t.result())

            task.add_done_callback(done)
        else:
            fut.set_result(result)

    loop.call_soon_threadsafe(call)
    return fut.result(timeout)
