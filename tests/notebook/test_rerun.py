"""Re-running a notebook leaves exactly what one run leaves: "Run All" twice in one
kernel (cells sent with their ids, as JupyterLab does) ends with as many listening
sockets, TCP connections and live livestream connections as after the first run."""

from __future__ import annotations

import json
from pathlib import Path

from testutil import poll

ROOT = Path(__file__).resolve().parents[2]

#: What the kernel holds open: listening sockets, established TCP connections, and the
#: livestream connections ``ls.subscriptions()`` lists that are not closed.
COUNTS = (
    "(lambda p, ls: (\n"
    "    sum(1 for c in p.net_connections('tcp') if c.status == 'LISTEN'),\n"
    "    sum(1 for c in p.net_connections('tcp') if c.status == 'ESTABLISHED'),\n"
    "    sum(1 for c in ls.client.registry.connections()\n"
    "        if getattr(c, 'state', 'closed') != 'closed'),\n"
    "))(__import__('psutil').Process(), __import__('livestream'))"
)


def _cells(name: str) -> list[tuple[str, str]]:
    nb = json.loads((ROOT / "notebooks" / name).read_text())
    return [(c["id"], "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]


def test_run_all_twice_leaves_what_one_run_leaves(kernel) -> None:
    kernel.run("import os; os.environ['LIVESTREAM_DEMO_RATE'] = '200'")
    cells = _cells("quickstart.ipynb")
    for cid, code in cells:
        kernel.run(code, cell_id=cid)
    def live_once() -> tuple | None:
        v = kernel.value(COUNTS)
        return v if v[2] == 1 else None

    once = poll(live_once, 30, "one live connection after the first run")
    assert once[0] >= 1 and once[1] >= 2, once  # the server listens; client and server ends
    first_url = kernel.value("srv.url")
    for cid, code in cells:
        kernel.run(code, cell_id=cid)
    assert kernel.value("srv.url") != first_url  # a new server (port=0) was started
    poll(lambda: kernel.value(COUNTS) == once, 30,
         f"the second run to leave {once} (listening, established, live connections)")
    # the first run's server and its demo feed stopped; the new ones run
    assert kernel.value("len([s for s in ls.subscriptions() if s.get('state') == 'live'])") >= 1
