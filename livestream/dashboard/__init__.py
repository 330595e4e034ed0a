"""Dashboards: compose live views into rows, columns and tabs; show them in a notebook,
serve them as a Bokeh server app (one set of views per browser session), or save
them as a static page that streams by itself.

See ``docs/dashboards.md``.
"""

from __future__ import annotations

from ..views.spec import ViewSpec
from .dashboard import Dashboard
from .layout import Column, Row, Tabs, Text, spec_of

__all__ = ["Column", "Dashboard", "Row", "Tabs", "Text", "ViewSpec", "spec_of"]
