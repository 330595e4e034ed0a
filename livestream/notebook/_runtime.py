"""The kernel-side plumbing every live view shares.

* **One loop owner.** A view belongs to the event loop that was running when it
  was created (in a notebook: the kernel's loop, on the main thread). Frames run
  there; anything arriving on another thread (ipykernel 7 runs comm messages, and
  so widget callbacks, on subshell threads) is handed over with
  ``loop.call_soon_threadsafe``. Nothing touches a widget or a Bokeh document
  from another thread.
* **Frame timers.** A view redraws at most ``fps`` times a second from a
  :class:`FrameTimer` (a ``loop.call_at`` chain, no task, no thread). A frame
  asks the subscription for what arrived since the last one; an idle frame
  costs a version check and sends nothing.
* **Cell re-runs.** Views remember the notebook cell that created them; when that
  cell runs again, the views of its previous run are closed (timers stopped,
  buffers released), so re-running a cell never leaves a chart updating forever.
* **Errors** in a frame are logged on ``livestream.notebook`` and reported through
  the view's status (and the subscription's ``stats.last_error``), never printed
  into whichever cell happens to be running.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("livestream.notebook")


def current_loop(fallback: asyncio.AbstractEventLoop | None = None) -> asyncio.AbstractEventLoop | None:
    """The loop views created now should run on.

    The running loop (a notebook cell runs on the kernel's loop), else the
    IPython kernel's loop, else ``fallback`` (a subscription's own loop), else
    ``None`` (views then draw only when asked: ``view.refresh()``).
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    kernel = _kernel()
    if kernel is not None:
        io_loop = getattr(kernel, "io_loop", None)
        loop = getattr(io_loop, "asyncio_loop", None)
        if loop is not None and not loop.is_closed():
            return loop
    return fallback


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    return get_ipython()


def _kernel() -> Any:
    ip = _ipython()
    return getattr(ip, "kernel", None) if ip is not None else None


def in_kernel() -> bool:
    """Whether we run inside a Jupyter kernel (where widgets can be displayed)."""
    return _kernel() is not None


def loop_thread_id(loop: asyncio.AbstractEventLoop | None) -> int | None:
    """The id of the thread running ``loop`` (None if unknown or not running)."""
    if loop is None:
        return None
    return getattr(loop, "_thread_id", None)


def on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop``: now if we are on its thread, else handed over.

    Used for widget callbacks, which ipykernel 7 may deliver on a subshell thread.
    """
    tid = loop_thread_id(loop)
    if loop is None or tid is None or tid == threading.get_ident() or loop.is_closed():
        fn(*args)
    else:
        loop.call_soon_threadsafe(_guarded, fn, *args)


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("livestream: callback %r failed", fn)


class FrameTimer:
    """Call ``fn()`` on ``loop`` about ``fps`` times a second until stopped.

    Frames are scheduled at a fixed cadence (``loop.call_at``) and start at least
    one interval apart, so a late frame is never followed by a burst.
    Exceptions are passed to ``on_error`` and do not stop the timer.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None,
        fps: float,
        fn: Callable[[], Any],
        on_error: Callable[[BaseException], Any] | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.loop = loop
        self.fps = float(fps)
        self.fn = fn
        self.on_error = on_error
        self._handle: asyncio.TimerHandle | None = None
        self._running = False
        self._next = 0.0

    @property
    def running(self) -> bool:
        return self._running

    @property
    def interval(self) -> float:
        return 1.0 / self.fps

    def start(self) -> None:
        """Start ticking (idempotent; safe from any thread)."""
        if self.loop is None or self.loop.is_closed():
            return
        on_loop(self.loop, self._start)

    def _start(self) -> None:
        if self._running:
            return
        self._running = True
        self._next = self.loop.time() + self.interval  # type: ignore[union-attr]
        self._handle = self.loop.call_at(self._next, self._tick)  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop ticking (idempotent; safe from any thread)."""
        self._running = False
        h, self._handle = self._handle, None
        if h is not None:
            if self.loop is not None and not self.loop.is_closed():
                on_loop(self.loop, h.cancel)
            else:
                h.cancel()

    def _tick(self) -> None:
        if not self._running:
            return
        assert self.loop is not None
        started = self.loop.time()
        try:
            self.fn()
        except Exception as exc:
            if self.on_error is not None:
                try:
                    self.on_error(exc)
                except Exception:
                    log.exception("livestream: error handler failed")
            else:
                log.exception("livestream: frame failed")
        if not self._running:
            return
        # never two frames closer than one interval: a late frame is not followed by a
        # burst of catch-up frames, so any one-second span holds at most fps + 1 frames
        self._next = max(self._next + self.interval, started + self.interval)
        self._handle = self.loop.call_at(self._next, self._tick)


# -- cell tracking ----------------------------------------------------------------------

_views_by_cell: dict[str, list[weakref.ref]] = {}
_hook_installed = False
_all_views: weakref.WeakSet = weakref.WeakSet()


def current_cell_id() -> str | None:
    """The id of the notebook cell being executed (JupyterLab sends it), if known."""
    kernel = _kernel()
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent()
    except Exception:
        return None
    meta = (parent or {}).get("metadata") or {}
    cid = meta.get("cellId")
    return cid if isinstance(cid, str) else None


def _pre_run_cell(info: Any) -> None:
    cid = getattr(info, "cell_id", None) or current_cell_id()
    if not cid:
        return
    refs = _views_by_cell.pop(cid, [])
    for r in refs:
        view = r()
        if view is not None and not getattr(view, "closed", True):
            try:
                view.close()
            except Exception:
                log.exception("livestream: closing a view of a re-run cell failed")


def track(view: Any) -> None:
    """Remember ``view`` so that re-running the cell that created it closes it."""
    global _hook_installed
    _all_views.add(view)
    ip = _ipython()
    if ip is None or not in_kernel():
        return
    if not _hook_installed:
        ip.events.register("pre_run_cell", _pre_run_cell)
        _hook_installed = True
    cid = current_cell_id()
    if cid:
        lst = _views_by_cell.setdefault(cid, [])
        lst[:] = [r for r in lst if r() is not None]
        lst.append(weakref.ref(view))


def live_views() -> list[Any]:
    """Every view that is still open (for tests and diagnostics)."""
    return [v for v in list(_all_views) if not getattr(v, "closed", True)]


def now_ms() -> float:
    return time.time() * 1000.0
