"""``livestream record``: a topic to Parquet, through a server restart, replayed again.

The command runs as a real subprocess against a real ``livestream serve``
subprocess; the no-duplicate rule (:class:`RecordCursor`) and the Parquet parts
(:class:`ParquetRecorder`) are also checked directly.
"""

from __future__ import annotations

import re
import signal

import pandas as pd
import pytest
from test_cli import WS_URL, procs, run_cli, start  # noqa: F401  (procs is a fixture)

import livestream as ls
from livestream.cli.record import ParquetRecorder, RecordCursor, parse_size
from livestream.client.http import HttpPublisher


def batch(start: int, n: int) -> pd.DataFrame:
    seq = range(start, start + n)
    return pd.DataFrame({
        "ts": pd.Timestamp("2024-05-01", tz="UTC") + pd.to_timedelta([s * 100 for s in seq], "ms"),
        "seq": list(seq),
        "price": [100.0 + s % 7 for s in seq],
        "sym": pd.Categorical(["BTC" if s % 2 else "ETH" for s in seq]),
    })


# -- what is written --------------------------------------------------------------------------


def test_cursor_skips_what_a_snapshot_repeats_and_counts_gaps_and_epochs():
    c = RecordCursor()
    assert c.accept("snapshot", "e1", 100, 100) == 0  # rows 0..99
    assert c.accept("append", "e1", 110, 10) == 0  # 100..109
    # a reconnect beyond retention: a snapshot of 50..129, of which 50..109 are written
    assert c.accept("snapshot", "e1", 130, 80) == 60
    assert c.accept("append", "e1", 150, 10) == 0  # 140..149: 130..139 lost
    assert c.lost == 10
    assert c.accept("snapshot", "e2", 5, 5) == 0  # a server restart: a new epoch, all new
    assert c.epochs == 1 and c.skipped == 60
    assert c.rows == 100 + 10 + 20 + 10 + 5


@pytest.mark.parametrize(("text", "n"), [("100MB", 100_000_000), ("512KiB", 524_288),
                                         ("1gb", 1_000_000_000), ("2048", 2048)])
def test_sizes(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "10 parsecs", "0"])
def test_bad_sizes(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_rotated_parts_are_readable_while_the_next_is_written(tmp_path):
    out = tmp_path / "trades.parquet"
    rec = ParquetRecorder(out, rotate_bytes=1)  # every row group closes its part
    rec.write([batch(0, 10)])
    rec.write([batch(10, 300)])
    assert [p.name for p in rec.files] == ["part-00000.parquet", "part-00001.parquet"]
    rec.rotate_bytes = 10**9
    rec.write([batch(310, 5)])  # in the hidden part being written
    assert sorted(p.name for p in out.iterdir()) == [
        ".part-00002.parquet", "part-00000.parquet", "part-00001.parquet"]
    df = pd.read_parquet(out)  # the finished parts, while the third is open
    assert df["seq"].tolist() == list(range(310))
    rec.close()
    df = pd.read_parquet(out)
    assert df["seq"].tolist() == list(range(315))
    assert str(df["sym"].dtype) == "category" and str(df["ts"].dt.tz) == "UTC"


def test_one_file_holds_row_groups_with_different_categories(tmp_path):
    out = tmp_path / "t.parquet"
    rec = ParquetRecorder(out)
    rec.write([pd.DataFrame({"s": pd.Categorical(["a", "b"])})])
    rec.write([pd.DataFrame({"s": pd.Categorical([f"s{i}" for i in range(300)])})])
    assert not out.exists()  # written as a hidden file until the end
    rec.close()
    import pyarrow.parquet as pq

    assert pq.ParquetFile(out).metadata.num_row_groups == 2
    assert pd.read_parquet(out)["s"].tolist() == ["a", "b", *(f"s{i}" for i in range(300))]
    with pytest.raises(Exception, match="exists; pass --overwrite"):
        ParquetRecorder(out)


# -- the command, end to end ---------------------------------------------------------------


def test_record_through_a_server_restart_then_replay_it(tmp_path, procs):  # noqa: F811
    server = start(procs, "serve", "--port", "0", "--duration", "300")
    port = int(server.wait_for(WS_URL).group(1))
    ws, http = f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}"
    pub = HttpPublisher(http, "trades")
    pub.publish(batch(0, 50))  # held by the server before the recording starts
    out = tmp_path / "trades.parquet"
    rec = start(procs, "record", "trades", "--out", str(out), "--url", ws,
                "--flush-every", "0.1", "--progress-every", "0.1", "--duration", "300")
    rec.wait_for(re.compile(r"recording 'trades' from ws://"))
    rec.wait_for(re.compile(r"recorded 50 rows of 'trades'"))
    pub.publish(batch(50, 50))
    rec.wait_for(re.compile(r"recorded 100 rows of 'trades'.*live"))
    pub.close()

    server.p.send_signal(signal.SIGTERM)  # the server goes away and comes back, empty
    assert server.finish()[0] == 0
    rec.wait_for(re.compile(r"recorded 100 rows of 'trades'.*reconnecting"))
    server2 = start(procs, "serve", "--port", str(port), "--duration", "300")
    server2.wait_for(WS_URL)
    pub = HttpPublisher(http, "trades")
    pub.publish(batch(100, 60))
    pub.publish(batch(160, 40))
    rec.wait_for(re.compile(r"recorded 200 rows of 'trades'.*1 server restart"))
    pub.close()
    rec.p.send_signal(signal.SIGTERM)
    rc, text, err = rec.finish()
    assert rc == 0, err
    assert "recorded 200 rows of 'trades' to" in text.splitlines()[-1]
    df = pd.read_parquet(out)
    assert df["seq"].tolist() == list(range(200))  # every row once, in order
    assert df["price"].tolist() == batch(0, 200)["price"].tolist()

    # the loop closes: replay the recording at 100x into another topic
    conn = ls.connect(ws)
    try:
        sub = conn.subscribe("replayed")
        res = run_cli("replay", str(out), "--topic", "replayed", "--url", http,
                      "--time-column", "ts", "--speed", "100")
        assert res.returncode == 0, res.stderr
        assert "replayed 200 rows" in res.stdout
        sub.wait(rows=200, timeout=60)
        assert sub.df["seq"].tolist() == list(range(200))
    finally:
        conn.close()


def test_record_with_rotation_writes_readable_parts(tmp_path, procs):  # noqa: F811
    server = start(procs, "serve", "--port", "0", "--duration", "300")
    port = int(server.wait_for(WS_URL).group(1))
    pub = HttpPublisher(f"http://127.0.0.1:{port}", "ticks")
    out = tmp_path / "ticks"
    rec = start(procs, "record", "ticks", "--out", str(out), "--url",
                f"http://127.0.0.1:{port}", "--rotate", "1B", "--flush-every", "0.1",
                "--progress-every", "0.1", "--new-only")
    pub.publish(batch(0, 30))  # may come as the first snapshot (skipped) or an append
    rec.wait_for(re.compile(r"live"))
    start_seq = 30
    pub.publish(batch(start_seq, 20))
    pub.publish(batch(start_seq + 20, 20))
    rec.wait_for(re.compile(r"recorded \d+ rows.*file"))
    from testutil import poll

    poll(lambda: len(list(out.glob("part-*.parquet"))) >= 1, 30, "a finished part")
    seqs = pd.read_parquet(out)["seq"].tolist()  # readable while recording goes on
    assert seqs == sorted(set(seqs))
    rec.p.send_signal(signal.SIGTERM)
    rc, _, err = rec.finish()
    assert rc == 0, err
    seqs = pd.read_parquet(out)["seq"].tolist()
    assert seqs[-40:] == list(range(start_seq, start_seq + 40)) and len(seqs) == len(set(seqs))
    pub.close()


def test_record_bad_arguments_are_one_line_errors(tmp_path):
    res = run_cli("record", "trades", "--out", str(tmp_path / "x.parquet"), "--rotate", "lots")
    assert res.returncode == 2 and "not a size: 'lots'" in res.stderr
    res = run_cli("record", "trades", "--out", str(tmp_path / "x.parquet"), "--url",
                  "tcp://127.0.0.1:1")
    assert res.returncode == 2 and "ws:// or wss:// URL" in res.stderr
