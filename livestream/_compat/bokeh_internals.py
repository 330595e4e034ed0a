"""Bokeh and jupyter_bokeh internals a notebook chart relies on, checked at import.

A :class:`~livestream.notebook.chart.LiveChart` collects the document events of one
frame and sends them as one ``PATCH-DOC`` message (:func:`patch_doc_parts`), the
way Bokeh's own server does, instead of jupyter_bokeh's message per event. That
uses Bokeh's serializer and document-model bookkeeping, and overrides two
jupyter_bokeh ``BokehModel`` hooks (``_document_patched``: the document changed;
``_sync_model``: the browser changed a model). None of these is public API, so
:func:`check` runs at import and raises ImportError naming what is missing.
"""

from __future__ import annotations

import inspect
from typing import Any

import bokeh
from bokeh.core.serialization import Serializer
from bokeh.document import Document
from bokeh.document.json import PatchJson
from bokeh.protocol.messages.patch_doc import patch_doc
from jupyter_bokeh import BokehModel

__all__ = ["BokehModel", "check", "patch_doc_parts"]


def patch_doc_parts(events: list) -> tuple[str, str, str]:
    """The header, metadata and content (JSON text) of one ``PATCH-DOC`` message
    holding ``events`` (all of one document), with arrays inline as base64 binary;
    marks the models it sends as synced."""
    doc = events[0].document
    serializer = Serializer(references=doc.models.synced_references, deferred=False)
    patch_json = PatchJson(events=serializer.encode(events))
    doc.models.flush_synced(lambda model: not serializer.has_ref(model))
    msg = patch_doc(patch_doc.create_header(), {}, patch_json)
    return msg.header_json, msg.metadata_json, msg.content_json


def check() -> None:
    """Raise ImportError if an internal this module uses is gone or changed."""
    problems = []
    models = Document().models
    for name in ("synced_references", "flush_synced"):
        if not hasattr(models, name):
            problems.append(f"bokeh Document.models.{name}")
    try:
        params = inspect.signature(Serializer).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "references" not in params or "deferred" not in params:
        problems.append("bokeh Serializer(references=, deferred=)")
    if not hasattr(patch_doc, "create_header"):
        problems.append("bokeh patch_doc.create_header")
    for name in ("_document_patched", "_sync_model"):
        if not callable(getattr(BokehModel, name, None)):
            problems.append(f"jupyter_bokeh BokehModel.{name}")
    if problems:
        raise ImportError(
            f"livestream's notebook charts need internals that bokeh {bokeh.__version__} / "
            f"jupyter_bokeh do not have: {', '.join(problems)} (see livestream/_compat)")


def sync_model(widget: Any, model: Any, content: dict, buffers: list) -> None:
    """jupyter_bokeh's own handling of a browser → kernel model change."""
    BokehModel._sync_model(widget, model, content, buffers)


check()
