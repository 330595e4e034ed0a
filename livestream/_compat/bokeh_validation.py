"""Bokeh's document validation, for a live chart that starts empty.

A live chart's figure has no renderers until its first series arrives, so Bokeh's
validation logs ``W-1000 (MISSING_RENDERERS)`` for it each time a document holding
it is served. Bokeh only silences a warning for the whole process
(``bokeh.core.validation.silence``), which would hide it for the user's own plots
too. Validation (``bokeh.core.validation.check.check_integrity``) runs every
``_check*`` attribute of a model that carries a ``validator_type``; an instance
attribute without one replaces that check for this one plot.
:func:`silence_missing_renderers` relies on that; tests/views check it still works.
"""

from __future__ import annotations

from typing import Any

__all__ = ["silence_missing_renderers"]


def _no_issues() -> list:
    return []


def silence_missing_renderers(plot: Any) -> None:
    """Skip the ``MISSING_RENDERERS`` check for ``plot`` only (it gets its renderers
    as data arrives)."""
    plot._check_missing_renderers = _no_issues
