"""The Python client and expiring tokens: refresh_token(), a token callable, close 4003
without a new token, and subscriptions to a topic that is deleted and re-created."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pandas as pd
import pytest
from spine_util import trades
from testutil import poll

import livestream as ls
from livestream.server.auth import mint_token

SECRET = b"p" * 48


@pytest.fixture
def jwt_server(make_server, tmp_path: Path):
    path = tmp_path / "jwt.secret"
    path.write_bytes(SECRET)
    return make_server(jwt_secret_file=str(path))


def mint(**kw) -> str:
    kw.setdefault("ttl", 600)
    return mint_token(SECRET, **kw)


def exp_of(token: str) -> float:
    import jwt

    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


def test_refresh_token_keeps_the_connection_past_the_first_expiry(jwt_server):
    srv = jwt_server
    srv.publish("prices.AAPL", trades(3))
    first = mint(sub="prices.*", ttl=3)
    conn = ls.connect(srv.url, token=first)
    try:
        sub = conn.subscribe("prices.AAPL")
        sub.wait(rows=3)
        assert conn.token_exp == exp_of(first)
        second = mint(sub="prices.*", ttl=600)
        reply = conn.refresh_token(second).result(10)
        assert reply["type"] == "refreshed" and reply["exp"] == exp_of(second)
        poll(lambda: time.time() > exp_of(first) + 1, 10, "the first token's expiry")
        srv.publish("prices.AAPL", trades(2, start=3))
        sub.wait(rows=5)
        assert conn.state == "live" and conn.stats.connects == 1  # never reconnected
        assert conn.token == second and conn.token_exp == exp_of(second)
        # a refused token is an error; the connection keeps the one it has
        with pytest.raises(ls.RemoteError, match="unauthorized"):
            conn.refresh_token("not-a-token").result(10)
        assert conn.state == "live"
    finally:
        conn.close()


def test_close_4003_waits_for_a_new_token_then_resumes(jwt_server):
    srv = jwt_server
    srv.publish("prices.AAPL", trades(3))
    conn = ls.connect(srv.url, token=mint(sub="prices.*", ttl=2))
    try:
        sub = conn.subscribe("prices.AAPL")
        sub.wait(rows=3)
        poll(lambda: conn.state == "unauthorized", 15, "close 4003 at expiry")
        assert "4003" in (conn.stats.last_error or "")
        assert sub.stats.state == "unauthorized"
        srv.publish("prices.AAPL", trades(2, start=3))  # missed while waiting
        assert conn.stats.connects == 1  # no reconnect loop with the expired token
        assert conn.refresh_token(mint(sub="prices.*")).result(10) is None
        poll(lambda: conn.state == "live", 15, "the reconnect with the new token")
        sub.wait(rows=5)
        assert sub.df["seq"].tolist() == list(range(5)) and sub.stats.gaps == 0  # resumed
    finally:
        conn.close()


def test_a_token_callable_is_asked_for_a_new_token_before_expiry(jwt_server):
    srv = jwt_server
    srv.publish("prices.AAPL", trades(1))
    counter = itertools.count()
    given: list[str] = []

    def token() -> str:
        given.append(mint(sub="prices.*", ttl=3, subject=f"n{next(counter)}"))
        return given[-1]

    conn = ls.connect(srv.url, token=token)
    try:
        sub = conn.subscribe("prices.AAPL")
        sub.wait(rows=1)
        first = given[0]
        poll(lambda: len(given) >= 2 and time.time() > exp_of(first) + 1, 15,
             "the first token's expiry, after a refresh")
        srv.publish("prices.AAPL", trades(1, start=1))
        sub.wait(rows=2)
        assert conn.stats.connects == 1 and conn.state == "live"
        assert conn.token in given[1:]
    finally:
        conn.close()


def test_a_refresh_that_narrows_the_rights_ends_subscriptions(jwt_server):
    srv = jwt_server
    srv.publish("prices.AAPL", trades(1))
    srv.publish("orders", trades(1))
    conn = ls.connect(srv.url, token=mint(sub=["prices.*", "orders"]))
    try:
        prices, orders = conn.subscribe("prices.AAPL"), conn.subscribe("orders")
        prices.wait(rows=1)
        orders.wait(rows=1)
        conn.refresh_token(mint(sub="prices.*")).result(10)
        poll(lambda: orders.stats.state == "unauthorized", 10, "orders to be ended")
        assert "unauthorized" in (orders.stats.last_error or "")
        srv.publish("prices.AAPL", trades(1, start=1))
        prices.wait(rows=2)
        # a token that allows it again resubscribes it
        conn.refresh_token(mint(sub=["prices.*", "orders"])).result(10)
        srv.publish("orders", trades(1, start=1))
        orders.wait(rows=2)
        assert orders.stats.state == "live"
    finally:
        conn.close()


def test_a_deleted_topic_waits_and_restarts_with_a_gap(make_server):
    srv = make_server()
    srv.publish("t", trades(4))
    conn = ls.connect(srv.url)
    try:
        sub = conn.subscribe("t")
        sub.wait(rows=4)
        old_epoch = sub.epoch
        assert srv.delete("t") is True and srv.delete("t") is False
        poll(lambda: sub.stats.state == "waiting", 10, "the deleted message")
        srv.publish("t", pd.DataFrame({"other": [1.5, 2.5]}))
        poll(lambda: list(sub.df.columns) == ["other"], 10, "the re-created topic")
        assert sub.df["other"].tolist() == [1.5, 2.5]
        assert sub.epoch != old_epoch and sub.offset == 2 and sub.stats.gaps == 1
        assert sub.stats.state == "live"
    finally:
        conn.close()
