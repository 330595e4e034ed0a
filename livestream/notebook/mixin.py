"""View methods that :class:`~livestream.client.subscription.Subscription` inherits.

They import the notebook extras (bokeh, ipywidgets) lazily, so the core client
works without them.
"""

from __future__ import annotations


class ViewsMixin:
    """``sub.chart()``, ``sub.table()``, ``sub.ticker()``, ``sub.controls()``."""
