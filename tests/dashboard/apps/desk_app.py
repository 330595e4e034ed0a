"""A dashboard app for `livestream dashboard` / `bokeh serve` tests.

Runs once per browser session: connects to the livestream server named by
``LIVESTREAM_URL``, subscribes, and marks its dashboard servable.
"""

import os

import livestream as ls

conn = ls.connect(os.environ["LIVESTREAM_URL"])
trades = conn.subscribe("trades", window=5_000)
quotes = conn.subscribe("quotes")

dash = ls.Dashboard(
    [
        "# Desk",
        [trades.chart(x="ts", y="price", by="symbol"), quotes.ticker("last", by="symbol")],
        [trades.table(rows=10), trades.controls()],
    ],
    title="Desk app",
)
dash.servable()
