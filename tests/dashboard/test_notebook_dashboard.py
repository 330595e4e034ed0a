"""A dashboard in a real kernel (nbclient): it renders as a live ipywidgets layout, its
charts grow, and ``dash.serve()`` runs a Bokeh server on the kernel's own loop."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]

CELLS = [
    """
import asyncio, json
import livestream as ls
from livestream.demo import run_demo_feeds
srv = ls.serve(port=0)
feeds = run_demo_feeds(srv, 500, seed=3)
conn = ls.connect(srv.url)
trades = conn.subscribe("trades", window=5_000)
quotes = conn.subscribe("quotes")
""",
    """
chart = trades.chart(x="ts", y="price", by="symbol")
dash = ls.Dashboard([
    "# Desk",
    [chart, quotes.ticker("last", by="symbol")],
    ls.Tabs({"Trades": trades.table(rows=5), "Controls": trades.controls()}),
], title="Desk")
dash
""",
    """
async def grows(view, timeout=30):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while view.points() == 0:
        assert loop.time() < end, "no points"
        await asyncio.sleep(0.05)
    first = view.points()
    while view.points() <= first:
        assert loop.time() < end, "no growth"
        await asyncio.sleep(0.05)
    return first, view.points()

first, later = await grows(chart)
print(json.dumps({"first": first, "later": later,
                  "same_chart": dash.specs[0].live is chart}))
""",
    """
from tornado.httpclient import AsyncHTTPClient
from livestream.dashboard.server import live_stats
ds = dash.serve(port=0)
resp = await AsyncHTTPClient().fetch(ds.url)
page = resp.body.decode()
loop = asyncio.get_running_loop()
end = loop.time() + 30
while live_stats()["sessions"] < 1:
    assert loop.time() < end
    await asyncio.sleep(0.05)
stats = live_stats()
print(json.dumps({"status": resp.code, "title": "<title>Desk</title>" in page,
                  "cdn": "cdn.bokeh.org" in page, "sessions": stats["sessions"],
                  "views": stats["views"], "loop": ds.loop is loop}))
ds.stop()
feeds.stop(); conn.close(); srv.close()
""",
]


def test_dashboard_renders_and_serves_in_a_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.strip()) for c in CELLS]
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={"PYTHONPATH": str(ROOT)})
    out_dash = nb.cells[1].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for o in out_dash), out_dash
    grown = json.loads(nb.cells[2].outputs[-1]["text"].strip().splitlines()[-1])
    assert grown["later"] > grown["first"] > 0 and grown["same_chart"]
    served = json.loads(nb.cells[3].outputs[-1]["text"].strip().splitlines()[-1])
    assert served == {"status": 200, "title": True, "cdn": False, "sessions": 1,
                      "views": 4, "loop": True}
