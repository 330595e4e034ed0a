"""The subscriber process of the catch-up benchmark (``python -m benchmarks._catchup_sub``).

One real livestream client (``livestream.connect`` → ``subscribe``, Arrow frames) on this
process's loop. JSON-line commands on stdin, JSON-line events on stdout:

``{"cmd": "open", "url": U, "topic": T}``
    connect and subscribe; answer ``{"ev": "ready"}`` once the snapshot is in;
``{"cmd": "pause", "seconds": S, "rows": R}``
    answer ``{"ev": "paused"}``, then block the loop for ``S`` seconds (the socket is not
    read: the server's queue for this client fills), then wait until ``R`` more rows than
    before the pause are in, and answer ``{"ev": "caught_up", ...}`` with the wall time and
    this process's CPU time from the end of the pause, and the messages received;
``{"cmd": "close"}``
    close the connection, answer ``{"ev": "closed"}``; end of input exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


def emit(ev: dict) -> None:
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


async def main() -> None:
    import livestream as ls

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    conn: Any = None
    sub: Any = None
    emit({"ev": "hello"})
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "open":
            conn = ls.connect(cmd["url"], encoding="arrow", reconnect=False, ping_interval=None)
            sub = conn.subscribe(cmd["topic"], window=10_000_000)
            while sub.offset is None:
                await asyncio.sleep(0.001)
            emit({"ev": "ready"})
        elif cmd["cmd"] == "pause":
            st = sub.stats_data
            rows0, msgs0 = st.rows, st.messages
            emit({"ev": "paused"})
            time.sleep(cmd["seconds"])  # blocks the loop: nothing is read meanwhile
            t0, c0 = time.monotonic(), time.process_time()
            deadline = t0 + 60.0
            while st.rows - rows0 < cmd["rows"] and time.monotonic() < deadline:
                await asyncio.sleep(0.0005)
            emit({"ev": "caught_up", "wall_s": time.monotonic() - t0,
                  "cpu_s": time.process_time() - c0, "rows": st.rows - rows0,
                  "messages": st.messages - msgs0})
        elif cmd["cmd"] == "close":
            conn.close()
            conn = sub = None
            emit({"ev": "closed"})


if __name__ == "__main__":
    asyncio.run(main())
