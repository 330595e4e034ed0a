"""Subscriptions: the live window of a topic (or of an outside feed) as pandas.

A :class:`Subscription` is the user's handle on one
:class:`~livestream.client.state.SubscriptionState` (``sub.machine``), the
sans-I/O state that a source feeds on its event loop: a livestream
:class:`~livestream.client.connection.Connection` through its
:class:`~livestream.client.protocol.ClientProtocol`, or an outside-feed stream.
``.df`` assembles the current window from columnar buffers under the state's
lock, so a script's main thread can read while a background loop writes.

On top of the state, a subscription runs the user's callbacks (``on_update``,
``on_gap``) with the events the state returns, lets scripts ``wait()`` for rows,
pauses, resumes and closes through its source, and makes views
(``sub.chart()``, ``.table()``, ``.ticker()``, ``.controls()``) through the
factories the view layer registers (:mod:`livestream.client.view_factories`).

Views do not need a callback per message: they ask :meth:`Subscription.rows_since`
for what arrived after the offset they last drew.

For sources
-----------
A source feeds a subscription on its own loop with :meth:`Subscription.receive`
(a server message), :meth:`Subscription.apply` (a decoded update),
:meth:`~Subscription.set_state`, :meth:`~Subscription.report_error` and
:meth:`~Subscription.mark_closed`; each forwards to the state and
:meth:`~Subscription.dispatch`-es its events. A source that feeds the state
itself (through a protocol object) passes the events to :meth:`dispatch`. In
return the subscription calls the source's hooks (:class:`Source`) when the user
pauses, resumes or closes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import pandas as pd

from ..core.schema import Schema
from ..errors import ConnectionClosed, LivestreamError
from . import view_factories
from .state import (
    DEFAULT_WINDOW,
    Event,
    GapDetected,
    RowsApplied,
    SubscriptionState,
    SubscriptionStats,
    UpdateKind,
)

__all__ = [
    "DEFAULT_WINDOW",
    "GapCallback",
    "Source",
    "Subscription",
    "SubscriptionStats",
    "UpdateCallback",
    "UpdateKind",
    "ViewFilters",
]

log = logging.getLogger("livestream.client")

UpdateCallback = Callable[["Subscription", pd.DataFrame, str], Any]
GapCallback = Callable[["Subscription", dict], Any]


class Source(Protocol):
    """What a subscription tells its source (a connection or a feed), on any thread."""

    def subscription_paused(self, sub: Subscription) -> None:
        """``sub.pause()`` was called: stop feeding it (a livestream topic unsubscribes)."""

    def subscription_resumed(self, sub: Subscription) -> None:
        """``sub.resume()`` was called: feed it again (a livestream topic resumes by offset)."""

    def subscription_closed(self, sub: Subscription) -> None:
        """``sub.close()`` was called: forget it."""


class ViewFilters:
    """Which rows the views of a subscription show: column → allowed values (as text).

    View-side only: the data is kept, and clearing a filter redraws the full
    window. :attr:`epoch` increases with every change, so views know to redraw.
    A dashboard session keeps its own :class:`ViewFilters` per subscription.
    """

    def __init__(self) -> None:
        self.columns: dict[str, set[str]] = {}
        self.epoch = 0

    def set(self, column: str, values: Iterable[object] | None) -> None:
        """Show only rows whose ``column`` is one of ``values`` (None: every row)."""
        columns = dict(self.columns)
        if values is None:
            columns.pop(column, None)
        else:
            columns[column] = {str(v) for v in values}
        self.columns = columns  # replaced, not mutated: readers on other threads see one or the other
        self.epoch += 1


class Subscription:
    """A live, bounded window of one topic or feed stream.

    Attributes worth knowing: ``df`` (the window as a DataFrame), ``offset``
    (the offset after the last row received: a resume point), ``epoch``,
    ``stats``, ``machine`` (the sans-I/O :class:`SubscriptionState` behind it).
    Keyed topics keep one row per key instead of a rolling window.
    """

    def __init__(
        self,
        name: str,
        *,
        window: int | None = DEFAULT_WINDOW,
        key: Sequence[str] | None = None,
        source: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
        token: str | None = None,
    ) -> None:
        #: the sans-I/O state this subscription is a handle on
        self.machine = SubscriptionState(name, window=window, key=key)
        self.name = name
        self.source = source
        self.loop = loop
        #: the token this topic was subscribed with (None: the connection's)
        self.token = token
        self.paused = False
        #: what its views show (see :meth:`set_filter`)
        self.view_filters = ViewFilters()
        self._update_cbs: list[UpdateCallback] = []
        self._gap_cbs: list[GapCallback] = []
        self._views: weakref.WeakSet = weakref.WeakSet()

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Subscription {self.name!r} {s.state} rows={len(self)} "
            f"offset={self.offset} epoch={self.epoch}>"
        )

    # -- reading ------------------------------------------------------------------------

    @property
    def df(self) -> pd.DataFrame:
        """The live window as a new pandas DataFrame (safe to keep and modify)."""
        return self.machine.frame()

    def __len__(self) -> int:
        return len(self.machine)

    @property
    def window(self) -> int | None:
        """Rows kept (append topics; None: unbounded). Change it with :meth:`set_window`."""
        return self.machine.window

    @property
    def key(self) -> tuple[str, ...]:
        """Key columns of a keyed topic (empty otherwise)."""
        return self.machine.key

    @property
    def mode(self) -> str | None:
        """``append``, ``keyed`` or ``replace`` once known."""
        return self.machine.mode

    @property
    def schema(self) -> Schema | None:
        """The schema of the rows held (None before the first update)."""
        return self.machine.schema

    @property
    def epoch(self) -> str | None:
        return self.machine.epoch

    @property
    def offset(self) -> int | None:
        """The next offset expected (with :attr:`epoch`, where a resume starts)."""
        return self.machine.offset

    @property
    def version(self) -> int:
        """Increases with every applied update; views compare it to skip idle frames."""
        return self.machine.version

    @property
    def resets(self) -> int:
        """Increases whenever the window restarts from a snapshot (after a gap, say)."""
        return self.machine.resets

    def rows_since(self, offset: int | None) -> tuple[pd.DataFrame | None, int | None, bool]:
        """Rows of an append window that arrived at or after ``offset``.

        Returns ``(frame, end_offset, reset)``: ``reset`` is True when the view must
        redraw everything (first call, snapshot after a gap, keyed or replaced
        tables), in which case ``frame`` is the whole current window.
        """
        return self.machine.rows_since(offset)

    @property
    def stats(self) -> SubscriptionStats:
        """Counters: rows, rows/s, last update age, lag, reconnects, gaps, errors."""
        m = self.machine
        s = m.stats
        s.rows_per_s = m.meter.rate()
        s.last_update_age = None if m.last_update is None else m.clock() - m.last_update
        return s

    @property
    def stats_data(self) -> SubscriptionStats:
        """The counters as they are (without recomputing rates)."""
        return self.machine.stats

    @property
    def gaps(self) -> list[dict]:
        """Every gap event seen (the last 100, most recent last)."""
        return self.machine.gaps

    @property
    def closed(self) -> bool:
        return self.machine.closed

    # -- callbacks ----------------------------------------------------------------------

    def on_update(self, callback: UpdateCallback) -> UpdateCallback:
        """Call ``callback(sub, frame, kind)`` on the source's loop after each update.

        ``frame`` holds the rows of that update only. Usable as a decorator.
        Exceptions are logged and counted in ``stats.errors``; they stop nothing.
        """
        self._update_cbs.append(callback)
        return callback

    def on_gap(self, callback: GapCallback) -> GapCallback:
        """Call ``callback(sub, gap)`` when rows were lost (``gap`` is a dict)."""
        self._gap_cbs.append(callback)
        return callback

    def remove_callback(self, callback: Callable) -> None:
        """Forget a callback given to :meth:`on_update` or :meth:`on_gap`."""
        for lst in (self._update_cbs, self._gap_cbs):
            if callback in lst:
                lst.remove(callback)

    def _run_callbacks(self, cbs: list, *args: Any) -> None:
        for cb in list(cbs):
            try:
                cb(self, *args)
            except Exception as exc:
                self.machine.error(f"callback {getattr(cb, '__name__', cb)!r}: {exc!r}")
                log.exception("livestream: callback on %r failed", self.name)

    # -- waiting ------------------------------------------------------------------------

    def wait(self, rows: int = 1, timeout: float | None = 10.0) -> Subscription:
        """Block until the window holds at least ``rows`` rows (scripts; not on the loop).

        Raises ``TimeoutError`` after ``timeout`` seconds, and
        :class:`ConnectionClosed` if the subscription closes first.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self.loop:
            raise LivestreamError(
                "Subscription.wait() would block the event loop that feeds it; "
                "use 'await sub.wait_async(...)' in async code and notebooks"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        m = self.machine
        with m.changed:
            while len(m) < rows:
                if m.closed:
                    raise ConnectionClosed(f"subscription {self.name!r} is closed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"subscription {self.name!r}: {len(m)} rows after {timeout}s, "
                        f"wanted {rows}"
                    )
                m.changed.wait(left)
        return self

    async def wait_async(self, rows: int = 1, timeout: float | None = 10.0) -> Subscription:
        """Await until the window holds at least ``rows`` rows (on the feeding loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self) < rows:
            if self.closed:
                raise ConnectionClosed(f"subscription {self.name!r} is closed")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"subscription {self.name!r}: {len(self)} rows after {timeout}s, wanted {rows}"
                )
            await asyncio.sleep(0.01)
        return self

    # -- for sources (on the source's loop) ------------------------------------------------

    def dispatch(self, events: Iterable[Event]) -> None:
        """Run the callbacks for ``events`` returned by :attr:`machine` (on the source's
        loop): ``on_update`` for each applied update, ``on_gap`` for each gap."""
        for ev in events:
            if type(ev) is RowsApplied and self._update_cbs:
                self._run_callbacks(self._update_cbs, ev.frame(), ev.kind)
            elif type(ev) is GapDetected and self._gap_cbs:
                self._run_callbacks(self._gap_cbs, ev.gap)

    def receive(self, message: dict, payload: Any = None) -> list[Event]:
        """Feed one server message for this topic (see :meth:`SubscriptionState.receive`)."""
        events = self.machine.receive(message, payload)
        self.dispatch(events)
        return events

    def apply(self, kind: UpdateKind | str, data: Any, **fields: Any) -> list[Event]:
        """Apply one decoded update as given (see :meth:`SubscriptionState.apply` for
        ``schema``, ``epoch``, ``offset``, ``next_offset``, ``ts``, ``columns``...)."""
        events = self.machine.apply(kind, data, **fields)
        self.dispatch(events)
        return events

    def set_state(self, state: str) -> None:
        """Set the state shown in ``stats.state`` (the source's state, ``paused``...)."""
        self.machine.set_state(state)

    def report_error(self, message: str) -> None:
        """Count an error concerning this subscription (``stats.errors``, ``last_error``)."""
        self.machine.error(message)

    def mark_closed(self) -> None:
        """The source will not feed it any more: state ``closed``, waiters wake up."""
        self.machine.close()

    # -- control ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving and release the window. Safe to call twice."""
        if self.closed:
            return
        hook = getattr(self.source, "subscription_closed", None)
        if hook is not None:
            hook(self)
        self.mark_closed()
        self.machine.release()

    def pause(self) -> None:
        """Stop applying updates until :meth:`resume` (the source decides how: a
        livestream topic unsubscribes and later resumes by offset, losing nothing
        within retention)."""
        if self.paused:
            return
        self.paused = True
        self.set_state("paused")
        hook = getattr(self.source, "subscription_paused", None)
        if hook is not None:
            hook(self)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if not self.paused:
            return
        self.paused = False
        hook = getattr(self.source, "subscription_resumed", None)
        if hook is not None:
            hook(self)

    def set_window(self, rows: int) -> None:
        """Resize the live window (the subscription's and its charts')."""
        if rows < 1:
            raise ValueError("window must be a positive number of rows")
        self.machine.resize(rows)
        for v in self.views:
            prop = getattr(type(v), "window", None)
            if isinstance(prop, property) and prop.fset is not None:
                v.window = rows

    # -- views ----------------------------------------------------------------------------

    def chart(self, x: str | None = None, y: str | Sequence[str] | None = None, *,
              direct: bool = False, **options: Any) -> Any:
        """A live Bokeh chart of this subscription, as an ipywidget.

        ``chart(x="ts", y="price", by="symbol", kind="line", window=..., fps=20, ...)``:
        the options are those of :class:`~livestream.views.options.ChartOptions`
        (``kind`` line, scatter, step, bar or candlestick; ``by`` splits series;
        ``where`` keeps matching rows; ``title``, ``height`` and any
        ``bokeh.plotting.figure`` argument). Updates are coalesced to at most ``fps``
        frames a second. ``direct=True`` makes a chart whose browser side subscribes
        to the livestream server by itself (the kernel is off the hot path).
        """
        return view_factories.make("chart", self, x, y, direct=direct, **options)

    def table(self, rows: int = 20, *, columns: Sequence[str] | None = None,
              fps: float = 4, **kwargs: Any) -> Any:
        """A live table widget: the latest ``rows`` rows (newest first), or a keyed
        topic's table, with number and time formatting."""
        return view_factories.make("table", self, rows=rows, columns=columns, fps=fps, **kwargs)

    def ticker(self, value: str, by: str | None = None, *, fps: float = 4,
               **kwargs: Any) -> Any:
        """Live value cards: the last ``value`` per ``by`` (e.g. price per symbol),
        with the change since the card first saw it, green up, red down."""
        return view_factories.make("ticker", self, value=value, by=by, fps=fps, **kwargs)

    def controls(self, filter_column: str | None = None) -> Any:
        """Pause/resume, window size and a column filter (pick symbols) for this
        subscription and all of its views; changes apply at once."""
        return view_factories.make("controls", self, filter_column=filter_column)

    def register_view(self, view: Any) -> None:
        """Record a live view of this subscription (held weakly; see :attr:`views`)."""
        self._views.add(view)

    def unregister_view(self, view: Any) -> None:
        """Forget a view (it closed)."""
        self._views.discard(view)

    @property
    def views(self) -> list[Any]:
        """The open live views (charts, tables, tickers) of this subscription."""
        return [v for v in list(self._views) if not getattr(v, "closed", False)]

    @property
    def filters(self) -> dict[str, set[str]]:
        """Column → values its views show (set with :meth:`set_filter`)."""
        return dict(self.view_filters.columns)

    def set_filter(self, column: str, values: Iterable[object] | None) -> None:
        """Show only rows whose ``column`` is one of ``values`` in this
        subscription's views (``None`` shows everything). The data itself is kept:
        clearing the filter redraws the full window."""
        self.view_filters.set(column, values)
