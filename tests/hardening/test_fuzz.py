"""Fuzzing a real server in its own process: byte-level mutations of valid Arrow
publishes (over WebSocket and HTTP) and JSON messages of wrong shapes and types.

Meanwhile a healthy publisher publishes to a topic that a healthy subscriber
follows; it must receive every row, in order. At the end the server process is
alive, its memory is bounded, and it logged no ``internal`` error or traceback.

The default run is a small sample; the ``soak`` run (CI, or ``--run-slow``) sends
5,000 Arrow bodies, 500 HTTP bodies and 5,000 JSON messages. Cases are seeded: a
failure names the seed and index (and the failing case is written to the test's
tmp directory), and ``hardening_util.arrow_cases(seed, n)`` / ``json_cases``
reproduce it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hardening_util import (
    PUBLISH_ERRORS,
    Closed,
    ServerProcess,
    arrow_cases,
    base_bodies,
    exchange,
    http_publish,
    json_cases,
    publish_frame,
)
from spine_util import RawClient, until

from livestream.protocol import ERROR_CODES, CloseCode

MiB = 1 << 20
MEMORY_LIMIT = 4096 * MiB  # address-space cap of the server process (a memory blow-up fails fast)
RSS_GROWTH = 512 * MiB  # generous bound on the server's growth after warm-up
HEALTHY_EVERY = 25  # a healthy publish after this many fuzz cases


class Healthy:
    """A publisher and a subscriber of topic ``healthy`` on their own connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0  # rows published
        self.received: list[dict] = []  # data messages of the subscriber

    async def start(self) -> None:
        self.pub = await RawClient.open(self.url)
        self.sub = await RawClient.open(self.url)
        await self.sub.send({"type": "subscribe", "topic": "healthy", "id": "h"})
        await self.sub.recv_type("subscribed")
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.sub.ws.read_message()
            if msg is None:
                return
            m = json.loads(msg)
            if m["type"] in ("snapshot", "append"):
                self.received.append(m)

    async def publish(self) -> None:
        seq = list(range(self.sent, self.sent + 3))
        await self.pub.send({"type": "publish", "topic": "healthy", "id": self.sent,
                             "schema": [{"name": "seq", "type": "int64"},
                                        {"name": "v", "type": "float64"}],
                             "columns": {"seq": seq, "v": [s / 4 for s in seq]}})
        ack = await self.pub.recv_type("ack", timeout=60)
        assert (ack["offset"], ack["next"]) == (self.sent, self.sent + 3), ack
        self.sent += 3

    async def check(self) -> None:
        """Every published row arrived once, in order, with contiguous offsets."""
        await until(lambda: sum(m["rows"] for m in self.received) >= self.sent, timeout=60,
                    what="the healthy subscriber to receive every row")
        nxt = 0
        seq: list[int] = []
        for m in self.received:
            assert m["offset"] == nxt, (m["offset"], nxt)
            nxt = m["next"]
            seq += m["columns"]["seq"]
            assert m["columns"]["v"] == [s / 4 for s in m["columns"]["seq"]]
        assert seq == list(range(self.sent))
        self.pub.close()
        self.sub.close()
        self.reader.cancel()


def fail_with_case(tmp_path: Path, what: str, data: bytes | str, detail: str) -> None:
    path = tmp_path / ("case.bin" if isinstance(data, bytes) else "case.json")
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    pytest.fail(f"{what}: {detail}\n(the case is in {path})", pytrace=False)


async def fuzz(server: ServerProcess, tmp_path: Path, seed: int, n_arrow: int, n_http: int,
               n_json: int, stats: dict) -> None:
    for topic, body in base_bodies():
        assert http_publish(server, topic, body)[0] == 200
    healthy = Healthy(server.url)
    await healthy.start()
    await healthy.publish()
    client = await RawClient.open(server.url)

    # -- Arrow bodies over WebSocket --
    for i, topic, body in arrow_cases(seed, n_arrow):
        if i == min(50, n_arrow // 2):
            stats["rss_warm"] = server.rss()
        if i % HEALTHY_EVERY == 0:
            await healthy.publish()
        try:
            replies = await exchange(client, publish_frame(topic, body, i), f"s{i}")
        except (Closed, OSError, TimeoutError) as exc:
            fail_with_case(tmp_path, f"arrow case {i} (seed {seed}, topic {topic})", body,
                           f"{exc!r}; server: {server.death()}")
        got = [(r.get("type"), r.get("code"), r.get("id")) for r in replies]
        ok = len(got) == 1 and got[0][2] == i and (
            got[0][0] == "ack" or (got[0][0] == "error" and got[0][1] in PUBLISH_ERRORS))
        if not ok:
            fail_with_case(tmp_path, f"arrow case {i} (seed {seed}, topic {topic})", body,
                           f"replies {replies!r:.500}")
        stats[got[0][1] or "ack"] = stats.get(got[0][1] or "ack", 0) + 1

    # -- Arrow bodies over HTTP --
    for i, topic, body in arrow_cases(seed + 1, n_http):
        if i % HEALTHY_EVERY == 0:
            await healthy.publish()
        try:
            status, reply = http_publish(server, topic, body)
        except OSError as exc:
            fail_with_case(tmp_path, f"HTTP case {i} (seed {seed + 1}, topic {topic})", body,
                           f"{exc!r}; server: {server.death()}")
        if not (status == 200 or (400 <= status < 500 and reply["code"] in PUBLISH_ERRORS)):
            fail_with_case(tmp_path, f"HTTP case {i} (seed {seed + 1}, topic {topic})", body,
                           f"{status} {reply!r:.500}")

    # -- JSON messages of wrong shapes and types --
    client_errors = set(ERROR_CODES) - {"internal"}
    for i, text in json_cases(seed, n_json):
        if i % HEALTHY_EVERY == 0:
            await healthy.publish()
        try:
            replies = await exchange(client, text, f"s{i}")
        except Closed as exc:
            if exc.code != CloseCode.UNSUPPORTED_VERSION:  # hello with another v closes 4001
                fail_with_case(tmp_path, f"json case {i} (seed {seed})", text,
                               f"{exc!r}; server: {server.death()}")
            stats["closed_4001"] = stats.get("closed_4001", 0) + 1
            client = await RawClient.open(server.url)
            continue
        except (OSError, TimeoutError) as exc:
            fail_with_case(tmp_path, f"json case {i} (seed {seed})", text,
                           f"{exc!r}; server: {server.death()}")
        bad = [r for r in replies if r.get("type") == "error" and r.get("code") not in client_errors]
        if bad:
            fail_with_case(tmp_path, f"json case {i} (seed {seed})", text, f"replies {bad!r:.500}")
        for r in replies:
            if r.get("type") == "error":
                stats["json_" + r["code"]] = stats.get("json_" + r["code"], 0) + 1
    client.close()
    await healthy.check()
    stats["healthy_rows"] = healthy.sent


def run_fuzz(tmp_path: Path, seed: int, n_arrow: int, n_http: int, n_json: int) -> dict:
    server = ServerProcess(tmp_path / "server.log", "--max-errors", "1000000000",
                           "--memory-limit", str(MEMORY_LIMIT))
    stats: dict = {}
    try:
        asyncio.run(asyncio.wait_for(
            fuzz(server, tmp_path, seed, n_arrow, n_http, n_json, stats), 1500))
        assert server.alive(), server.death()
        rss = server.rss()
        assert rss < stats["rss_warm"] + RSS_GROWTH, (rss >> 20, stats["rss_warm"] >> 20)
        assert server.problems() == [], server.problems()[:20]
        assert server.internal_errors() == 0
    finally:
        server.stop()
    return stats


def test_fuzz_sample_through_a_server_process(tmp_path: Path) -> None:
    stats = run_fuzz(tmp_path, seed=11, n_arrow=300, n_http=40, n_json=300)
    assert stats["bad_frame"] > 50 and stats["healthy_rows"] > 0


@pytest.mark.soak
def test_fuzz_5000_arrow_and_5000_json_cases_through_a_server_process(tmp_path: Path) -> None:
    stats = run_fuzz(tmp_path, seed=2024, n_arrow=5000, n_http=500, n_json=5000)
    assert stats["bad_frame"] > 1000 and stats["healthy_rows"] >= 3 * 10_500 // HEALTHY_EVERY
