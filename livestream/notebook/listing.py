"""The listing of ``livestream.subscriptions()`` as ipywidgets, with buttons per row.

:class:`~livestream.client.registry.SubscriptionList` holds the rows (and shows as a
text or HTML table anywhere); in a kernel it displays as this widget, which the
notebook layer registers as the ``"listing"`` view (``client`` draws nothing).
"""

from __future__ import annotations

import asyncio
import html
import logging
import weakref
from typing import Any

import ipywidgets as W

from ..client.registry import SubscriptionList, _act

log = logging.getLogger("livestream.client")

__all__ = ["StatusWidget", "listing_widget"]


class StatusWidget:
    """The ipywidgets behind :meth:`SubscriptionList.widget` (``.box`` is the widget):
    a line per connection and subscription with pause/resume/close buttons."""

    def __init__(self, listing: SubscriptionList, refresh_every: float | None) -> None:
        self._W = W
        self.listing = listing
        self.box = W.VBox(layout=W.Layout(width="100%"))
        self._labels: list[Any] = []
        self._objs: list[Any] = []
        self.refresh_every = refresh_every
        self._build()
        if refresh_every:
            self._schedule()

    def _line(self, r: dict) -> str:
        age = r["last_message_age"]
        name = f" <b>{html.escape(r['name'])}</b>" if r["name"] else ""
        attempts = f" attempts={r['attempts']}" if r.get("attempts") is not None else ""
        err = f" <i>{html.escape(str(r['last_error']))}</i>" if r["last_error"] else ""
        return (
            f"<code>{r['kind']}</code> {html.escape(r['url'])}{name} "
            f"<b>{html.escape(str(r['state']))}</b> rows={r['rows']} "
            f"{r['rows_per_s']:.0f}/s last={'-' if age is None else f'{age:.1f}s'} "
            f"reconnects={r['reconnects']}{attempts} errors={r['errors']}{err}"
        )

    def _build(self) -> None:
        W = self._W
        children = []
        self._labels, self._objs = [], []
        for r in self.listing.rows:
            label = W.HTML(self._line(r), layout=W.Layout(flex="1 1 auto"))
            obj = r["obj"]
            buttons = []
            for action in ("pause", "resume", "close"):
                b = W.Button(description=action, layout=W.Layout(width="70px"))
                b.on_click(lambda _b, o=obj, a=action: self._click(o, a))
                buttons.append(b)
            children.append(W.HBox([label, *buttons]))
            self._labels.append(label)
            self._objs.append(obj)
        if not children:
            children.append(W.HTML("<i>no livestream connections</i>"))
        self.box.children = children

    def _click(self, obj: Any, action: str) -> None:
        try:
            _act(obj, action)
        finally:
            self.update()

    def update(self) -> None:
        """Re-read the registry and update the rows (rebuild if rows came or went)."""
        self.listing.refresh()
        objs = [r["obj"] for r in self.listing.rows]
        if len(objs) != len(self._objs) or any(a is not b for a, b in zip(objs, self._objs, strict=False)):
            self._build()
            return
        for label, r in zip(self._labels, self.listing.rows, strict=False):
            text = self._line(r)
            if label.value != text:
                label.value = text

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        ref = weakref.ref(self)

        def tick() -> None:
            me = ref()
            if me is None or getattr(me.box, "comm", None) is None:
                return
            try:
                me.update()
            except Exception:
                log.debug("livestream: status widget update failed", exc_info=True)
            loop.call_later(me.refresh_every or 1.0, tick)

        loop.call_later(self.refresh_every or 1.0, tick)


def listing_widget(listing: SubscriptionList, refresh_every: float | None = 1.0) -> Any:
    """The widget of ``listing`` (what :meth:`SubscriptionList.widget` returns)."""
    return StatusWidget(listing, refresh_every).box
