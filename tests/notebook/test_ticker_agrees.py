"""A ticker card's arrow and its change agree (it showed "AMZN ▲ −0.5445 (−0.39%)": an arrow
for the last tick beside the change since first seen). Real kernel, as a notebook runs it."""

from __future__ import annotations


def test_ticker_arrow_agrees_with_its_change(kernel) -> None:
    kernel.run(
        "import pandas as pd\n"
        "from livestream.client.subscription import Subscription\n"
        "sub = Subscription('q')\n"
        "def put(p, n):\n"
        "    sub.apply('append', pd.DataFrame({'symbol': ['AMZN'], 'price': [p]}),\n"
        "              offset=n, next_offset=n + 1)\n"
        "put(100.0, 0)\n"
        "t = sub.ticker(value='price', by='symbol', start=False)\n"
        "put(90.0, 1); t.refresh(); put(95.0, 2); t.refresh()\n"
    )
    html = kernel.value("t.value")
    assert "95.00" in html and "-5.00" in html  # down 5 since first seen, up on the last tick
    assert "▲" not in html, html
    assert "▼" in html and "since first" in html, html
