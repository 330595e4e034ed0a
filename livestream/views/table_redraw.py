"""Make a Bokeh ``DataTable`` redraw whenever its source's data changes.

Bokeh 3.9's ``DataTableView`` redraws its grid only when its ``CDSView``'s ``change``
signal fires, and the ``CDSView`` fires it only when its ``indices`` change, that is
when the row count changes. A table whose source is replaced, patched or streamed
with rollover at the same length keeps showing its old cells (upstream
bokeh#13859, fixed by bokeh#15136 for 3.10). :func:`redraw_on_change` attaches a
``CustomJS`` to the source that emits the table's ``CDSView.change`` after each
change, so the grid re-reads its cells. A ``CustomJS`` runs in the browser for
every change of the property, whoever made it: the Python side of a Bokeh server
session, a notebook's kernel through jupyter_bokeh, or the livestream JavaScript
client on a saved page; one mechanism covers every target, and needs no compiled
extension.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import CustomJS

__all__ = ["REDRAW_JS", "redraw_on_change"]

#: Emits the table's CDSView change once the change that triggered it has been applied
#: (a microtask: the CDSView recomputes its indices on the same signal first).
REDRAW_JS = """
if (table.__ls_redraw_pending) return;
table.__ls_redraw_pending = true;
queueMicrotask(() => {
  table.__ls_redraw_pending = false;
  table.view.change.emit();
});
"""


def redraw_on_change(table: Any) -> Any:
    """Attach the redraw workaround to ``table`` (a Bokeh ``DataTable``); returns it."""
    cb = CustomJS(args={"table": table}, code=REDRAW_JS)
    source = table.source
    source.js_on_change("data", cb)
    source.js_on_change("patching", cb)
    source.js_on_change("streaming", cb)
    return table
