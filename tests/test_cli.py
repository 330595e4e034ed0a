"""The ``livestream`` command, run as real subprocesses, and the demo simulators it uses.

Servers listen on loopback only; every subprocess has a timeout and is killed in
teardown; waits poll with a deadline.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
import trustme
from testutil import poll as shared_poll

import livestream as ls
from livestream import cli as cli_mod
from livestream.demo import DEMO_TOPICS, ChatSim, GameSim, TradesSim, ohlc_bars

CMD = [sys.executable, "-m", "livestream.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1",
       "LIVESTREAM_DEBUG": ""}
for _var in ("LIVESTREAM_TOKEN", "LIVESTREAM_PUBLISH_TOKEN", "LIVESTREAM_SUBSCRIBE_TOKEN",
             "LIVESTREAM_URL"):
    ENV.pop(_var, None)
WS_URL = re.compile(r"ws://127\.0\.0\.1:(\d+)/ws")


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``livestream ARGS`` to completion (bounded by ``timeout``)."""
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV, stdin=subprocess.DEVNULL)


class Proc:
    """A long-running ``livestream`` subprocess whose stdout lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([*CMD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, text=True, env=ENV)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """The first stdout line matching ``pattern``, waiting up to ``timeout`` seconds."""
        for line in self.lines:
            m = pattern.search(line)
            if m:
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern.pattern!r} in {self.lines}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                err = self.p.stderr.read() if self.p.stderr else ""
                raise AssertionError(f"process ended (rc={self.p.wait()}) before "
                                     f"{pattern.pattern!r}; stdout={self.lines} stderr={err}")
            self.lines.append(line)
            m = pattern.search(line)
            if m:
                return m

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for exit; returns (code, all stdout, stderr)."""
        rc = self.p.wait(timeout)
        self._t.join(timeout)
        while True:
            try:
                line = self._q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        err = self.p.stderr.read() if self.p.stderr else ""
        return rc, "".join(self.lines), err

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(30)
        for f in (self.p.stdout, self.p.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Subprocesses started by a test; killed afterwards whatever happened."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def start(procs: list[Proc], *args: str) -> Proc:
    p = Proc(*args)
    procs.append(p)
    return p


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def poll(pred, timeout: float = 30.0, what: str = "condition"):
    return shared_poll(pred, timeout, what, ignore=(OSError,))


def assert_one_line_error(res: subprocess.CompletedProcess | tuple, code: int | None = None) -> str:
    rc, out, err = (res.returncode, res.stdout, res.stderr) if isinstance(
        res, subprocess.CompletedProcess) else res
    assert rc != 0, (out, err)
    if code is not None:
        assert rc == code, (rc, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), err
    return lines[0]


def csv_snapshot(http_url: str, topic: str) -> pd.DataFrame:
    status, body = http_get(f"{http_url}/topics/{topic}?format=csv")
    assert status == 200, body
    return pd.read_csv(io.BytesIO(body))


# -- help and argument errors ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["", "serve", "demo", "publish", "replay", "record"])
def test_help(command: str) -> None:
    res = run_cli(*([command] if command else []), "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Usage: livestream"), res.stdout
    assert "Traceback" not in res.stderr


def test_help_of_plugin_commands() -> None:
    names = cli_mod.cli.list_commands(click.Context(cli_mod.cli))
    assert {"bridge", "dashboard"} <= set(names), names
    for name in names:
        res = run_cli(name, "--help")
        assert res.returncode == 0, (name, res.stderr)
        assert "Usage:" in res.stdout


def test_console_script_is_installed() -> None:
    exe = shutil.which("livestream") or str(Path(sys.executable).with_name("livestream"))
    assert os.access(exe, os.X_OK), "the livestream console script is not installed"
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0 and ls.__version__ in res.stdout, res


@pytest.fixture
def table_files(tmp_path: Path) -> dict[str, Path]:
    n = 300
    df = pd.DataFrame({
        "ts": pd.Timestamp("2024-03-01 09:30") + pd.to_timedelta(np.arange(n) * 100, "ms"),
        "symbol": np.array(["AAA", "BBB", "CCC"])[np.arange(n) % 3],
        "price": np.round(100 + np.cumsum(np.ones(n) * 0.25), 2),
        "size": np.arange(n, dtype=np.int64) + 1,
    })
    paths = {"csv": tmp_path / "trades.csv", "parquet": tmp_path / "trades.parquet"}
    df.to_csv(paths["csv"], index=False)
    df.to_parquet(paths["parquet"], index=False)
    (tmp_path / "notes.txt.bin").write_text("x")
    paths["unknown"] = tmp_path / "notes.txt.bin"
    return paths


@pytest.mark.parametrize("args", [
    ["nosuchcommand"],
    ["serve", "--port", "99999"],
    ["serve", "--bogus-option"],
    ["serve", "--slow-consumer", "sometimes"],
    ["serve", "--retention-rows", "0"],
    ["serve", "--cert", "{csv}"],
    ["serve", "--backplane", "nonsense"],
    ["serve", "--allow-host", "http://desk.example"],
    ["serve", "--trusted-proxy", "proxy.example"],
    ["demo", "--rate", "0"],
    ["demo", "--duration", "-1"],
    ["publish", "{missing}", "--topic", "t"],
    ["publish", "{csv}"],
    ["publish", "{csv}", "--topic", "bad topic!"],
    ["publish", "{unknown}", "--topic", "t"],
    ["publish", "{csv}", "--topic", "t", "--url", "ftp://127.0.0.1:1"],
    ["publish", "{csv}", "--topic", "t", "--parse-dates", "nope"],
    ["replay", "{csv}", "--topic", "t"],
    ["replay", "{csv}", "--topic", "t", "--time-column", "nope"],
    ["replay", "{csv}", "--topic", "t", "--time-column", "symbol"],
    ["replay", "{csv}", "--topic", "t", "--time-column", "ts", "--speed", "0"],
])
def test_bad_arguments_give_one_line_usage_error(args: list[str], table_files, tmp_path) -> None:
    subst = {"csv": str(table_files["csv"]), "unknown": str(table_files["unknown"]),
             "missing": str(tmp_path / "missing.csv")}
    res = run_cli(*[a.format(**subst) for a in args])
    assert_one_line_error(res, code=2)


def test_unreachable_server_is_a_one_line_runtime_error(table_files) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run_cli("publish", str(table_files["csv"]), "--topic", "t",
                  "--url", f"http://127.0.0.1:{port}")
    line = assert_one_line_error(res, code=1)
    assert "cannot reach" in line


def test_serve_on_a_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        res = run_cli("serve", "--port", str(s.getsockname()[1]), "--duration", "30")
    line = assert_one_line_error(res, code=1)
    assert "cannot listen" in line


def test_bad_tls_files_are_a_one_line_error(table_files) -> None:
    res = run_cli("serve", "--port", "0", "--cert", str(table_files["csv"]),
                  "--key", str(table_files["csv"]), "--duration", "30")
    assert_one_line_error(res, code=1)


# -- serve ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_sigterm_as_soon_as_the_url_is_printed_stops_cleanly(procs, command) -> None:
    # SIGTERM can arrive while the command still prints its banner, before it waits:
    # that must be the same clean stop (exit 0, "stopped."), not "Aborted." with 130.
    extra = ["--no-dashboard"] if command == "demo" else []
    for _ in range(5):  # the window is a few lines of printing: try it several times
        p = start(procs, command, "--port", "0", "--duration", "120", *extra)
        p.wait_for(WS_URL)
        p.p.send_signal(signal.SIGTERM)
        rc, out, err = p.finish()
        assert rc == 0, err
        assert "stopped." in out


def test_serve_answers_health_and_stops_on_sigterm(procs) -> None:
    p = start(procs, "serve", "--port", "0", "--duration", "120",
              "--allow-origin", "http://localhost:5006", "--retention-rows", "500")
    port = int(p.wait_for(WS_URL).group(1))
    base = f"http://127.0.0.1:{port}"
    status, body = poll(lambda: http_get(f"{base}/health"), what="GET /health")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    p.p.send_signal(signal.SIGTERM)
    rc, out, err = p.finish()
    assert rc == 0, err
    assert "stopped." in out
    assert "Traceback" not in err


def test_serve_allow_host_trusted_proxy_and_scrubbed_log(procs) -> None:
    p = start(procs, "serve", "--port", "0", "--duration", "120", "--token", "s3cret-tok",
              "--allow-host", "desk.example", "--trusted-proxy", "127.0.0.1",
              "--log-level", "info")
    port = int(p.wait_for(WS_URL).group(1))
    base = f"http://127.0.0.1:{port}"

    def get(path: str, **headers: str) -> int:
        req = urllib.request.Request(base + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    poll(lambda: get("/health") == 200, what="GET /health")
    assert get("/health", Host=f"desk.example:{port}") == 200
    assert get("/health", Host=f"attacker.example:{port}") == 403
    assert get("/topics?token=s3cret-tok", **{"X-Forwarded-For": "203.0.113.9"}) == 200
    p.p.send_signal(signal.SIGTERM)
    rc, out, err = p.finish()
    assert rc == 0, err
    assert "200 GET /topics?token=*** (203.0.113.9)" in err, err
    assert "s3cret-tok" not in err + out
    assert "attacker.example" in err  # the refusal is logged


def test_serve_stops_by_itself_after_duration(procs) -> None:
    p = start(procs, "serve", "--port", "0", "--duration", "0.5")
    rc, out, err = p.finish(timeout=60)
    assert rc == 0, err
    assert WS_URL.search(out) and "stopped." in out


def test_serve_with_token_refuses_publishers_without_it(procs, table_files) -> None:
    p = start(procs, "serve", "--port", "0", "--duration", "120", "--publish-token", "s3cret")
    port = int(p.wait_for(WS_URL).group(1))
    url = f"http://127.0.0.1:{port}"
    poll(lambda: http_get(f"{url}/health")[0] == 200, what="GET /health")
    res = run_cli("publish", str(table_files["csv"]), "--topic", "t", "--url", url)
    line = assert_one_line_error(res, code=1)
    assert "unauthorized" in line
    res = run_cli("publish", str(table_files["csv"]), "--topic", "t", "--url", url,
                  "--token", "s3cret")
    assert res.returncode == 0, res.stderr
    assert len(csv_snapshot(url, "t")) == 300


# -- demo -------------------------------------------------------------------------------------


def test_demo_streams_all_three_use_cases(procs) -> None:
    p = start(procs, "demo", "--port", "0", "--rate", "100", "--duration", "300", "--seed", "7")
    url = p.wait_for(WS_URL).group(0)
    conn = ls.connect(url)
    try:
        subs = {t: conn.subscribe(t) for ts in DEMO_TOPICS.values() for t in ts}
        for name, sub in subs.items():
            sub.wait(rows=2 if name not in ("bars_1s",) else 1, timeout=60)
        cols = {name: set(sub.df.columns) for name, sub in subs.items()}
        assert {"ts", "symbol", "price", "size", "side"} <= cols["trades"]
        assert {"symbol", "bid", "ask", "last"} <= cols["quotes"]
        assert {"ts", "symbol", "open", "high", "low", "close", "volume"} <= cols["bars_1s"]
        assert {"ts", "room", "user", "text"} <= cols["chat"]
        assert {"ts", "player", "x", "y", "hp"} <= cols["telemetry"]
        assert {"player", "score", "kills"} <= cols["scores"]
        # keyed topics hold one row per key, however many updates arrived
        poll(lambda: subs["quotes"].df["symbol"].is_unique and len(subs["quotes"].df) > 1,
             what="one quote per symbol")
        assert subs["scores"].df["player"].is_unique
        bars = subs["bars_1s"].df
        assert (bars["low"] <= bars["open"]).all() and (bars["open"] <= bars["high"]).all()
        # the feed keeps going: more trades arrive after the first ones
        first = len(subs["trades"].df)
        poll(lambda: len(subs["trades"].df) > first, what="more trades")
        # the server reports our subscriptions
        status, body = http_get(url.replace("ws://", "http://").replace("/ws", "/health"))
        assert status == 200 and json.loads(body)["connections"] >= 1
        # opening the dashboard builds its document (and Bokeh validates it)
        dash = p.wait_for(re.compile(r"Dashboard\s+(http://\S+)")).group(1)
        assert http_get(dash)[0] == 200
    finally:
        conn.close()
    p.p.send_signal(signal.SIGTERM)
    rc, out, err = p.finish()
    assert rc == 0, err
    assert "stopped." in out
    assert "W-1000" not in err + out  # live charts start without renderers, by design


def test_demo_duration_stops_and_prints_stats(procs) -> None:
    p = start(procs, "demo", "--port", "0", "--rate", "50", "--duration", "1",
              "--feed", "chat")
    rc, out, err = p.finish(timeout=90)
    assert rc == 0, err
    assert WS_URL.search(out)
    assert "chat" in out and "rows/s" in out  # the stats table, printed once when piped
    assert "trades" not in out.split("rows/s", 1)[1]  # only the chosen feed ran
    assert "Traceback" not in err


# -- publish ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_publish_file_then_get_topic(kind: str, table_files, make_server) -> None:
    srv = make_server()
    src = table_files[kind]
    args = ["publish", str(src), "--topic", f"desk.{kind}", "--url", srv.http_url,
            "--batch-rows", "128"]
    if kind == "csv":
        args += ["--parse-dates", "ts"]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert "published 300 rows" in res.stdout
    got = csv_snapshot(srv.http_url, f"desk.{kind}")
    want = pd.read_parquet(table_files["parquet"])
    assert list(got.columns) == list(want.columns)
    assert got["price"].tolist() == want["price"].tolist()
    assert got["size"].tolist() == want["size"].tolist()
    assert pd.to_datetime(got["ts"]).tolist() == want["ts"].tolist()
    info = {t["name"]: t for t in srv.topics()}[f"desk.{kind}"]
    types_ = {f["name"]: f["type"] for f in info["schema"]}
    assert types_["ts"].startswith("datetime64") and types_["size"] == "int64"


def test_publish_accepts_the_websocket_url_and_appends(table_files, make_server) -> None:
    srv = make_server()
    for _ in range(2):
        res = run_cli("publish", str(table_files["parquet"]), "--topic", "twice",
                      "--url", srv.url)
        assert res.returncode == 0, res.stderr
    assert len(csv_snapshot(srv.http_url, "twice")) == 600


def test_publish_schema_mismatch_is_a_one_line_error(table_files, make_server) -> None:
    srv = make_server()
    assert run_cli("publish", str(table_files["parquet"]), "--topic", "x",
                   "--url", srv.http_url).returncode == 0
    # the CSV's ts column is text unless parsed: the topic expects datetimes
    res = run_cli("publish", str(table_files["csv"]), "--topic", "x", "--url", srv.http_url)
    line = assert_one_line_error(res, code=1)
    assert "schema_mismatch" in line and "'ts'" in line


# -- replay -----------------------------------------------------------------------------------


def test_replay_at_high_speed_streams_rows_in_time_order(tmp_path, make_server) -> None:
    srv = make_server()
    n = 400
    rng = np.random.default_rng(3)
    order = rng.permutation(n)  # a recording not sorted by time
    rec = pd.DataFrame({
        "t": pd.Timestamp("2024-05-01", tz="UTC") + pd.to_timedelta(order * 250, "ms"),
        "seq": order.astype(np.int64),
        "value": order * 0.5,
    })
    path = tmp_path / "rec.parquet"
    rec.to_parquet(path, index=False)
    conn = ls.connect(srv.url)
    try:
        sub = conn.subscribe("replayed")
        res = run_cli("replay", str(path), "--topic", "replayed", "--url", srv.http_url,
                      "--time-column", "t", "--speed", "200")  # 100 s recording → 0.5 s
        assert res.returncode == 0, res.stderr
        assert f"replayed {n:,} rows" in res.stdout
        sub.wait(rows=n, timeout=60)
        df = sub.df
        assert df["seq"].tolist() == list(range(n))  # every row once, in time order
        assert df["t"].is_monotonic_increasing
        # rows were paced in several publishes, not dumped at once
        assert srv.metrics.publishes >= 2
    finally:
        conn.close()


def test_replay_retime_and_numeric_times(tmp_path, make_server) -> None:
    srv = make_server()
    n = 50
    rec = pd.DataFrame({"epoch": 1_700_000_000 + np.arange(n, dtype=np.int64),
                        "v": np.arange(n, dtype=np.int64)})
    path = tmp_path / "rec.csv"
    rec.to_csv(path, index=False)
    before = time.time()
    res = run_cli("replay", str(path), "--topic", "numeric", "--url", srv.http_url,
                  "--time-column", "epoch", "--speed", "1000", "--retime")
    assert res.returncode == 0, res.stderr
    got = csv_snapshot(srv.http_url, "numeric")
    assert got["v"].tolist() == list(range(n))
    # retimed: the first row is "now", spacing kept (1 s apart), still integers
    assert got["epoch"].iloc[0] >= int(before) - 1
    assert got["epoch"].diff().iloc[1:].tolist() == [1] * (n - 1)


# -- plug-in commands ---------------------------------------------------------------------------


def test_plugin_commands_are_registered_when_their_module_exists(monkeypatch) -> None:
    @click.command("fakecmd")
    def fakecmd() -> None:
        """A stand-in plug-in."""

    mod = types.ModuleType("livestream._fake_cli_plugin")
    mod.fakecmd = fakecmd  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "livestream._fake_cli_plugin", mod)
    monkeypatch.setattr(cli_mod, "PLUGIN_COMMANDS", (
        ("livestream._fake_cli_plugin", "fakecmd"),
        ("livestream._no_such_cli_plugin", "nothing"),
    ))
    group = click.Group("test")
    assert cli_mod.register_plugins(group) == ["fakecmd"]
    assert "fakecmd" in group.commands


# -- the simulators -----------------------------------------------------------------------------


def test_simulators_are_seeded_and_typed() -> None:
    now = pd.Timestamp("2024-01-01 12:00", tz="UTC")
    a = TradesSim(seed=5).batch(200, now=now)
    b = TradesSim(seed=5).batch(200, now=now)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["ts", "symbol", "price", "size", "side"]
    assert a["ts"].is_monotonic_increasing and (a["price"] > 0).all() and (a["size"] > 0).all()
    chat = ChatSim(seed=1).batch(50, now=now)
    assert list(chat.columns) == ["ts", "room", "user", "text"] and chat["text"].str.len().min() > 0
    game = GameSim(seed=1)
    tel = game.batch(500, now=now)
    assert list(tel.columns) == ["ts", "player", "x", "y", "hp"]
    assert tel["x"].between(0, 100).all() and tel["hp"].between(1, 100).all()
    scores = game.scores()
    assert scores["player"].is_unique and scores["score"].sum() > 0


def test_ohlc_bars_match_a_direct_computation() -> None:
    sim = TradesSim(seed=2, symbols=("A", "B"))
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    w = pd.concat([sim.batch(100, now=t0 + pd.Timedelta(seconds=s)) for s in range(1, 4)],
                  ignore_index=True)
    bars = ohlc_bars(w, last_bars=10)
    for (ts, sym), g in w.groupby([w.ts.dt.floor("1s"), "symbol"]):
        row = bars[(bars.ts == ts) & (bars.symbol == sym)].iloc[0]
        assert (row.open, row.high, row.low, row.close) == (
            g.price.iloc[0], g.price.max(), g.price.min(), g.price.iloc[-1])
        assert row.volume == g["size"].sum()
    assert ohlc_bars(w.iloc[:0]).empty


def test_serve_with_tls_and_publish_over_https(procs, table_files, tmp_path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = (tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    p = start(procs, "serve", "--port", "0", "--duration", "120",
              "--cert", str(cert_pem), "--key", str(key_pem))
    port = int(p.wait_for(re.compile(r"wss://127\.0\.0\.1:(\d+)/ws")).group(1))
    url = f"https://127.0.0.1:{port}"
    res = run_cli("publish", str(table_files["parquet"]), "--topic", "secure", "--url", url,
                  "--ca", str(ca_pem))
    assert res.returncode == 0, res.stderr
    assert "published 300 rows" in res.stdout
    # without the CA the certificate is not trusted: a one-line error, not a traceback
    res = run_cli("publish", str(table_files["parquet"]), "--topic", "secure", "--url", url)
    assert_one_line_error(res, code=1)
