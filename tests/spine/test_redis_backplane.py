"""Several server nodes sharing topics through a real ``redis-server`` (the Redis backplane).

Nodes run in this process, on the test's loop, each with its own Redis connections and
local mirrors, exactly as separate processes would; the derived-topic takeover and the
CLI start-up error use real subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from spine_util import RawClient, async_test, trades, until

import livestream as ls
from livestream.backplane.redis import RedisBackplane
from livestream.errors import BackplaneUnavailable, SchemaError

pytestmark = pytest.mark.redis


async def node(url: str, bp: dict | None = None, **options) -> ls.Server:
    """A server node on the Redis at ``url`` (``bp``: RedisBackplane options), connected."""
    srv = ls.serve(port=0, backplane=RedisBackplane(url, **(bp or {})), **options)
    assert srv.ready is not None
    await srv.ready
    return srv


def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def http_post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def aget(url: str) -> dict:
    return await asyncio.get_running_loop().run_in_executor(None, http_json, url)


@async_test(timeout=90)
async def test_rows_published_on_either_node_reach_every_subscriber_once_in_order(redis_server):
    a, b = await node(redis_server.url), await node(redis_server.url)
    await a.publish("trades", trades(5, 0))
    ca = ls.connect(a.url, encoding="arrow")
    cb = ls.connect(b.url, encoding="json")
    cb2 = ls.connect(b.url, encoding="arrow")
    subs = [ca.subscribe("trades", window=None), cb.subscribe("trades", window=None),
            cb2.subscribe("trades", window=None)]
    seen: list[list[int]] = [[], [], []]
    for i, s in enumerate(subs):
        s.on_update(lambda s, frame, kind, i=i: seen[i].extend(frame["seq"].tolist()))
    for s in subs:
        await s.wait_async(rows=5)
    live_encodes_a = a.metrics.encodes - a.metrics.snapshot_encodes
    total = 5
    for i in range(40):  # alternate publishing nodes; every batch gets the next offsets
        srv = a if i % 2 else b
        update = await srv.publish("trades", trades(3, total))
        assert (update.offset, update.next) == (total, total + 3)
        total += 3
    await until(lambda: all(s.offset == total for s in subs), timeout=20, what="all caught up")
    for i, s in enumerate(subs):
        assert s.df["seq"].tolist() == list(range(total))
        assert seen[i] == list(range(total))  # once each, in offset order
        assert s.epoch == subs[0].epoch and s.stats.gaps == 0
    # encoded once, by the publisher: node A sends the Arrow bytes from Redis as they are
    assert a.metrics.encodes - a.metrics.snapshot_encodes == live_encodes_a
    for c in (ca, cb, cb2):
        c.close()
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_first_batch_fixes_the_schema_for_the_whole_cluster(redis_server):
    a, b = await node(redis_server.url), await node(redis_server.url)
    await a.topic("t")  # declared on A; B loads it without a schema
    assert (await b.core.ensure("t")).schema is None
    results = await asyncio.gather(
        a.publish("t", pd.DataFrame({"x": np.arange(3, dtype=np.int64)})),
        b.publish("t", pd.DataFrame({"x": ["p", "q"]})),
        return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], SchemaError), results
    assert errors[0].column == "x"
    loser, batch = (b, {"x": ["r"]}) if errors[0] is results[1] else (a, {"x": [4]})
    await until(lambda: all(s.core.backplane.get("t").schema is not None for s in (a, b)))
    assert a.core.backplane.get("t").schema == b.core.backplane.get("t").schema
    with pytest.raises(SchemaError) as info:  # the losing node now knows the schema too
        await loser.publish("t", pd.DataFrame(batch))
    assert info.value.column == "x"
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_a_client_resumes_on_another_node_without_gap_or_duplicate(redis_server):
    a, b = await node(redis_server.url), await node(redis_server.url)
    await a.publish("trades", trades(10, 0))
    ra = await RawClient.open(a.url)
    await ra.send({"type": "subscribe", "topic": "trades"})
    ack = await ra.recv_type("subscribed")
    snap = await ra.recv_type("snapshot")
    assert (snap["offset"], snap["next"]) == (0, 10)
    ra.close()  # node A is lost to this client; more rows arrive meanwhile
    await a.publish("trades", trades(7, 10))
    await b.publish("trades", trades(4, 17))
    rb = await RawClient.open(b.url)
    await rb.send({"type": "subscribe", "topic": "trades", "epoch": ack["epoch"],
                   "offset": snap["next"]})
    ack_b = await rb.recv_type("subscribed")
    assert ack_b["resumed"] is True and ack_b["epoch"] == ack["epoch"]
    missed = await rb.recv_type("append")
    assert (missed["offset"], missed["next"]) == (10, 21)  # exactly the missed rows
    await a.publish("trades", trades(2, 21))
    live = await rb.recv_type("append")
    assert (live["offset"], live["next"]) == (21, 23)
    rb.close()
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_a_node_started_later_loads_its_mirror_lazily_and_serves_the_snapshot(redis_server):
    a = await node(redis_server.url, retention_rows=500)
    for i in range(6):
        await a.publish("trades", trades(100, i * 100))
    b = await node(redis_server.url)
    assert "trades" in b.core.backplane.names()
    assert b.core.backplane.get("trades") is None  # not loaded before it is served
    cb = ls.connect(b.url)
    sub = cb.subscribe("trades", window=None)
    await sub.wait_async(rows=500)
    mirror = b.core.backplane.get("trades")
    origin = a.core.backplane.get("trades")
    assert (mirror.epoch, mirror.first_offset, mirror.next_offset) == \
        (origin.epoch, origin.first_offset, origin.next_offset)
    assert mirror.first_offset <= 100  # retention: the oldest batch is trimmed in Redis too
    assert sub.df["seq"].tolist() == list(range(mirror.first_offset, 600))
    assert sub.epoch == origin.epoch
    status = await aget(b.http_url + "/topics")
    assert [t["name"] for t in status["topics"]] == ["trades"]
    assert status["backplane"]["kind"] == "redis"
    cb.close()
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_delete_on_one_node_reaches_subscribers_on_the_other(redis_server):
    a, b = await node(redis_server.url), await node(redis_server.url)
    first = await a.publish("t", pd.DataFrame({"x": [1, 2]}))
    rb = await RawClient.open(b.url)
    await rb.send({"type": "subscribe", "topic": "t"})
    await rb.recv_type("snapshot")
    assert await a.delete("t") is True
    deleted = await rb.recv_type("deleted")
    assert deleted["topic"] == "t"
    await until(lambda: "t" not in b.core.backplane.names(), what="B forgets the topic")
    again = await b.publish("t", pd.DataFrame({"x": [7]}))
    assert again.epoch != first.epoch and again.offset == 0  # a new history
    await rb.recv_type("subscribed")
    await rb.recv_type("gap")
    snap = await rb.recv_type("snapshot")
    assert snap["epoch"] == again.epoch and snap["next"] == 1
    assert await b.delete("t") is True and await a.delete("t") is False
    rb.close()
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_keyed_topics_upsert_across_nodes(redis_server):
    a, b = await node(redis_server.url), await node(redis_server.url)
    await a.topic("quotes", key="symbol")
    cb = ls.connect(b.url)
    sub = cb.subscribe("quotes")
    await a.publish("quotes", pd.DataFrame({"symbol": ["A", "B"], "px": [1.0, 2.0]}))
    await b.publish("quotes", pd.DataFrame({"symbol": ["B", "C", "C"], "px": [3.0, 4.0, 5.0]}))
    await a.publish("quotes", pd.DataFrame({"symbol": ["A"], "px": [6.0]}))
    want = {"A": 6.0, "B": 3.0, "C": 5.0}
    await until(lambda: dict(zip(sub.df["symbol"], sub.df["px"], strict=True)) == want,
                what="the keyed table on B")
    c = await node(redis_server.url)  # a third node rebuilds the table from the log
    assert (await c.core.ensure("quotes")).frame().set_index("symbol")["px"].to_dict() == want
    cb.close()
    for s in (a, b, c):
        await s.aclose()


@async_test(timeout=60)
async def test_redis_down_refuses_publishes_and_everything_recovers_by_itself(redis_server):
    a = await node(redis_server.url, bp={"publish_timeout": 1.0})
    b = await node(redis_server.url, bp={"publish_timeout": 1.0})
    await a.publish("t", pd.DataFrame({"x": [1, 2, 3]}))
    cb = ls.connect(b.url)
    sub = cb.subscribe("t")
    await sub.wait_async(rows=3)
    gaps: list[dict] = []
    sub.on_gap(lambda s, g: gaps.append(g))
    health = await aget(b.http_url + "/health")
    assert health["status"] == "ok"
    assert health["backplane"]["kind"] == "redis" and health["backplane"]["connected"] is True
    await until(lambda: b.core.backplane.rtt_ms is not None, what="a round-trip time")
    redis_server.stop()
    await until(lambda: not b.core.backplane.connected, what="B sees Redis gone")
    with pytest.raises(BackplaneUnavailable):
        await b.publish("t", pd.DataFrame({"x": [4]}))
    health = await aget(b.http_url + "/health")
    assert health["status"] == "degraded" and health["backplane"]["connected"] is False
    status, body = await asyncio.get_running_loop().run_in_executor(
        None, http_post, b.http_url + "/topics/t", {"columns": {"x": [5]}})
    assert (status, body["code"]) == (503, "backplane_unavailable")
    assert sub.df["x"].tolist() == [1, 2, 3]  # subscribers keep their data
    redis_server.start()  # without persistence: its data is gone
    await until(lambda: a.core.backplane.connected and b.core.backplane.connected,
                timeout=20, what="both nodes reconnected")
    await until(lambda: gaps, timeout=20, what="gap (epoch)")
    assert gaps[0]["reason"] == "epoch"

    async def published() -> ls.Update | None:
        try:
            return await a.publish("t", pd.DataFrame({"x": [9]}))
        except BackplaneUnavailable:
            return None
    update = None
    while update is None:  # publishing works again once A has re-declared the topic
        update = await published()
    assert update.epoch == gaps[0]["new_epoch"]
    await until(lambda: sub.df["x"].tolist() == [9], what="the new history on B")
    cb.close()
    await a.aclose()
    await b.aclose()


DERIVE_NODE = textwrap.dedent("""
    import sys, livestream as ls
    from livestream.backplane.redis import RedisBackplane
    srv = ls.serve(port=0, backplane=RedisBackplane(sys.argv[1], lease_ttl=1.0))
    srv.derive("count", "trades", lambda w: w.assign(k=0).groupby("k").size()
               .rename("n").reset_index(), key="k", rate=20)
    print(srv.url, flush=True)
    srv.serve_forever()
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@async_test(timeout=90)
async def test_a_derived_topic_is_taken_over_when_its_node_dies(redis_server, tmp_path):
    script = tmp_path / "derive_node.py"
    script.write_text(DERIVE_NODE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), redis_server.url],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        assert line.startswith("ws://"), line
        b = await node(redis_server.url, bp={"lease_ttl": 1.0})
        await b.publish("trades", trades(10, 0))
        bp = b.core.backplane
        while await bp._r.get(bp.lease_key("count")) is None:
            await asyncio.sleep(0.02)  # the subprocess holds the lease before B declares
        b_derive = b.derive("count", "trades", lambda w: w.assign(k=0).groupby("k").size()
                            .rename("n").reset_index(), key="k", rate=20)
        await b_derive
        assert "count" not in b.core._leased  # the other node computes it
        cb = ls.connect(b.url)
        sub = cb.subscribe("count")
        gaps: list[dict] = []
        sub.on_gap(lambda s, g: gaps.append(g))
        await until(lambda: len(sub) == 1 and sub.df["n"].tolist() == [10], timeout=20,
                    what="the count computed by the other node")
        before = sub.offset
        epoch = sub.epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        await b.publish("trades", trades(5, 10))
        await until(lambda: "count" in b.core._leased, timeout=10, what="B takes the lease")
        await until(lambda: sub.df["n"].tolist() == [15], timeout=10, what="B computes")
        assert sub.epoch == epoch and sub.offset > before and not gaps  # same history
        cb.close()
        await b.aclose()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_exits_with_one_line_when_redis_is_unreachable(free_port):
    res = subprocess.run(
        [sys.executable, "-m", "livestream.cli", "serve", "--port", "0", "--backplane",
         f"redis://127.0.0.1:{free_port}/0"], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach the Redis backplane")
    assert f"127.0.0.1:{free_port}" in lines[0]


@async_test(timeout=60)
async def test_a_publish_right_after_declaring_keeps_every_row_in_the_mirror(redis_server):
    # the node's own publish and its reader (which also sees the topic's first entry)
    # race to give the declared, schema-less mirror its schema: the rows must all stay
    a = await node(redis_server.url)
    for i in range(20):
        name = f"t{i}"
        await a.topic(name)
        await a.publish(name, pd.DataFrame({"x": [1, 2, 3]}))
        await a.publish(name, pd.DataFrame({"x": [4]}))
    b = await node(redis_server.url)
    for i in range(20):
        mirror = a.core.backplane.get(f"t{i}")
        await until(lambda m=mirror: m.next_offset == 4)
        assert (mirror.first_offset, len(mirror)) == (0, 4)
        assert (await b.core.ensure(f"t{i}")).frame()["x"].tolist() == [1, 2, 3, 4]
        assert mirror.frame()["x"].tolist() == [1, 2, 3, 4]
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_keyed_logs_are_trimmed_after_checkpoints_and_mirrors_rebuilt_from_them(
        redis_server):
    a = await node(redis_server.url, retention_rows=10)
    await a.topic("quotes", key="symbol")
    want: dict[str, float] = {}
    for i in range(60):
        batch = pd.DataFrame({"symbol": [f"S{(i * 3 + j) % 7}" for j in range(3)],
                              "px": [float(i * 3 + j) for j in range(3)]})
        want.update(zip(batch["symbol"], batch["px"], strict=True))
        await a.publish("quotes", batch)
    r = a.core.backplane._r
    # one at least every retention_rows upserts (unless one is still being written)
    await until(lambda: a.core.backplane._mirrors["quotes"].checkpoint >= 160,
                what="a recent checkpoint")
    assert await r.xlen(a.core.backplane._skey("quotes")) <= 10  # not every upsert
    b = await node(redis_server.url)
    mirror = await b.core.ensure("quotes")
    assert mirror.frame().set_index("symbol")["px"].to_dict() == want
    assert mirror.next_offset == 180 and mirror.first_offset <= 170
    # a client that holds offset 175 resumes on b with exactly the upserts since
    rb = await RawClient.open(b.url)
    await rb.send({"type": "subscribe", "topic": "quotes", "epoch": mirror.epoch,
                   "offset": 175})
    assert (await rb.recv_type("subscribed"))["resumed"] is True
    missed = await rb.recv_type("upsert")
    assert (missed["offset"], missed["next"]) == (175, 180)
    rb.close()
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_a_subscriber_waiting_on_one_node_gets_a_topic_created_on_another(redis_server):
    a, b = await node(redis_server.url), await node(redis_server.url)
    rb = await RawClient.open(b.url)
    await rb.send({"type": "subscribe", "topic": "later"})
    assert (await rb.recv_type("subscribed"))["exists"] is False
    await a.publish("later", pd.DataFrame({"x": [1, 2]}))
    await a.publish("later", pd.DataFrame({"x": [3]}))
    ack = await rb.recv_type("subscribed")
    assert ack["exists"] is True and ack["schema"] == [{"name": "x", "type": "int64"}]
    snap = await rb.recv_type("snapshot")
    assert snap["offset"] == 0 and snap["next"] in (2, 3)
    if snap["next"] == 2:
        assert (await rb.recv_type("append"))["next"] == 3
    status, body = await asyncio.get_running_loop().run_in_executor(
        None, http_post, b.http_url + "/topics/later", {"columns": {"x": [4]}})
    assert (status, body["offset"], body["next"]) == (200, 3, 4)  # HTTP publish on B
    assert (await rb.recv_type("append"))["next"] == 4
    rb.close()
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_publishes_waiting_for_a_stalled_redis_are_bounded(redis_server):
    a = await node(redis_server.url, bp={"publish_timeout": 2.0, "max_pending_publishes": 3})
    await a.publish("t", pd.DataFrame({"x": [0]}))
    os.kill(redis_server.proc.pid, signal.SIGSTOP)  # Redis answers nothing from now on
    try:
        stalled = [a.publish("t", pd.DataFrame({"x": [i]})) for i in range(1, 4)]
        await until(lambda: a.core.backplane._pending == 3, what="three publishes waiting")
        with pytest.raises(BackplaneUnavailable, match="max_pending_publishes"):
            await a.publish("t", pd.DataFrame({"x": [9]}))  # refused at once, not queued
        outcomes = await asyncio.gather(*stalled, return_exceptions=True)
        assert all(isinstance(o, BackplaneUnavailable) for o in outcomes), outcomes
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    await until(lambda: a.core.backplane.connected, timeout=20, what="reconnected")
    update = None
    while update is None:
        try:
            update = await a.publish("t", pd.DataFrame({"x": [10]}))
        except BackplaneUnavailable:
            await asyncio.sleep(0.05)  # pacing retries while the node reconnects
    # the timed-out batches may or may not have reached the log; the log has no hole
    mirror = a.core.backplane.get("t")
    await until(lambda: mirror.next_offset == update.next, what="the node caught up")
    assert mirror.frame()["x"].tolist()[0] == 0 and mirror.frame()["x"].tolist()[-1] == 10
    assert len(mirror) == mirror.next_offset
    await a.aclose()


@pytest.mark.parametrize("publish_at_once", [False, True])
@async_test(timeout=60)
async def test_a_log_that_lost_its_end_in_redis_starts_a_new_epoch(redis_server,
                                                                  publish_at_once):
    # as after Redis restarts from an append-only file older than what the nodes applied
    a, b = await node(redis_server.url), await node(redis_server.url)
    for i in range(3):
        await a.publish("t", pd.DataFrame({"x": [i]}))
    rb = await RawClient.open(b.url)
    await rb.send({"type": "subscribe", "topic": "t"})
    snap = await rb.recv_type("snapshot")
    assert snap["next"] == 3
    r, bp = a.core.backplane._r, a.core.backplane
    last = await r.xrevrange(bp._skey("t"), count=1)
    await r.xdel(bp._skey("t"), last[0][0])
    await r.hset(bp._hkey("t"), mapping={"next": 2, "seq": 2})
    if publish_at_once:  # reuses offsets the nodes have: refused, or in the new epoch
        try:
            u = await a.publish("t", pd.DataFrame({"x": [5, 5, 5, 5, 5]}))
            assert u.epoch != snap["epoch"]
        except BackplaneUnavailable:
            pass
    gap = await rb.recv_type("gap", timeout=10)
    assert gap["reason"] == "epoch" and gap["epoch"] == snap["epoch"]
    fresh = await rb.recv_type("snapshot")
    assert fresh["epoch"] == gap["new_epoch"] != snap["epoch"]
    await until(lambda: a.core.backplane.get("t").epoch == gap["new_epoch"])
    update = await a.publish("t", pd.DataFrame({"x": [7]}))
    assert (update.epoch, update.offset) == (gap["new_epoch"], fresh["next"])
    assert (await rb.recv_type("append"))["epoch"] == gap["new_epoch"]
    await until(lambda: b.core.backplane.get("t").next_offset == update.next)
    assert a.core.backplane.get("t").frame()["x"].tolist() == \
        b.core.backplane.get("t").frame()["x"].tolist()
    rb.close()
    await a.aclose()
    await b.aclose()


@async_test(timeout=60)
async def test_two_nodes_publishing_at_once_give_one_contiguous_order(redis_server):
    a, b = await node(redis_server.url), await node(redis_server.url)
    await a.publish("t", pd.DataFrame({"who": ["a"], "i": [0]}))
    ca, cb = ls.connect(a.url), ls.connect(b.url, encoding="json")
    sa, sb = ca.subscribe("t", window=None), cb.subscribe("t", window=None)
    await sa.wait_async(1)
    await sb.wait_async(1)

    async def publisher(srv: ls.Server, who: str) -> list[ls.Update]:
        out = []
        for i in range(1, 51):
            out.append(await srv.publish("t", pd.DataFrame({"who": [who] * 2, "i": [i, i]})))
        return out
    ua, ub = await asyncio.gather(publisher(a, "a"), publisher(b, "b"))
    spans = sorted((u.offset, u.next) for u in ua + ub)
    assert spans == [(1 + 2 * k, 3 + 2 * k) for k in range(100)]  # contiguous, no overlap
    await until(lambda: sa.offset == sb.offset == 201, what="both subscribers caught up")
    order_a = list(zip(sa.df["who"], sa.df["i"], strict=True))
    assert order_a == list(zip(sb.df["who"], sb.df["i"], strict=True))  # one order
    assert [i for w, i in order_a if w == "b"] == [i for i in range(1, 51) for _ in (0, 1)]
    ca.close()
    cb.close()
    await a.aclose()
    await b.aclose()


def test_a_redis_password_never_reaches_the_logs() -> None:
    from livestream.redact import scrub

    bp = RedisBackplane("redis://:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in repr(bp) and "s3cret" not in json.dumps(bp.status())
    assert scrub("cannot reach rediss://user:s3cret@h:6380/0") == \
        "cannot reach rediss://user:***@h:6380/0"


@async_test(timeout=60)
async def test_the_mirror_check_racing_a_publish_does_not_start_a_new_epoch(redis_server):
    # the once-a-second check reads each topic's next offset from Redis; a publish on this
    # node may be applied here between Redis answering and the check reading the answer:
    # that is not Redis losing the end of the log
    a = await node(redis_server.url)
    await a.publish("trades", trades(5, 0))
    bp = a.core.backplane
    epoch = bp.get("trades").epoch
    real_pipeline = bp._r.pipeline
    raced: list[bool] = []
    me = asyncio.current_task()

    def racing_pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        async def execute(*a2, **k2):
            answers = await real_execute(*a2, **k2)
            # once, and only in this test's own check: the node's once-a-second check may
            # use the pipeline meanwhile, and a race there would still be in flight below
            if not raced and asyncio.current_task() is me:
                raced.append(True)
                await bp.publish_async("trades", trades(5, 5))  # lands after Redis answered
            return answers

        pipe.execute = execute
        return pipe

    bp._r.pipeline = racing_pipeline
    try:
        await bp._verify_mirrors()
    finally:
        bp._r.pipeline = real_pipeline
    assert raced
    topic = bp.get("trades")
    assert (topic.epoch, topic.next_offset) == (epoch, 10)
    update = await a.publish("trades", trades(5, 10))
    assert (update.epoch, update.offset) == (epoch, 10)
    await a.aclose()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="needs Task.cancelling (3.11)")
@async_test(timeout=60)
async def test_the_reader_stops_when_cancelled_even_if_redis_py_swallows_the_cancellation(
        redis_server):
    # redis-py can eat a cancellation that lands while a blocking read returns (its issue
    # #2028): the reader then looped on, and a loop torn down without aclose() never ended
    a = await node(redis_server.url)
    bp = a.core.backplane
    real_xread = bp._rx.xread

    async def xread_eating_cancellation(*args, **kwargs):
        try:
            return await real_xread(*args, **kwargs)
        except asyncio.CancelledError:
            return []  # what redis-py answers when the race goes its way

    bp._rx.xread = xread_eating_cancellation
    reader = bp._reader
    # cancel the reader while it is inside XREAD (a blocking read of up to a second):
    # the cancellation is then eaten, by this wrapper or by redis-py itself
    await until(lambda: any(f.f_code.co_name == "xread_eating_cancellation"
                            for f in _frames(reader)), what="the reader inside xread")
    reader.cancel()
    try:
        done, _ = await asyncio.wait([reader], timeout=15)
        assert reader in done and reader.cancelled()
    finally:
        bp._rx.xread = real_xread
        await a.aclose()


def _frames(task: asyncio.Task) -> list:
    """The frames of a suspended task's coroutine chain, outermost first."""
    frames, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames
