"""Where ``sub.chart()``, ``.table()``, ``.ticker()`` and ``.controls()`` find what draws them.

The client layer receives and holds data; it draws nothing and imports no view
code (layers point down: ``docs/decisions.md``). The layer that draws,
:mod:`livestream.notebook`, registers one factory per view kind with
:func:`register` when it is imported, and ``import livestream`` imports it. A
factory is called as ``factory(sub, *args, **kwargs)`` with the arguments of the
subscription's method and returns the live view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import LivestreamError

__all__ = ["KINDS", "ViewFactory", "factory", "make", "register"]

#: The view kinds: those a subscription offers, and ``listing`` (the widget of
#: ``livestream.subscriptions()``).
KINDS: tuple[str, ...] = ("chart", "table", "ticker", "controls", "listing")

ViewFactory = Callable[..., Any]

_factories: dict[str, ViewFactory] = {}


def register(kind: str, factory: ViewFactory) -> None:
    """Make ``factory`` the maker of ``kind`` views (replacing any before it)."""
    if kind not in KINDS:
        raise ValueError(f"view kind must be one of {KINDS}, got {kind!r}")
    _factories[kind] = factory


def factory(kind: str) -> ViewFactory | None:
    """The factory registered for ``kind``, if any."""
    return _factories.get(kind)


def make(view: str, sub: Any, /, *args: Any, **kwargs: Any) -> Any:
    """A new ``view`` (a kind of :data:`KINDS`) of ``sub`` from the registered factory."""
    f = _factories.get(view)
    if f is None:
        raise LivestreamError(
            f"no {view} views are available: import livestream.notebook (``import livestream`` "
            "does) to draw subscriptions")
    return f(sub, *args, **kwargs)
