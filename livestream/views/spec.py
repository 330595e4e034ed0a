"""A view spec: what one view shows, without a live object behind it.

A :class:`ViewSpec` records what ``sub.chart(...)``, ``sub.table(...)``,
``sub.ticker(...)`` and ``sub.controls()`` describe: the view kind, the topic, the
server it comes from, the subscription window and the view's options. Dashboards
hold specs, and each target (a notebook, a Bokeh server session, a static page, a
direct-mode chart) makes its own live objects from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .options import ChartOptions

ViewKind = Literal["chart", "table", "ticker", "controls"]


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(eq=False)
class ViewSpec:
    """What one view shows: ``view`` (chart, table, ticker, controls) of ``topic``.

    ``url`` is the livestream server the topic comes from (``None`` for an
    outside feed's stream, which targets then share read-only), ``window`` the
    subscription window, ``options`` the view's keyword arguments. ``token``
    (not part of :meth:`to_json`) is the connection's token. ``sub`` and
    ``live`` keep the subscription and live view the spec was taken from, for
    targets in the same process. ``urls`` lists every node of a cluster when the
    subscription's connection was given several (``ls.connect([url1, url2])``;
    ``url`` is then the one in use), so a target reconnects with the same list.
    """

    view: ViewKind
    topic: str | None
    options: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    window: int | None = None
    token: str | None = field(default=None, repr=False)
    sub: Any = field(default=None, repr=False)
    live: Any = field(default=None, repr=False)
    urls: tuple[str, ...] = field(default=(), repr=False)

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def of(cls, sub: Any, view: ViewKind, live: Any = None, **options: Any) -> ViewSpec:
        """The spec of ``view`` over subscription ``sub`` with ``options``."""
        source = getattr(sub, "source", None)
        url = getattr(source, "url", None) if source is not None else None
        if not (isinstance(url, str) and url.startswith(("ws://", "wss://"))) or \
                not hasattr(source, "subscribe"):
            url = None  # an outside feed: not re-subscribable by topic
        token = getattr(sub, "token", None) or getattr(source, "token", None)
        urls = getattr(source, "urls", ()) if url is not None else ()
        return cls(view, getattr(sub, "name", None), dict(options), url=url,
                   window=getattr(sub, "window", None), token=token, sub=sub, live=live,
                   urls=tuple(urls) if isinstance(urls, tuple | list) and len(urls) > 1
                   else ())

    @classmethod
    def chart(cls, sub: Any, x: str | None = None, y: Any = None, **options: Any) -> ViewSpec:
        """A chart spec without making a notebook chart (arguments of ``sub.chart``,
        checked by :class:`~livestream.views.options.ChartOptions`)."""
        return cls.of(sub, "chart", **ChartOptions.of(x, y, **options).as_kwargs())

    @classmethod
    def table(cls, sub: Any, rows: int = 20, **options: Any) -> ViewSpec:
        """A table spec (arguments of ``sub.table``)."""
        return cls.of(sub, "table", rows=rows, **options)

    @classmethod
    def ticker(cls, sub: Any, value: str, by: str | None = None, **options: Any) -> ViewSpec:
        """A ticker-cards spec (arguments of ``sub.ticker``)."""
        return cls.of(sub, "ticker", value=value, by=by, **options)

    @classmethod
    def controls(cls, sub: Any, filter_column: str | None = None) -> ViewSpec:
        """A controls spec (pause/resume, window, filter)."""
        return cls.of(sub, "controls", filter_column=filter_column)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON-able data (options that are not JSON are left out; no token)."""
        return {
            "view": self.view,
            "topic": self.topic,
            "url": self.url,
            "window": self.window,
            "options": {k: v for k, v in self.options.items() if _jsonable(v)},
        }
