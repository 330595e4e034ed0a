"""A livestream server with a paced publisher, for end-to-end benchmark phases.

    python -m benchmarks._e2e_server --rate 100000 --batch 500 --seconds 10

Starts ``livestream.serve(port=0)`` on loopback and prints one JSON line
``{"url": ...}``. Then, for every line ``{"topic": T}`` read on stdin, it
publishes ``--seconds`` of ``--batch``-row batches to ``T`` at ``--rate`` rows/s
(columns ``x``: the row's number in the topic, ``v``: a float) and answers
``{"topic": T, "fed": rows, "start": t0, "end": t1}`` (``time.time()``). End of
input stops it. The publisher runs in this process's main thread; the server
on its own loop (what ``livestream serve`` plus a feed does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd


def batch(start: int, n: int) -> pd.DataFrame:
    x = np.arange(start, start + n, dtype=np.int64)
    return pd.DataFrame({"x": x, "v": np.sin(x / 1000.0)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()

    import livestream as ls

    srv = ls.serve(host="127.0.0.1", port=0)
    print(json.dumps({"url": srv.url}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        topic = json.loads(line)["topic"]
        tick = a.batch / a.rate
        n = k = 0
        t0 = time.monotonic()
        start = time.time()
        while time.monotonic() - t0 < a.seconds:
            srv.publish(topic, batch(n, a.batch))
            n += a.batch
            k += 1
            time.sleep(max(0.0, t0 + k * tick - time.monotonic()))  # the feed's pace
        print(json.dumps({"topic": topic, "fed": n, "start": start, "end": time.time(),
                          "feed_s": time.monotonic() - t0}), flush=True)
    srv.close()


if __name__ == "__main__":
    main()
