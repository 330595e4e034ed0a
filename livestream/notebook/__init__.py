"""Live views in Jupyter: Bokeh charts, tables, ticker cards, controls and status widgets.

Everything here runs on the kernel's event loop and coalesces updates to a few
frames a second, whatever the input rate (see ``chart.py`` for how a chart keeps
its comm traffic bounded). BokehJS is loaded inline, automatically.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..client import view_factories
from .loader import bokehjs_loaded, load_bokehjs

if TYPE_CHECKING:
    from .chart import LiveChart
    from .direct import DirectChart
    from .widgets import ConnectionStatus, Controls, LiveTable, Ticker

__all__ = [
    "ConnectionStatus",
    "Controls",
    "LiveChart",
    "LiveTable",
    "Ticker",
    "bokehjs_loaded",
    "live_views",
    "load_bokehjs",
    "status_widget",
]


def status_widget(connection: Any) -> ConnectionStatus:
    """The live status widget of a connection (see :func:`widgets.status_widget`)."""
    from .widgets import status_widget as _status_widget

    return _status_widget(connection)


def live_views() -> list[Any]:
    """Every live view that is still open in this kernel."""
    from ._runtime import live_views as _live_views

    return _live_views()


def __getattr__(name: str) -> Any:
    if name == "LiveChart":
        from .chart import LiveChart

        return LiveChart
    if name in ("ConnectionStatus", "Controls", "LiveTable", "Ticker"):
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(name)




# -- the views of a subscription (``sub.chart()`` ...): made here, registered with the client --


def chart(sub: Any, x: str | None = None, y: str | Sequence[str] | None = None, *,
          direct: bool = False, **options: Any) -> LiveChart | DirectChart:
    """``sub.chart(...)``: a :class:`~.chart.LiveChart`, or with ``direct=True`` a
    :class:`~.direct.DirectChart` (options: :class:`~livestream.views.options.ChartOptions`)."""
    if direct:
        from .direct import DirectChart

        return DirectChart(sub, x, y, **options)
    from .chart import LiveChart

    return LiveChart(sub, x, y, **options)


def table(sub: Any, rows: int = 20, **options: Any) -> LiveTable:
    """``sub.table(...)``: a :class:`~.widgets.LiveTable`."""
    from .widgets import LiveTable

    return LiveTable(sub, rows=rows, **options)


def ticker(sub: Any, value: str, by: str | None = None, **options: Any) -> Ticker:
    """``sub.ticker(...)``: a :class:`~.widgets.Ticker`."""
    from .widgets import Ticker

    return Ticker(sub, value=value, by=by, **options)


def controls(sub: Any, filter_column: str | None = None) -> Controls:
    """``sub.controls(...)``: a :class:`~.widgets.Controls`."""
    from .widgets import Controls

    return Controls(sub, filter_column=filter_column)


def listing(subs: Any, refresh_every: float | None = 1.0) -> Any:
    """``livestream.subscriptions().widget()``: rows with pause/resume/close buttons."""
    from .listing import listing_widget

    return listing_widget(subs, refresh_every)


for _kind, _factory in (("chart", chart), ("table", table), ("ticker", ticker),
                        ("controls", controls), ("listing", listing)):
    view_factories.register(_kind, _factory)


def _connection_mimebundle(conn: Any, include: Any = None, exclude: Any = None) -> Any:
    return status_widget(conn)._repr_mimebundle_(include=include, exclude=exclude)


def register_display() -> None:
    """Make IPython show a ``Connection`` as its live status widget.

    Registered on import inside IPython; a ``Connection._repr_mimebundle_`` calling
    :func:`status_widget` does the same thing and would make this unnecessary.
    """
    ipython = sys.modules.get("IPython")  # not imported: not in IPython, nothing to do
    if ipython is None:
        return
    ip = ipython.get_ipython()
    if ip is None or getattr(ip, "kernel", None) is None:
        return
    fmt = ip.display_formatter.mimebundle_formatter
    fmt.for_type_by_name("livestream.client.connection", "Connection", _connection_mimebundle)


register_display()
