"""Redis faults under a running cluster, and two publishers on two nodes.

Each scenario is bounded (``run(..., timeout=)``, every wait has a deadline) and stops by
itself. Redis restarts use the harness's real ``redis-server``: without persistence the
data is gone; with ``appendonly yes`` + ``appendfsync always`` every acked write survives
even a SIGKILL.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys

import pytest
from cluster_util import (
    free_port,
    node_env,
    publish,
    publish_when_back,
    run,
    ticks,
)
from testutil import until

import livestream as ls
from livestream.errors import RemoteError

pytestmark = pytest.mark.redis

TOPIC = "ticks"


def seqs(sub) -> list[int]:
    return sub.df["seq"].tolist() if sub.df is not None and len(sub.df) else []


async def health_says(node, connected: bool):
    """Wait until ``node``'s /health reports the backplane (dis)connected."""

    def check() -> bool:
        try:
            return node.health()["backplane"]["connected"] is connected
        except OSError:
            return False

    deadline = asyncio.get_running_loop().time() + 60
    while not await asyncio.to_thread(check):
        assert asyncio.get_running_loop().time() < deadline, \
            f"{node} /health never said connected={connected}\n{node.log_tail()}"
        await asyncio.sleep(0.05)  # poll interval; the condition decides


async def two_nodes_with_subscribers(cluster, rows: int):
    """Two nodes, a publisher on the first, one subscriber on each; ``rows`` published."""
    a, b = await cluster.start(2)
    pub = ls.connect(a.url, backoff=(0.01, 0.1))
    await pub.wait_live(30)
    await publish(pub, TOPIC, ticks(rows))
    conns = [ls.connect(n.url, backoff=(0.01, 0.1)) for n in (a, b)]
    subs = [c.subscribe(TOPIC, window=None) for c in conns]
    for sub in subs:
        await sub.wait_async(rows=rows, timeout=30)
    assert subs[0].epoch == subs[1].epoch is not None  # one epoch per topic, cluster-wide
    return a, b, pub, conns, subs


def close_all(*conns) -> None:
    for conn in conns:
        conn.close()


def test_redis_restart_without_persistence_gives_a_new_epoch_a_gap_then_a_snapshot(make_cluster):
    async def scenario() -> None:
        cluster = make_cluster(appendonly=False)
        _a, b, pub, conns, subs = await two_nodes_with_subscribers(cluster, 20)
        old = subs[0].epoch
        gaps: list[list[dict]] = [[], []]
        for sub, got in zip(subs, gaps, strict=True):
            sub.on_gap(lambda s, g, got=got: got.append(g))
        cluster.redis.stop()
        cluster.redis.start()  # empty: the shared log is gone
        await publish_when_back(pub, TOPIC, ticks(5, 1000))
        await until(lambda: all(s.epoch not in (None, old) and seqs(s) == list(range(1000, 1005))
                                for s in subs), timeout=60,
                    what="both subscribers on the new history")
        for got, sub in zip(gaps, subs, strict=True):
            assert got and all(g["reason"] == "epoch" for g in got), got
            assert sub.stats.gaps == len(got)
        assert subs[0].epoch == subs[1].epoch
        # a newcomer on either node gets the same new history; publishing goes on normally
        late = ls.connect(b.url)
        late_sub = late.subscribe(TOPIC, window=None)
        await late_sub.wait_async(rows=5, timeout=30)
        assert late_sub.epoch == subs[0].epoch and seqs(late_sub) == list(range(1000, 1005))
        ack = await publish(pub, TOPIC, ticks(5, 1005))
        assert (ack["offset"], ack["next"]) == (5, 10)
        await until(lambda: all(seqs(s) == list(range(1000, 1010)) for s in (*subs, late_sub)),
                    timeout=30, what="live after the restart")
        close_all(pub, late, *conns)

    run(scenario(), timeout=180)


def test_redis_restart_with_aof_clients_resume_without_a_gap(make_cluster):
    async def scenario() -> None:
        cluster = make_cluster(appendonly=True)
        a, b, pub, conns, subs = await two_nodes_with_subscribers(cluster, 30)
        epoch = subs[0].epoch
        cluster.redis.kill()  # a crash: appendfsync always kept every acked write
        cluster.redis.start()
        for node in (a, b):
            await health_says(node, True)
        await publish_when_back(pub, TOPIC, ticks(30, 30))
        await until(lambda: all(s.offset == 60 for s in subs), timeout=60, what="caught up")
        # a client that loses its node now resumes on the other by (epoch, next)
        moving = ls.connect([a.url, b.url], backoff=(0.01, 0.1))
        msub = moving.subscribe(TOPIC, window=None)
        await msub.wait_async(rows=60, timeout=30)
        a.kill()
        pub_b = ls.connect(b.url, backoff=(0.01, 0.1))
        await pub_b.wait_live(30)
        await publish(pub_b, TOPIC, ticks(10, 60))
        await until(lambda: moving.url == b.url and msub.offset == 70, timeout=60,
                    what="resumed on b")
        for sub in (*subs[1:], msub):
            await until(lambda s=sub: s.offset == 70, timeout=30, what="rows after the kill")
        for sub in (subs[1], msub):
            assert sub.epoch == epoch and sub.stats.gaps == 0, sub.gaps
            assert seqs(sub) == list(range(70))
        assert subs[0].epoch == epoch and subs[0].stats.gaps == 0
        assert seqs(subs[0])[:60] == list(range(60))
        close_all(pub, moving, pub_b, *conns)

    run(scenario(), timeout=180)


def test_redis_unreachable_at_start_is_a_one_line_error_and_exit_1(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    res = subprocess.run([sys.executable, "-m", "livestream.cli", "serve", "--port", "0",
                          "--backplane", url], capture_output=True, text=True, timeout=120,
                         env=node_env(), stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert "127.0.0.1" in lines[0] and "redis" in lines[0].lower(), lines[0]


def test_redis_unreachable_later_publishing_raises_subscribers_keep_data_then_recover(
        make_cluster):
    async def scenario() -> None:
        cluster = make_cluster(appendonly=True)
        a, b, pub, conns, subs = await two_nodes_with_subscribers(cluster, 20)
        cluster.redis.stop()
        with pytest.raises(RemoteError) as err:
            await publish(pub, TOPIC, ticks(5, 20))
        assert err.value.code == "backplane_unavailable", err.value
        for node in (a, b):
            await health_says(node, False)
        # the subscribers stay connected to their nodes and keep every row
        assert all(c.state == "live" for c in conns)
        assert all(seqs(s) == list(range(20)) for s in subs)
        # nothing was half-written: the refused batch never reaches anyone
        cluster.redis.start()
        for node in (a, b):
            await health_says(node, True)
        ack = await publish_when_back(pub, TOPIC, ticks(5, 20))
        assert (ack["offset"], ack["next"]) == (20, 25)
        await until(lambda: all(seqs(s) == list(range(25)) for s in subs), timeout=60,
                    what="recovered by itself")
        assert all(s.stats.gaps == 0 for s in subs)
        close_all(pub, *conns)

    run(scenario(), timeout=180)


def test_two_publishers_on_two_nodes_contiguous_offsets_one_order(make_cluster):
    batches, size = 60, 5

    async def scenario() -> None:
        cluster = make_cluster()
        a, b = await cluster.start(2)
        pubs = [ls.connect(n.url, backoff=(0.01, 0.1)) for n in (a, b)]
        for p in pubs:
            await p.wait_live(30)
        await publish(pubs[0], TOPIC, ticks(size, 0, source=9))  # creates the topic
        conns = [ls.connect(u, backoff=(0.01, 0.1)) for u in (a.url, b.url, [b.url, a.url])]
        subs = [c.subscribe(TOPIC, window=None) for c in conns]
        for sub in subs:
            await sub.wait_async(rows=size, timeout=30)
        acks: list[tuple[int, int]] = [(0, size)]

        async def publisher(i: int) -> None:
            # several publishes in flight at once on each connection
            for start in range(0, batches * size, 4 * size):
                futs = [publish(pubs[i], TOPIC, ticks(size, s, source=i))
                        for s in range(start, min(start + 4 * size, batches * size), size)]
                for ack in await asyncio.gather(*futs):
                    acks.append((ack["offset"], ack["next"]))

        await asyncio.gather(publisher(0), publisher(1))
        total = size + 2 * batches * size
        acks.sort()
        assert acks[0][0] == 0 and acks[-1][1] == total
        assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(acks)), acks
        await until(lambda: all(s.offset == total for s in subs), timeout=60, what="delivered")
        orders = [list(zip(s.df["source"], s.df["seq"], strict=True)) for s in subs]
        assert orders[0] == orders[1] == orders[2]
        assert len(set(orders[0])) == total
        for i in (0, 1):  # each publisher's rows keep its own order
            mine = [seq for src, seq in orders[0] if src == i]
            assert mine == list(range(batches * size))
        close_all(*pubs, *conns)

    run(scenario(), timeout=180)
