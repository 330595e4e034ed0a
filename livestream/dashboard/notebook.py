"""A dashboard in a notebook: an ipywidgets layout of live notebook views.

Each view spec becomes a notebook view of the spec's own subscription (the
notebook's): the live view the spec was taken from when it is still open (so a
chart made inline in ``Dashboard([...])`` is not drawn twice), else a new one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as W

from . import layout as L

if TYPE_CHECKING:
    from ..views.spec import ViewSpec
    from .dashboard import Dashboard

_DARK = ("<style>.ls-dash-dark{background:#1f2328;color:#e6e6e6;padding:6px}"
         ".ls-dash-dark .ls-card{border-color:rgba(255,255,255,.25)}</style>")


def view_widget(spec: ViewSpec) -> Any:
    """The live notebook view of ``spec``."""
    live = spec.live
    if live is not None and not getattr(live, "closed", True):
        return live
    sub = spec.sub
    if sub is None:
        raise ValueError(f"{spec.view} {spec.topic!r} has no subscription in this kernel")
    opts = dict(spec.options)
    view = getattr(sub, spec.view)(**opts)
    spec.live = view
    return view


def _widget(node: Any) -> Any:
    if isinstance(node, L.ViewSpec):
        return view_widget(node)
    if isinstance(node, L.Text):
        return W.HTML(node.html())
    if isinstance(node, L.Row):
        kids = [_widget(c) for c in node.children]
        for k in kids:
            if hasattr(k, "layout"):
                k.layout.flex = "1 1 0%"
                k.layout.min_width = "0"
        return W.HBox(kids, layout=W.Layout(width="100%", align_items="stretch"))
    if isinstance(node, L.Column):
        return W.VBox([_widget(c) for c in node.children], layout=W.Layout(width="100%"))
    if isinstance(node, L.Tabs):
        tab = W.Tab(children=[_widget(c) for _, c in node.tabs])
        tab.titles = tuple(t for t, _ in node.tabs)
        return tab
    raise TypeError(f"not a dashboard node: {node!r}")


def dashboard_widget(dash: Dashboard) -> W.Widget:
    """``dash`` as an ipywidgets ``VBox`` (title, then the layout)."""
    import html

    head = W.HTML(f"<h2 style='margin:4px 0'>{html.escape(dash.title)}</h2>")
    box = W.VBox([head, _widget(dash.root)], layout=W.Layout(width="100%"))
    if dash.theme == "dark":
        head.value = _DARK + head.value
        box.add_class("ls-dash-dark")
    return box
