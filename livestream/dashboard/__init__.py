"""Dashboards: compose live views into rows, columns and tabs; show them in a notebook,
serve them as a Bokeh server app (one set of views per browser session), or save
them as a static page that streams by itself.

See ``docs/dashboards.md``.
"""

from __future__ import annotations

from ..views.spec import ViewSpec
from .dashboard import Dashboard
from .layout import Column, Row, Tabs, Text, spec_of


def viewer_token(doc: object = None) -> str | None:
    """The viewer's ``?livestream_token=`` of the current Bokeh server session (or ``None``);
    see :func:`livestream.dashboard.server.viewer_token`."""
    from .server import viewer_token as _viewer_token

    return _viewer_token(doc)  # type: ignore[arg-type]


__all__ = ["Column", "Dashboard", "Row", "Tabs", "Text", "ViewSpec", "spec_of", "viewer_token"]
