"""Every reliance of livestream's client and view layers on a third-party internal, in one place.

Each module here wraps one library's internals behind a small function, checks
at import that they are still there (so an upgrade that removes one fails at
``import``, naming it, rather than deep inside a frame), and is tested in
``tests/test_compat.py``:

* :mod:`.pandas_internals` — ``DataFrame._from_arrays``, a DataFrame from column
  arrays without re-validating them (~4x cheaper than the constructor). It has a
  public fallback: if the probe fails, a warning is logged once and the
  constructor is used (tested).
* :mod:`.bokeh_internals` — the document-patch plumbing a notebook chart uses to
  send one ``PATCH-DOC`` message per frame (``Serializer``, ``PatchJson``,
  ``patch_doc``, ``Document.models.synced_references``/``flush_synced``) and the
  jupyter_bokeh ``BokehModel`` hooks it overrides (``_document_patched``,
  ``_sync_model``). No fallback: import fails loudly.
* :mod:`.bokeh_validation` — a live chart's figure skips Bokeh's ``W-1000
  MISSING_RENDERERS`` check (it has no renderer until its first series), by
  replacing that one plot's ``_check_missing_renderers``; Bokeh silences warnings
  only process-wide.

The server's Tornado reliances live in ``livestream/server`` (checked at server
start). The client's WebSocket transport (picows, ``livestream/client/transport.py``)
uses public API only. Nothing in ``livestream`` imports this package's modules except where
the reliance is used, so ``import livestream`` stays light.
"""
