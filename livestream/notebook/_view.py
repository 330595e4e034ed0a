"""What every live view (chart, table, ticker cards, status) has in common."""

from __future__ import annotations

import time
from typing import Any

from ..views.stats import ViewStats
from ._runtime import FrameTimer, current_loop, log, on_loop, track

__all__ = ["LiveView", "ViewStats"]


class LiveView:
    """Mixin: a frame timer on the owner loop, pause/resume, errors, close.

    Subclasses implement ``_draw()`` (one frame; return True if something was
    sent) and call ``_view_init()`` from their constructor.
    """

    sub: Any
    loop: Any
    closed: bool
    paused: bool
    view_stats: ViewStats
    _timer: FrameTimer | None

    def _view_init(self, sub: Any, fps: float, *, loop: Any = None) -> None:
        self.sub = sub
        self.closed = False
        self.paused = False
        self.view_stats = ViewStats()
        self.loop = loop if loop is not None else current_loop(getattr(sub, "loop", None))
        self._fps = float(fps)
        self._timer = FrameTimer(self.loop, fps, self._tick, on_error=self._report_error)
        track(self)
        if sub is not None and hasattr(sub, "register_view"):
            sub.register_view(self)

    # -- frames -----------------------------------------------------------------------

    @property
    def fps(self) -> float:
        """Frames per second at most (updates are coalesced to this rate)."""
        return self._fps

    @fps.setter
    def fps(self, value: float) -> None:
        if value <= 0:
            raise ValueError("fps must be positive")
        self._fps = float(value)
        if self._timer is not None:
            self._timer.fps = float(value)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.start()

    def _tick(self) -> None:
        if self.closed:
            return
        t0 = time.perf_counter()
        sent = self._draw()
        st = self.view_stats
        if sent:
            st.frames += 1
            st.last_frame_ms = (time.perf_counter() - t0) * 1000.0
        else:
            st.idle_frames += 1
        if self._finished() and self._timer is not None:
            self._timer.stop()

    def _draw(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finished(self) -> bool:
        """True once nothing can change any more (the subscription closed)."""
        sub = self.sub
        return bool(sub is not None and getattr(sub, "closed", False))

    def refresh(self) -> bool:
        """Draw one frame now (on the owner loop's thread); returns whether it sent."""
        if self.closed:
            return False
        try:
            sent = self._draw()
        except Exception as exc:
            self._report_error(exc)
            return False
        if sent:
            self.view_stats.frames += 1
        return sent

    def _report_error(self, exc: BaseException) -> None:
        st = self.view_stats
        st.errors += 1
        st.last_error = f"{type(self).__name__}: {exc!r}"
        log.error("livestream: %s of %r failed", type(self).__name__,
                  getattr(self.sub, "name", None), exc_info=exc)
        sub = self.sub
        if sub is not None and hasattr(sub, "report_error"):
            sub.report_error(f"{type(self).__name__}: {exc!r}")

    # -- control ----------------------------------------------------------------------

    def pause(self) -> None:
        """Freeze the view (the subscription keeps receiving); :meth:`resume` catches up."""
        on_loop(self.loop, self._set_paused, True)

    def resume(self) -> None:
        """Undo :meth:`pause`: the next frame draws what arrived meanwhile."""
        on_loop(self.loop, self._set_paused, False)

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not self.closed and self.loop is None:
            self.refresh()

    def _stop_view(self) -> None:
        """Stop the timer and forget the subscription (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.stop()
        sub = self.sub
        if sub is not None and hasattr(sub, "unregister_view"):
            sub.unregister_view(self)
