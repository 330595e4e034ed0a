"""Untrusted Arrow publish bodies, over WebSocket and ``POST /topics/{name}``, sent to a
server running in its own process (a segfault fails the test instead of killing pytest).

A bad body gets ``bad_frame`` (HTTP 400), or the documented error of the limit or
schema rule it breaks, and nothing of it is applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hardening_util import (
    PUBLISH_ERRORS,
    Closed,
    ServerProcess,
    bad_pandas_metadata,
    base_bodies,
    corpus_files,
    crafted_bodies,
    exchange,
    http_publish,
    odd_pandas_metadata,
    publish_frame,
)
from spine_util import RawClient, async_test

from livestream.protocol import frame_to_arrow

MEMORY_LIMIT = str(4 << 30)


@pytest.fixture(scope="module")
def proc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("arrow") / "server.log",
                           "--max-errors", "1000000", "--memory-limit", MEMORY_LIMIT)
    yield server
    server.stop()


def test_corpus_of_crashers_gets_client_errors_and_the_server_survives(tmp_path: Path) -> None:
    """Every body in corpus/ (segfaults, aborts, memory blow-ups and tracebacks found by
    find_crashers.py on the old decoder), over WebSocket and then over HTTP."""
    files = corpus_files()
    assert len(files) >= 50
    failures: list[str] = []
    server: ServerProcess | None = None

    async def run() -> None:
        nonlocal server
        client = None
        for n, path in enumerate(files):
            kind, topic, _ = path.name.split("__")
            body = path.read_bytes()
            if client is None:  # first case, or the server died on the previous one
                if server is not None:
                    server.stop()
                server = ServerProcess(tmp_path / f"server{n}.log", "--max-errors", "1000000",
                                       "--memory-limit", MEMORY_LIMIT)
                for t, good in base_bodies():
                    http_publish(server, t, good)
                client = await RawClient.open(server.url)
            before = server.topic_next(topic)
            try:
                replies = await exchange(client, publish_frame(topic, body, n), f"s{n}")
            except (Closed, OSError, TimeoutError) as exc:
                failures.append(f"{path.name} over WebSocket: {exc!r}; {server.death()[:300]}")
                client = None
                continue
            codes = [(r.get("type"), r.get("code")) for r in replies]
            if len(replies) != 1 or not (codes[0] == ("ack", None) or (
                    codes[0][0] == "error" and codes[0][1] in PUBLISH_ERRORS
                    and replies[0].get("id") == n and replies[0].get("topic") == topic)):
                failures.append(f"{path.name} over WebSocket: {codes}")
            if kind in ("segv", "abort", "memory", "killed"):
                if codes != [("error", "bad_frame")]:
                    failures.append(f"{path.name}: expected bad_frame, got {codes}")
                if server.topic_next(topic) != before:
                    failures.append(f"{path.name}: rows of a bad body were applied")
            try:
                status, reply = http_publish(server, topic, body)
            except OSError as exc:
                failures.append(f"{path.name} over HTTP: {exc!r}; {server.death()[:300]}")
                client = None
                continue
            if not (status == 200 or (400 <= status < 500 and reply["code"] in PUBLISH_ERRORS)):
                failures.append(f"{path.name} over HTTP: {status} {reply!r:.200}")
        if client is not None:
            client.close()

    async_test(600)(run)()
    assert server is not None
    alive = server.alive()
    problems = server.problems()
    server.stop()
    assert not failures, "\n".join(failures)
    assert alive and not problems, problems


@pytest.mark.parametrize("name", list(crafted_bodies()))
def test_a_body_broken_in_a_known_way_gets_bad_frame_and_nothing_is_applied(
        proc_server: ServerProcess, name: str) -> None:
    frame, body = crafted_bodies()[name]
    topic = "crafted-" + "-".join(name.split())
    mark = proc_server.log_size()
    assert http_publish(proc_server, topic, frame_to_arrow(frame))[0] == 200
    before = proc_server.topic_next(topic)

    @async_test()
    async def over_websocket() -> None:
        client = await RawClient.open(proc_server.url)
        replies = await exchange(client, publish_frame(topic, body, 41), "s")
        client.close()
        assert [(r["type"], r.get("code"), r.get("id"), r.get("topic")) for r in replies] == [
            ("error", "bad_frame", 41, topic)], replies

    over_websocket()
    status, reply = http_publish(proc_server, topic, body)
    assert (status, reply["code"]) == (400, "bad_frame"), reply
    assert proc_server.alive(), proc_server.death()
    assert proc_server.topic_next(topic) == before
    assert proc_server.problems(mark) == []


@pytest.mark.parametrize("name", list(bad_pandas_metadata()))
def test_malformed_pandas_metadata_is_bad_frame(proc_server: ServerProcess, name: str) -> None:
    body = bad_pandas_metadata()[name]
    mark = proc_server.log_size()

    @async_test()
    async def over_websocket() -> None:
        client = await RawClient.open(proc_server.url)
        replies = await exchange(client, publish_frame("meta", body, 7), "s")
        client.close()
        assert [(r["type"], r.get("code"), r.get("id")) for r in replies] == [
            ("error", "bad_frame", 7)], replies
        assert "pandas metadata" in replies[0]["message"]

    over_websocket()
    status, reply = http_publish(proc_server, "meta", body)
    assert (status, reply["code"]) == (400, "bad_frame")
    assert proc_server.topic_next("meta") is None
    assert proc_server.problems(mark) == []


@pytest.mark.parametrize("name", list(odd_pandas_metadata()))
def test_pandas_metadata_that_does_not_fit_the_arrow_types_is_ignored(
        proc_server: ServerProcess, name: str) -> None:
    topic = "odd-" + "-".join(name.split())
    mark = proc_server.log_size()
    status, reply = http_publish(proc_server, topic, odd_pandas_metadata()[name])
    assert status == 200, reply
    _, topics = proc_server.http("GET", "/topics")
    info = next(t for t in topics["topics"] if t["name"] == topic)
    assert info["schema"] == [{"name": "x", "type": "int64"}]
    _, snap = proc_server.http("GET", f"/topics/{topic}?format=json")
    assert snap["columns"]["x"] == [0, 1, 2]
    assert proc_server.problems(mark) == []


def test_arrow_publishes_keep_their_dtypes(proc_server: ServerProcess) -> None:
    """The hardened decoder still gives pandas publishes their exact dtypes, with and
    without pandas metadata (nullable ints and bools, categories, time zones)."""
    from hardening_util import rich_frame

    from livestream.core.schema import Schema
    from livestream.protocol import arrow_to_frame
    from livestream.protocol.codec import encode_arrow

    rich = rich_frame(7)
    for topic, body in (("dtypes-pandas", frame_to_arrow(rich)),
                        ("dtypes-plain", encode_arrow(rich, Schema.from_frame(rich)))):
        status, reply = http_publish(proc_server, topic, body)
        assert status == 200, reply
        _, topics = proc_server.http("GET", "/topics")
        info = next(t for t in topics["topics"] if t["name"] == topic)
        assert info["schema"] == Schema.from_frame(rich).to_json()
        _, snap = proc_server.http("GET", f"/topics/{topic}?format=arrow")
        got = arrow_to_frame(snap)
        pd.testing.assert_frame_equal(got, rich, check_categorical=False)
        assert np.array_equal(got["sym"].astype(str), rich["sym"].astype(str))
