"""notebooks/outside_feed.ipynb runs top to bottom in a real kernel (nbclient).

The notebook starts a simulated exchange on loopback and asserts on what it
receives (typed columns, dead letters, a reconnect, a relay); any failing
assertion fails this test. Its outputs must hold no error and no stderr, and the
stream's chart must really be a widget.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "outside_feed.ipynb"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def test_outside_feed_notebook_runs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outs if o.output_type == "error"]
    assert not errors, errors
    stderr = [o.text for o in outs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, stderr
    widgets = [o for o in outs if WIDGET_MIME in o.get("data", {})]
    assert len(widgets) >= 3  # the chart, the table, the subscriptions widget
    texts = " ".join(o.get("data", {}).get("text/plain", "") for o in outs)
    assert "bad_value" in texts  # the dead letters cell shows its reasons
