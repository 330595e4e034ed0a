"""notebooks/outside_feed.ipynb runs top to bottom in a real kernel (nbclient).

The notebook starts a simulated exchange on loopback and asserts on what it
receives (typed columns, dead letters, a reconnect, a relay); any failing
assertion fails this test. Its outputs must hold no error and no stderr, and the
stream's chart must really be a widget.

After Run All the example is still live (its last cell closes nothing): a cell the
test appends checks that the feed is live, its streams still growing, and
``subscriptions()`` lists it. The feed's status is a live widget, and BTC and ETH
(prices 20x apart) get a chart each, not one shared y-axis.
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
    nb.cells.append(nbformat.v4.new_code_cell(
        "before = ticks.stats.rows\n"
        "for _ in range(600):\n"
        "    if ticks.stats.rows > before + 3:\n"
        "        break\n"
        "    await asyncio.sleep(0.05)\n"
        "assert feed.state == 'live' and not ticks.closed and ticks.stats.rows > before + 3\n"
        "listing = subscriptions().to_frame()\n"
        "assert (listing[listing.kind == 'feed'].state == 'live').all()\n"
        "assert len(listing[listing.kind == 'feed']) == 1\n"
    ))
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
    code = [c for c in nb.cells if c.cell_type == "code"]
    status = next(c for c in code if "feed.status()" in c.source)
    assert any(WIDGET_MIME in o.get("data", {}) for o in status.outputs)  # live, not a repr
    charts = next(c for c in code if ".chart(" in c.source)
    assert sum(WIDGET_MIME in o.get("data", {}) for o in charts.outputs) == 2
    assert "BTC-USD" in charts.source and "ETH-USD" in charts.source
