"""Clients behind one load-balanced URL: when the node behind their connection dies, they
reconnect to the same URL, the balancer hands them to a live node, and they resume there
by (epoch, next) with nothing lost or repeated. (docs/scaling.md, "One load-balanced URL".)"""

from __future__ import annotations

import pytest
from cluster_util import Balancer, publish, run, ticks
from testutil import until

import livestream as ls

pytestmark = pytest.mark.redis

TOPIC = "ticks"
KILLS = 3


def test_clients_behind_one_balanced_url_resume_on_another_node(make_cluster):
    async def scenario() -> None:
        cluster = make_cluster()
        home, x, y = await cluster.start(3)
        lb = await Balancer([x.port, y.port]).start()
        pub = ls.connect(home.url, backoff=(0.01, 0.1))
        await pub.wait_live(30)
        await publish(pub, TOPIC, ticks(10))
        total = 10
        # one client through the balancer (the publisher connects directly), so the
        # balancer's last route is that client's node
        conns = [ls.connect(lb.url, backoff=(0.01, 0.1))]
        subs = [c.subscribe(TOPIC, window=None) for c in conns]
        seen: list[list[int]] = [[] for _ in subs]
        for sub, got in zip(subs, seen, strict=True):
            sub.on_update(lambda s, frame, kind, got=got: got.extend(frame["seq"].tolist()))
        await until(lambda: all(s.offset == total for s in subs), timeout=30, what="subscribed")
        for k in range(KILLS):
            victim = x if lb.routed[-1] == x.port else y
            before = [c.stats.connects for c in conns]
            victim.kill()
            ack = await publish(pub, TOPIC, ticks(10, total))  # while they move
            assert ack["offset"] == total
            total += 10
            await until(lambda b=before: all(c.stats.connects > n and c.state == "live"
                                             for c, n in zip(conns, b, strict=True)),
                        timeout=60, what=f"reconnected through the balancer (kill {k})")
            assert lb.routed[-1] != victim.port and conns[0].url == lb.url
            await until(lambda t=total: all(s.offset == t for s in subs), timeout=30,
                        what="caught up on the other node")
            victim.start()
            await victim.wait_ready_async()
        for sub, got in zip(subs, seen, strict=True):
            assert got == list(range(total)) and sub.stats.gaps == 0, sub.gaps
        for c in (*conns, pub):
            c.close()
        await lb.close()

    run(scenario(), timeout=240)
