"""In a real Jupyter kernel: re-running a cell replaces its feed connection; shutting the
kernel down closes every feed with "going away". The fake feed runs in this process."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from conftest import wait_for
from fakefeed import FakeExchange

ROOT = Path(__file__).resolve().parents[2]

CELL = """
from livestream.client.feed import open_feed
from livestream.client.registry import claim
feed = claim(URL, None, lambda: open_feed(URL, on_open=[{"op": "subscribe", "channel": "trades"}],
                                          ack={"event": "subscribed"}))
await feed.opened(timeout=30)
print("live", feed.state)
"""


def execute(kc, code: str, cell_id: str | None = None, timeout: float = 60.0) -> str:
    """Run a cell as a frontend would (JupyterLab sends its cell id); return its stdout."""
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    msg = kc.session.msg("execute_request", content)
    if cell_id is not None:
        msg["metadata"]["cellId"] = cell_id
    kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    out, error = [], None
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        t = m["msg_type"]
        if t == "stream":
            out.append(m["content"]["text"])
        elif t == "error":
            error = "\n".join(m["content"]["traceback"])
        elif t == "status" and m["content"]["execution_state"] == "idle":
            break
    if error:
        raise AssertionError(f"cell failed:\n{error}")
    return "".join(out)


@pytest.fixture
def feed_server():
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    f = asyncio.run_coroutine_threadsafe(FakeExchange().start(), loop).result(10)
    yield f
    asyncio.run_coroutine_threadsafe(f.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)
    loop.close()


def test_rerun_replaces_and_kernel_shutdown_closes_everything(feed_server):
    from jupyter_client.manager import KernelManager

    f = feed_server
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT), env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        execute(kc, f"URL = {f.url!r}")
        assert "live" in execute(kc, CELL, cell_id="cell-a")
        assert f.subscribes == 1 and not f.closes
        # JupyterLab re-runs cell-a: the old connection is closed, a new one opened
        assert "live" in execute(kc, CELL, cell_id="cell-a")
        wait_for(lambda: f.closes == [(1000, "client closed")], "the replaced feed closed")
        assert f.subscribes == 2 and len(f.clients) == 1
        # another cell connecting to the same URL keeps its own connection
        assert "live" in execute(kc, CELL, cell_id="cell-b")
        assert len(f.clients) == 2 and len(f.closes) == 1
        # a frontend without cell ids (nbclient, classic): the cell's text identifies it
        execute(kc, CELL)
        execute(kc, CELL)
        wait_for(lambda: len(f.closes) == 2, "the re-run feed closed")
        assert len(f.clients) == 3
        listing = execute(kc, "from livestream.client.registry import subscriptions\n"
                              "print(sum(r['kind'] == 'feed' for r in subscriptions()))")
        assert listing.strip() == "3"
        # shutdown: every feed is closed with 1001 going away before the kernel exits
        km.shutdown_kernel(now=False)
        wait_for(lambda: len(f.closes) == 5, "all feeds closed at kernel shutdown")
        assert f.closes[2:] == [(1001, "shutdown")] * 3
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)


