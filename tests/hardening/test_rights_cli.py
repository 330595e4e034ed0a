"""`livestream token`, `livestream topics ls|rm` and the rights options of `livestream serve`,
run as real subprocesses against real servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pandas as pd
import pytest
from testutil import poll, stop_process

from livestream.server.auth import mint_token

CMD = [sys.executable, "-m", "livestream.cli"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("LIVESTREAM_")}
ENV.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1"})
SECRET = b"c" * 48


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV, stdin=subprocess.DEVNULL)


def one_line_error(res: subprocess.CompletedProcess, code: int) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    return lines[0]


def http(method: str, url: str, token: str | None = None, body: bytes | None = None
         ) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "jwt.secret"
    path.write_bytes(SECRET)
    return str(path)


def test_token_mints_a_signed_token_with_the_issue_s_flags(secret_file):
    res = run_cli("token", "--secret-file", secret_file, "--sub", "prices.*", "--pub", "orders",
                  "--ttl", "1h", "--subject", "alice")
    assert res.returncode == 0, res.stderr
    tok = res.stdout.strip()
    assert "\n" not in tok
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"])
    assert claims["livestream"] == {"sub": ["prices.*"], "pub": ["orders"]}
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 3600
    res = run_cli("token", "--secret-file", secret_file, "--admin", "scratch.*", "--ttl", "10m",
                  "--nbf", "5m", "--aud", "desk")
    claims = jwt.decode(res.stdout.strip(), SECRET, algorithms=["HS256"], audience="desk",
                        options={"verify_nbf": False})
    assert claims["nbf"] - claims["iat"] == 300 and claims["exp"] - claims["nbf"] == 600


@pytest.mark.parametrize("args, hint", [
    (["--sub", "a"], "--secret-file or --private-key-file"),
    (["--secret-file", "{secret}"], "at least one of sub, pub, admin"),
    (["--secret-file", "{secret}", "--sub", "bad topic"], "invalid pattern"),
    (["--secret-file", "{secret}", "--sub", "a", "--ttl", "soon"], "duration"),
    (["--secret-file", "{secret}", "--sub", "a", "--alg", "RS256"], "HS256"),
    (["--secret-file", "{short}", "--sub", "a"], "at least 32"),
])
def test_token_refuses_bad_arguments_in_one_line(secret_file, tmp_path, args, hint):
    short = tmp_path / "short"
    short.write_text("short")
    res = run_cli("token", *[a.format(secret=secret_file, short=short) for a in args])
    assert hint in one_line_error(res, 2)


def test_serve_with_signed_tokens_topics_ls_and_rm(secret_file, tmp_path):
    proc = subprocess.Popen(
        [*CMD, "serve", "--port", "0", "--duration", "300", "--jwt-secret-file", secret_file,
         "--admin-token", "root-secret", "--max-topics", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=ENV)
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:
            m = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", line)
            if m:
                port = int(m.group(1))
                break
        assert port, proc.stderr.read() if proc.stderr else ""
        url = f"http://127.0.0.1:{port}"
        poll(lambda: http("GET", url + "/health")[0] == 200, 30, "the server",
             ignore=(OSError,))
        data = tmp_path / "orders.csv"
        pd.DataFrame({"id": [1, 2], "qty": [5, 7]}).to_csv(data, index=False)
        feed = mint_token(SECRET, pub=["orders", "fills"])
        # without a token: refused; with a signed token naming the topic: created
        res = run_cli("publish", str(data), "--topic", "orders", "--url", url)
        assert "unauthorized" in one_line_error(res, 1)
        res = run_cli("publish", str(data), "--topic", "orders", "--url", url, "--token", feed)
        assert res.returncode == 0, res.stderr
        res = run_cli("publish", str(data), "--topic", "fills", "--url", url, "--token", feed)
        assert res.returncode == 0, res.stderr
        # --max-topics 2
        res = run_cli("publish", str(data), "--topic", "orders2", "--url", url, "--token",
                      "root-secret")
        assert "too_many_topics" in one_line_error(res, 1)
        viewer = mint_token(SECRET, sub=["orders"])
        res = run_cli("topics", "ls", "--url", url, "--token", viewer, "--json")
        assert res.returncode == 0, res.stderr
        assert [t["name"] for t in json.loads(res.stdout)] == ["orders"]
        res = run_cli("topics", "ls", "--url", url, "--token", "root-secret")
        assert res.returncode == 0 and "orders" in res.stdout and "fills" in res.stdout
        # rm needs the admin right
        res = run_cli("topics", "rm", "orders", "--url", url, "--token", feed)
        assert "unauthorized" in one_line_error(res, 1)
        res = run_cli("topics", "rm", "orders", "fills", "--url", url, "--token",
                      mint_token(SECRET, admin=["orders", "fills"]))
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines() == ["deleted 'orders'", "deleted 'fills'"]
        assert http("GET", url + "/topics", "root-secret") == (200, {"topics": []})
        res = run_cli("topics", "rm", "orders", "--url", url, "--token", "root-secret")
        assert "unknown_topic" in one_line_error(res, 1)
    finally:
        stop_process(proc)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def test_topics_rm_works_against_a_default_local_server(make_server):
    srv = make_server()
    srv.publish("scratch", pd.DataFrame({"x": [1]}))
    srv.publish("keep", pd.DataFrame({"x": [1]}))
    res = run_cli("topics", "rm", "scratch", "--url", srv.url)  # the ws:// URL works too
    assert res.returncode == 0, res.stderr
    assert [t["name"] for t in srv.topics()] == ["keep"]
    res = run_cli("topics", "ls", "--url", srv.http_url)
    assert res.returncode == 0 and "keep" in res.stdout and "scratch" not in res.stdout
