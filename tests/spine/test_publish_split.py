"""A DataFrame above the server's limits is published in several messages with one result
(issue 11): against a real server with small limits, over JSON and Arrow."""

from __future__ import annotations

import pandas as pd
import pytest
from spine_util import async_test, trades

import livestream as ls


@pytest.mark.parametrize("encoding", ["json", "arrow"])
@async_test()
async def test_a_frame_above_max_message_size_is_split_with_one_ack(encoding):
    srv = ls.serve(port=0, max_message_size=64 * 1024)
    conn = ls.connect(srv.url, encoding=encoding)
    await conn.wait_live()
    df = trades(20_000)
    ack = await conn.publish("trades", df)
    assert ack["offset"] == 0 and ack["next"] == 20_000 and ack["rows"] == 20_000
    assert ack["parts"] > 1
    got = srv.snapshot("trades")
    assert got["seq"].tolist() == list(range(20_000))  # every row, once, in order
    assert conn.state == "live" and conn.stats.reconnects == 0
    # the next publish continues from there, in one message
    ack = await conn.publish("trades", trades(3, 20_000))
    assert (ack["offset"], ack["next"]) == (20_000, 20_003) and "parts" not in ack
    conn.close()
    await srv.aclose()


@async_test()
async def test_a_frame_above_max_rows_per_publish_is_split():
    srv = ls.serve(port=0, max_rows_per_publish=1000)
    conn = ls.connect(srv.url)
    await conn.wait_live()
    ack = await conn.publish("trades", trades(2500))
    assert (ack["offset"], ack["next"], ack["parts"]) == (0, 2500, 3)
    assert srv.snapshot("trades")["seq"].tolist() == list(range(2500))
    conn.close()
    await srv.aclose()


@async_test()
async def test_one_row_above_max_message_size_is_refused_before_sending():
    srv = ls.serve(port=0, max_message_size=4 * 1024)
    conn = ls.connect(srv.url, encoding="json")
    await conn.wait_live()
    big = pd.DataFrame({"text": ["x" * 10_000]})
    with pytest.raises(ls.LimitError, match=r"one row encodes to .* above the server's "
                                            r"max_message_size of 4096 bytes; nothing was sent"):
        await conn.publish("notes", big)
    assert conn.state == "live" and conn.stats.reconnects == 0
    ack = await conn.publish("notes", pd.DataFrame({"text": ["short"]}))
    assert (ack["offset"], ack["next"]) == (0, 1)
    conn.close()
    await srv.aclose()


@async_test()
async def test_a_failed_part_stops_the_rest_and_says_what_was_published():
    srv = ls.serve(port=0, max_message_size=64 * 1024)
    conn = ls.connect(srv.url, encoding="json")
    await conn.wait_live()
    # the client is told bigger limits than the server enforces, so the second part is
    # too big for the server: it closes the connection (1009) at that part
    conn.protocol.welcome["limits"].update(max_message_size=1024 * 1024, max_rows_per_publish=10)
    df = pd.DataFrame({"n": range(30), "text": ["x"] * 10 + ["y" * 10_000] * 20})
    with pytest.raises(ls.ConnectionClosed) as e:
        await conn.publish("notes", df)
    assert e.value.published_rows == 10
    assert "split in 3 parts; 1 (10 rows) were published" in "".join(e.value.__notes__)
    await conn.wait_live()  # reconnected
    assert srv.snapshot("notes")["n"].tolist() == list(range(10))  # the third was not sent
    conn.close()
    await srv.aclose()
