"""Every connection and subscription of this process (kernel), for ``livestream.subscriptions()``.

Connections (livestream :class:`~livestream.client.connection.Connection` and
outside-feed :class:`~livestream.client.feed.FeedConnection`) :func:`register`
themselves when created and :func:`unregister` when closed. The registry holds
them weakly: it never keeps a connection alive by itself.

Re-running a cell
-----------------
``livestream.connect()`` goes through :func:`claim`. The policy is **replace,
per cell**: in a Jupyter kernel, a connection is identified by its URL, an
optional ``key`` (``name=`` in ``connect``) and the *cell that opened it* (the
frontend's cell id, or the cell's source text when the frontend sends no id).
Running that cell again closes the connection it opened before (its
subscriptions end with state ``closed``, so their charts stop) and opens a new
one with the options as now written. Different cells that connect to the same
URL keep separate connections, as written. Outside a kernel (scripts, tests)
every ``connect()`` opens its own connection unless a ``key`` is given, in which
case the same rule applies per key. ``policy="reuse"`` returns the open
connection instead of replacing it; ``policy="new"`` never replaces.

Why replace, not reuse: a re-run cell usually carries edited options (a new
subscribe message, another token); reusing would silently ignore the edit, and
subscriptions made by the next cells would pile up on the old connection.

Shutdown
--------
Everything registered is closed at interpreter exit (``atexit``) and, in a
Jupyter kernel, when the kernel is asked to shut down or restart (before its
loop stops, so close frames still go out).
"""

from __future__ import annotations

import atexit
import html
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .. import cells
from ..errors import LivestreamError
from . import view_factories

log = logging.getLogger("livestream.client")

T = TypeVar("T")

_lock = threading.RLock()
_conns: dict[int, weakref.ref] = {}
_claims: dict[tuple, weakref.ref] = {}
_kernel_hooked = False

COLUMNS = ("kind", "url", "name", "state", "rows", "rows_per_s", "last_message_age",
           "reconnects", "errors", "last_error")


# -- registration ----------------------------------------------------------------------


def register(conn: Any) -> None:
    """Record a connection (it needs ``url``, ``state``, ``stats``, ``subscriptions``,
    ``close()``). Held weakly; call :func:`unregister` when it closes."""
    key = id(conn)

    def gone(_ref: weakref.ref, key: int = key) -> None:
        with _lock:
            if _conns.get(key) is _ref:
                del _conns[key]

    with _lock:
        _conns[key] = weakref.ref(conn, gone)
    _hook_kernel_shutdown()


def unregister(conn: Any) -> None:
    """Forget a connection (closed ones stay out of the listing)."""
    with _lock:
        ref = _conns.get(id(conn))
        if ref is not None and ref() is conn:
            del _conns[id(conn)]


def connections() -> list[Any]:
    """The registered connections, oldest first."""
    with _lock:
        refs = list(_conns.values())
    return [c for c in (r() for r in refs) if c is not None]


# -- re-running cells --------------------------------------------------------------------


def _cell_identity() -> tuple[str, str] | None:
    """The Jupyter cell being executed: ("cell", id) or ("code", sha1 of its source);
    None outside an ipykernel kernel (see :func:`livestream.cells.current_run`)."""
    run = cells.current_run()
    return run[0] if run is not None else None


def claim(url: str, key: Any, factory: Callable[[], T], *, policy: str = "replace") -> T:
    """Open (``factory()``) a connection to ``url`` under the re-run policy of this module.

    ``key`` distinguishes several connections to one URL from the same cell (None
    if not needed). ``policy``: ``"replace"`` (default) closes the connection the
    same cell (and key) opened before; ``"reuse"`` returns it if still open;
    ``"new"`` always opens another.
    """
    if policy not in ("replace", "reuse", "new"):
        raise ValueError(f"policy must be 'replace', 'reuse' or 'new', got {policy!r}")
    cell = _cell_identity()
    if policy == "new" or (cell is None and key is None):
        return factory()
    ident = (url, key, cell)
    with _lock:
        ref = _claims.get(ident)
        old = ref() if ref is not None else None
    if old is not None and not getattr(old, "closed", False):
        if policy == "reuse":
            cells.own(old)  # kept by this run; what else earlier runs started is closed
            return old  # type: ignore[no-any-return]
        log.info("livestream: re-run of a cell replaces its connection to %s", url)
        try:
            old.close()
        except Exception:
            log.exception("livestream: closing the replaced connection failed")
    # whatever earlier runs of this cell started (connections to another URL, servers)
    cells.release_previous()
    new = factory()
    cells.own(new)
    with _lock:
        _claims[ident] = weakref.ref(new)
    return new


# -- listing -----------------------------------------------------------------------------


def _subs_of(conn: Any) -> list[Any]:
    subs = getattr(conn, "subscriptions", None) or {}
    return list(subs.values()) if isinstance(subs, dict) else list(subs)


def _row_of_conn(conn: Any) -> dict:
    s = conn.stats
    subs = _subs_of(conn)
    age = getattr(s, "last_message_age", None)
    if age is None:
        ages = [a for a in (sub.stats.last_update_age for sub in subs) if a is not None]
        age = min(ages) if ages else None
    rows = getattr(s, "rows", None)
    if rows is None:
        rows = sum(sub.stats_data.rows for sub in subs)
    return {
        "kind": "feed" if hasattr(conn, "stream") else "connection",
        "url": conn.url,
        "name": getattr(conn, "name", "") or "",
        "state": getattr(conn, "display_state", None) or conn.state,
        "rows": rows,
        "rows_per_s": float(getattr(s, "rows_per_s", 0.0) or 0.0),
        "last_message_age": age,
        "reconnects": getattr(s, "reconnects", 0),
        "errors": getattr(s, "errors", 0),
        "last_error": getattr(s, "last_failure", None) or getattr(s, "last_error", None),
        "attempts": getattr(s, "attempts", None),
        "obj": conn,
    }


def _row_of_sub(conn: Any, sub: Any) -> dict:
    s = sub.stats
    return {
        "kind": "stream" if hasattr(sub, "dead_letters") else "subscription",
        "url": conn.url,
        "name": sub.name,
        "state": s.state,
        "rows": s.rows,
        "rows_per_s": float(s.rows_per_s),
        "last_message_age": s.last_update_age,
        "reconnects": s.reconnects,
        "errors": s.errors,
        "last_error": s.last_error,
        "attempts": None,
        "obj": sub,
    }


class SubscriptionList:
    """A snapshot of every connection and subscription, one row each.

    Rows are dicts with the keys of :data:`COLUMNS` (``obj`` holds the object).
    Index it (``subs[2]``), iterate it, turn it into a DataFrame
    (:meth:`to_frame`), or act on a row by index, URL, name or object:
    :meth:`pause`, :meth:`resume`, :meth:`close`. In a notebook it displays as a
    widget with pause/resume/close buttons per row (made by the notebook layer, see
    :mod:`livestream.notebook.listing`).
    """

    def __init__(self, of: Any = None) -> None:
        self._of = of
        self.rows: list[dict] = _collect(of)

    def refresh(self) -> SubscriptionList:
        """Re-read the registry."""
        self.rows = _collect(self._of)
        return self

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]

    def to_frame(self) -> Any:
        """The listing as a pandas DataFrame (without the objects)."""
        import pandas as pd

        return pd.DataFrame([{k: r[k] for k in COLUMNS} for r in self.rows], columns=list(COLUMNS))

    @property
    def df(self) -> Any:
        return self.to_frame()

    def _find(self, target: Any) -> list[Any]:
        if isinstance(target, int) and not isinstance(target, bool):
            if not -len(self.rows) <= target < len(self.rows):
                raise IndexError(
                    f"no row {target}: the listing has {len(self.rows)} rows"
                    + (f" (0 to {len(self.rows) - 1})" if self.rows else "")
                    + "; call refresh() or livestream.subscriptions() for a fresh one"
                )
            return [self.rows[target]["obj"]]
        if isinstance(target, str):
            found = [r["obj"] for r in self.rows
                     if (r["name"] == target and r["kind"] in ("stream", "subscription"))
                     or (r["url"] == target and r["kind"] in ("connection", "feed"))]
            if not found:  # a feed by its name (its host)
                found = [r["obj"] for r in self.rows if r["name"] == target]
            if not found:
                raise KeyError(f"no connection or subscription named {target!r}")
            return found
        return [target]

    def pause(self, target: Any) -> None:
        """Pause a row (index, URL, stream/topic name or the object)."""
        for obj in self._find(target):
            _act(obj, "pause")

    def resume(self, target: Any) -> None:
        """Resume a row."""
        for obj in self._find(target):
            _act(obj, "resume")

    def close(self, target: Any) -> None:
        """Close a row (closing a connection closes its subscriptions)."""
        for obj in self._find(target):
            _act(obj, "close")

    def close_all(self) -> None:
        """Close every connection listed."""
        for r in self.rows:
            if r["kind"] in ("connection", "feed"):
                _act(r["obj"], "close")

    # -- display ------------------------------------------------------------------------

    def _text_rows(self) -> list[list[str]]:
        out = []
        for r in self.rows:
            age = r["last_message_age"]
            out.append([
                r["kind"], r["url"], r["name"], str(r["state"]), str(r["rows"]),
                f"{r['rows_per_s']:.0f}", "-" if age is None else f"{age:.1f}s",
                str(r["reconnects"]), str(r["errors"]), str(r["last_error"] or ""),
            ])
        return out

    def __repr__(self) -> str:
        head = ["kind", "url", "name", "state", "rows", "rows/s", "last msg", "reconnects",
                "errors", "last error"]
        body = self._text_rows()
        if not body:
            return "<no livestream connections>"
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=False))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=False)) for b in body]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("kind", "url", "name", "state", "rows",
                                                 "rows/s", "last msg", "reconnects", "errors",
                                                 "last error"))
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self._text_rows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        bundle: dict = {"text/plain": repr(self), "text/html": self._repr_html_()}
        if _in_kernel():
            try:
                w = self.widget()
                bundle.update(w._repr_mimebundle_(include=include, exclude=exclude) or {})
            except (ImportError, LivestreamError):  # no widgets here: the HTML table shows
                pass
        return bundle

    def widget(self, refresh_every: float | None = 1.0) -> Any:
        """An ipywidgets view with pause/resume/close buttons per row.

        It refreshes itself every ``refresh_every`` seconds on the running loop
        (one comm message per changed row, never more), until closed.
        """
        return view_factories.make("listing", self, refresh_every)


def _act(obj: Any, action: str) -> None:
    fn = getattr(obj, action, None)
    if fn is None:
        if action in ("pause", "resume"):
            for sub in _subs_of(obj):
                getattr(sub, action)()
            return
        raise TypeError(f"{type(obj).__name__} has no {action}()")
    fn()


def _collect(of: Any) -> list[dict]:
    conns = connections() if of is None else [of]
    rows = []
    for c in conns:
        try:
            rows.append(_row_of_conn(c))
            for sub in _subs_of(c):
                rows.append(_row_of_sub(c, sub))
        except Exception:  # a half-built or broken connection must not break the listing
            log.debug("livestream: cannot list %r", c, exc_info=True)
    return rows


def _in_kernel() -> bool:
    kb = sys.modules.get("ipykernel.kernelbase")
    try:
        return bool(kb is not None and kb.Kernel.initialized())
    except Exception:
        return False


def subscriptions(of: Any = None) -> SubscriptionList:
    """Every connection and subscription of this kernel (or of one connection ``of``)."""
    return SubscriptionList(of)


def pause(target: Any) -> None:
    """Pause a subscription or every subscription of a connection (see :class:`SubscriptionList`)."""
    subscriptions().pause(target)


def resume(target: Any) -> None:
    """Resume a subscription or connection."""
    subscriptions().resume(target)


def close(target: Any) -> None:
    """Close a subscription or connection."""
    subscriptions().close(target)


def close_all(timeout: float = 5.0, *, reason: str = "client closed") -> None:
    """Close every registered connection (within about ``timeout`` seconds in total).

    Feeds send close code 1000 with ``reason``, or 1001 (going away) when
    ``reason`` is ``"shutdown"`` (interpreter or kernel exit).
    """
    deadline = time.monotonic() + timeout
    code = 1001 if reason == "shutdown" else 1000
    for conn in reversed(connections()):
        if getattr(conn, "closed", False):
            continue
        try:
            left = max(0.1, deadline - time.monotonic())
            try:
                conn.close(timeout=left, code=code, reason=reason)
            except TypeError:
                conn.close()
        except Exception:
            log.debug("livestream: closing %r failed", conn, exc_info=True)


def _hook_kernel_shutdown() -> None:
    """Close everything when the Jupyter kernel is asked to shut down or restart."""
    global _kernel_hooked
    if _kernel_hooked or not _in_kernel():
        return
    kb = sys.modules["ipykernel.kernelbase"]
    try:
        kernel = kb.Kernel.instance()
        orig = kernel.do_shutdown
    except Exception:
        return

    def do_shutdown(restart: bool, *args: Any, **kwargs: Any) -> Any:
        try:
            close_all(timeout=2.0, reason="shutdown")
        except Exception:
            log.debug("livestream: close at kernel shutdown failed", exc_info=True)
        return orig(restart, *args, **kwargs)

    kernel.do_shutdown = do_shutdown
    _kernel_hooked = True


def _at_exit() -> None:
    close_all(2.0, reason="shutdown")


atexit.register(_at_exit)
