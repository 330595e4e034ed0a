"""Inside a real Jupyter kernel: serve, connect and subscribe without blocking the kernel."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

CELLS = [
    "import livestream as ls, pandas as pd, numpy as np, asyncio",
    "srv = ls.serve(port=0)\n"
    "srv.publish('ticks', pd.DataFrame({'i': np.arange(100), 'px': np.arange(100) * 0.5}))",
    # the cell returns at once: the connection runs on the kernel's own loop
    "conn = ls.connect(srv.url)\nsub = conn.subscribe('ticks', window=1000)\nconn.state",
    "await sub.wait_async(rows=100)\nassert sub.df['i'].tolist() == list(range(100))",
    # publishing from a later cell streams into the same live DataFrame
    "async def feed():\n"
    "    for k in range(10):\n"
    "        srv.publish('ticks', pd.DataFrame({'i': np.arange(100 + 10*k, 110 + 10*k),"
    " 'px': 1.0}))\n"
    "        await asyncio.sleep(0.01)\n"
    "task = asyncio.ensure_future(feed())",
    "await task\nawait sub.wait_async(rows=200)\n"
    "assert sub.df['i'].tolist() == list(range(200))\n"
    "assert sub.stats.rows == 200 and sub.stats.state == 'live'\n"
    "print('rows', len(sub.df))",
    "try:\n    sub.wait(rows=1)\nexcept ls.LivestreamError as e:\n    print('refused:', e)",
    "conn.close(); srv.close()",
]


def test_notebook_serves_connects_and_subscribes_in_a_real_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
                   ).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "rows 200" in text
    assert "refused: Subscription.wait() would block" in text
