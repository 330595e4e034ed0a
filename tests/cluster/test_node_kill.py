"""A node SIGKILLed mid-stream: its subscribers move to another node (``ls.connect`` with the
cluster's URLs) and resume by (epoch, next): zero loss, zero duplicates, no gap.

The publisher stays on a node that is never killed, so every row it was acked is a row that
must arrive, once. Two other nodes take turns dying; the one serving the most subscribers is
killed, the subscribers that were on it must reconnect elsewhere and catch up, then the dead
node is restarted on its port before the next kill.
"""

from __future__ import annotations

import asyncio

import pytest
from cluster_util import publish, run, ticks
from testutil import until

import livestream as ls

pytestmark = pytest.mark.redis

TOPIC = "ticks"


async def kill_loop(cluster, kills: int) -> None:
    home, x, y = await cluster.start(3, extra=["--retention-rows", "1000000"])
    pub = ls.connect(home.url, backoff=(0.01, 0.1))
    await pub.wait_live(30)
    total = 0
    await publish(pub, TOPIC, ticks(10))
    total = 10
    orders = ([x, y, home], [y, x, home], [x, y], [y, x])
    conns = [ls.connect([n.url for n in order], backoff=(0.01, 0.1)) for order in orders]
    subs = [c.subscribe(TOPIC, window=None) for c in conns]
    seen: list[list[int]] = [[] for _ in subs]
    for sub, got in zip(subs, seen, strict=True):
        sub.on_update(lambda s, frame, kind, got=got: got.extend(frame["seq"].tolist()))
    stop = asyncio.Event()

    async def publisher() -> None:
        nonlocal total
        while not stop.is_set():
            ack = await publish(pub, TOPIC, ticks(10, total))
            assert (ack["offset"], ack["next"]) == (total, total + 10), ack
            total += 10
            await asyncio.sleep(0.005)  # pacing the publisher, not synchronisation

    task = asyncio.ensure_future(publisher())
    try:
        for k in range(kills):
            mark = total
            await until(lambda m=mark: task.done() or all(
                c.state == "live" and (s.offset or 0) > m for c, s in zip(conns, subs,
                                                                           strict=True)),
                        timeout=60, what=f"every subscriber live and streaming (kill {k})")
            if task.done():
                task.result()  # the publisher failed: raise its error
            on = {n: [c for c in conns if c.url == n.url] for n in (x, y)}
            victim = max((x, y), key=lambda n: len(on[n]))
            moved = on[victim]
            assert moved, f"no subscriber on {x} or {y}: {[c.url for c in conns]}"
            before = [c.stats.connects for c in moved]
            victim.kill()
            mark = total
            await until(lambda m=mark, b=before, cs=moved, v=victim: all(
                c.stats.connects > n and c.state == "live" and c.url != v.url
                and (c.subscriptions[TOPIC].offset or 0) > m
                for c, n in zip(cs, b, strict=True)),
                        timeout=60, what=f"subscribers of {victim} resumed elsewhere (kill {k})")
            victim.start()
            await victim.wait_ready_async()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.shield(task), 30)
    await until(lambda: all(s.offset == total for s in subs), timeout=60,
                what=f"every subscriber caught up to {total}")
    for sub, got, conn in zip(subs, seen, conns, strict=True):
        assert got == list(range(total)), f"{conn}: lost or duplicated rows"
        assert sub.df["seq"].tolist() == list(range(total))
        assert sub.stats.gaps == 0, sub.gaps
    assert sum(c.stats.reconnects for c in conns) >= kills
    assert x.starts + y.starts == 2 + kills
    for conn in (*conns, pub):
        conn.close()


@pytest.mark.timeout(300)
def test_a_node_killed_mid_stream_its_subscribers_resume_on_another(make_cluster):
    cluster = make_cluster()
    run(kill_loop(cluster, kills=1), timeout=270)


@pytest.mark.soak
@pytest.mark.timeout(960)  # 20 node restarts; bounded inside by run(timeout=900)
def test_twenty_node_kills_lose_and_duplicate_nothing(make_cluster):
    cluster = make_cluster()
    run(kill_loop(cluster, kills=20), timeout=900)
