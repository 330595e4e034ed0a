"""What each notebook cell started, so that running the cell again first stops it.

Re-running a cell must leave exactly what one run leaves. Servers
(``ls.serve()``, ``dash.serve()``), demo feeds and connections call :func:`own`
when they start: in a Jupyter kernel the object is recorded against the cell
being executed (the frontend's ``cellId``, else a hash of the cell's source)
and that execution (the request's message id). The first time a cell's *new*
execution starts something, everything its earlier executions started is
closed, newest first (connections before the servers they talk to), so a
re-run ``ls.serve(port=8765)`` finds its port free and a re-run
``ls.serve(port=0)`` leaves no second server listening. Things started by other
cells, or outside a kernel (scripts, tests), are never touched.

This module knows nothing of what it closes: each owner passes its own
``close``. It sits at the bottom of the layers (servers and clients both use it).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["current_run", "own", "owned", "release_previous"]

log = logging.getLogger("livestream")

_lock = threading.RLock()
#: cell identity → (execution id, [(object, close)])
_runs: dict[tuple[str, str], tuple[str, list[tuple[Any, Callable[[], Any]]]]] = {}


def current_run() -> tuple[tuple[str, str], str] | None:
    """``(cell identity, execution id)`` of the Jupyter cell being executed, or None
    outside an ipykernel kernel (or when no execute request is being served).

    The identity is ``("cell", cellId)`` when the frontend sends one (JupyterLab,
    Notebook 7), else ``("code", sha1 of the source)``; the execution id is the
    execute request's message id."""
    kb = sys.modules.get("ipykernel.kernelbase")
    if kb is None:
        return None
    try:
        if not kb.Kernel.initialized():
            return None
        kernel = kb.Kernel.instance()
        try:
            parent = kernel.get_parent("shell")
        except TypeError:
            parent = kernel.get_parent()
    except Exception:
        return None
    if not parent or parent.get("header", {}).get("msg_type") != "execute_request":
        return None
    run = str(parent.get("header", {}).get("msg_id", ""))
    meta = parent.get("metadata") or {}
    cid = meta.get("cellId") or meta.get("cell_id")
    if cid:
        return ("cell", str(cid)), run
    code = (parent.get("content") or {}).get("code")
    if isinstance(code, str):
        return ("code", hashlib.sha1(code.encode()).hexdigest()), run
    return None


def release_previous(keep: Any = None) -> None:
    """Close what earlier executions of the running cell started (except ``keep``).

    Does nothing outside a cell, or when this execution already did it."""
    cur = current_run()
    if cur is None:
        return
    cell, run = cur
    with _lock:
        got = _runs.get(cell)
        if got is not None and got[0] == run:
            return
        old = got[1] if got is not None else []
        _runs[cell] = (run, [(o, c) for o, c in old if o is keep])
    for obj, close in reversed(old):
        if obj is keep:
            continue
        try:
            close()
        except Exception:
            log.exception("livestream: closing %r of a re-run cell failed", obj)
        else:
            log.info("livestream: re-run of a cell closed %r", obj)


def own(obj: Any, close: Callable[[], Any] | None = None) -> None:
    """Record ``obj`` as started by the running cell (``close()``, default
    ``obj.close``, stops it when the cell runs again); first closes what earlier
    executions of the cell started. Does nothing outside a cell."""
    cur = current_run()
    if cur is None:
        return
    release_previous(keep=obj)
    cell, run = cur
    fn = close if close is not None else obj.close
    with _lock:
        got = _runs.get(cell)
        items = got[1] if got is not None and got[0] == run else []
        if all(o is not obj for o, _ in items):
            items.append((obj, fn))
        _runs[cell] = (run, items)


def owned() -> dict[tuple[str, str], list[Any]]:
    """What each cell's latest execution started (for tests and diagnostics)."""
    with _lock:
        return {cell: [o for o, _ in items] for cell, (_, items) in _runs.items()}
