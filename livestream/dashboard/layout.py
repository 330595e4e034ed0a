"""The layout of a dashboard: rows, columns, tabs and text around view specs.

Layout: ``Dashboard([row1, row2])`` stacks rows; a list inside is a row; a list
inside a row is a column, and so on alternately. ``Row(...)``, ``Column(...)``
and ``Tabs({"Trading": ..., "Chat": ...})`` say it explicitly. A string is a
heading/text block. Live views (``sub.chart(...)``, ``sub.table()``, ...) become
their :class:`~livestream.views.spec.ViewSpec` (:func:`spec_of`).

The targets (:mod:`.notebook`, :mod:`.server`, :mod:`.static`) walk this tree;
:class:`~livestream.dashboard.dashboard.Dashboard` ties it to them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..views.spec import ViewSpec

#: The page style of a ``theme="dark"`` dashboard (served apps and static pages).
DARK_CSS = (
    "body{background:#1f2328;color:#e6e6e6}"
    ".ls-card{border-color:rgba(255,255,255,.25)!important}"
)

def spec_of(item: Any) -> ViewSpec:
    """The :class:`ViewSpec` of a live view (its ``view_spec()``: ``LiveChart``,
    ``DirectChart``, ``LiveTable``, ``Ticker``, ``Controls``) or of a spec (returned as is)."""
    if isinstance(item, ViewSpec):
        return item
    view_spec = getattr(item, "view_spec", None)  # every live view has one
    if callable(view_spec):
        spec = view_spec()
        if isinstance(spec, ViewSpec):
            return spec
    raise TypeError(
        f"a dashboard holds charts, tables, tickers, controls (sub.chart(), sub.table(), "
        f"sub.ticker(), sub.controls()), text, and Row/Column/Tabs of them; got {item!r}")


# -- layout nodes ---------------------------------------------------------------------------


class _Container:
    children: list[Any]

    def __init__(self, *children: Any, title: str | None = None) -> None:
        if len(children) == 1 and isinstance(children[0], list | tuple):
            children = tuple(children[0])
        self.children = list(children)
        self.title = title

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(c) for c in self.children)})"


class Row(_Container):
    """Children side by side: ``Row(chart, table)`` or ``Row([chart, table])``."""


class Column(_Container):
    """Children stacked: ``Column(chart, table)``."""


class Tabs:
    """Tabs: ``Tabs({"Trading": [...], "Chat": chat_chart})`` or ``Tabs(("A", x), ("B", y))``."""

    def __init__(self, tabs: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
                 *more: tuple[str, Any], **named: Any) -> None:
        items: list[tuple[str, Any]] = []
        if isinstance(tabs, Mapping):
            items += list(tabs.items())
        elif tabs is not None:
            tabs = list(tabs)
            if len(tabs) == 2 and isinstance(tabs[0], str):
                items.append((tabs[0], tabs[1]))  # Tabs(("A", x)) with one tab
            else:
                items += [tuple(t) for t in tabs]  # type: ignore[misc]
        items += [tuple(t) for t in more]  # type: ignore[misc]
        items += list(named.items())
        self.tabs: list[tuple[str, Any]] = [(str(t), c) for t, c in items]

    def __repr__(self) -> str:
        return f"Tabs({dict(self.tabs)!r})"


@dataclass
class Text:
    """A text block (HTML-escaped; a leading ``# `` makes it a heading)."""

    text: str

    def html(self) -> str:
        t = self.text
        if t.startswith("# "):
            return f"<h2 style='margin:4px 0'>{html.escape(t[2:])}</h2>"
        if t.startswith("## "):
            return f"<h3 style='margin:4px 0'>{html.escape(t[3:])}</h3>"
        return f"<div>{html.escape(t)}</div>"


Node = Row | Column | Tabs | Text | ViewSpec


def normalize(item: Any, parent: type = Column) -> Node:
    """Turn nested lists, dicts, strings and live views into a tree of layout nodes.

    A list directly inside a column becomes a row, a list inside a row a column.
    """
    if isinstance(item, Row | Column):
        cls = type(item)
        node = cls(*[normalize(c, cls) for c in item.children], title=item.title)
        return node
    if isinstance(item, Tabs):
        t = Tabs()
        t.tabs = [(title, normalize(c, Column)) for title, c in item.tabs]
        return t
    if isinstance(item, Mapping):
        return normalize(Tabs(item), parent)
    if isinstance(item, list | tuple):
        cls = Row if parent is Column else Column
        return cls(*[normalize(c, cls) for c in item])
    if isinstance(item, str):
        return Text(item)
    if isinstance(item, Text):
        return item
    return spec_of(item)


def iter_specs(node: Node) -> Iterator[ViewSpec]:
    """Every view spec in a layout tree, depth first."""
    if isinstance(node, ViewSpec):
        yield node
    elif isinstance(node, Row | Column):
        for c in node.children:
            yield from iter_specs(c)
    elif isinstance(node, Tabs):
        for _, c in node.tabs:
            yield from iter_specs(c)


def layout_json(node: Node) -> dict[str, Any]:
    """A layout tree as JSON-able data (views by their :meth:`ViewSpec.to_json`)."""
    if isinstance(node, ViewSpec):
        return {"type": "view", **node.to_json()}
    if isinstance(node, Text):
        return {"type": "text", "text": node.text}
    if isinstance(node, Tabs):
        return {"type": "tabs", "tabs": [[t, layout_json(c)] for t, c in node.tabs]}
    return {"type": type(node).__name__.lower(), "children": [layout_json(c) for c in node.children]}


