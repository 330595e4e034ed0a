"""The cluster harness itself: Redis with and without AOF across restarts, nodes that start,
die by SIGKILL and come back on the same port."""

from __future__ import annotations

import pytest
from cluster_util import backplane_connected

pytestmark = pytest.mark.redis


def test_redis_restart_keeps_data_only_with_aof(make_redis):
    import redis

    for appendonly, kept in ((False, None), (True, b"1")):
        server = make_redis(appendonly=appendonly)
        r = redis.Redis.from_url(server.url)
        r.set("k", "1")
        r.close()
        server.kill()
        assert not server.ping()
        server.start()
        r = redis.Redis.from_url(server.url)
        assert r.get("k") == kept, appendonly
        r.close()


def test_nodes_start_ready_die_by_sigkill_and_restart(make_cluster):
    cluster = make_cluster()
    a, b = cluster.start_sync(2)
    assert a.port != b.port
    health = a.health()
    assert backplane_connected(health) and health["backplane"]["kind"] == "redis"
    a.kill()
    assert not a.alive and a.proc.returncode == -9
    with pytest.raises(OSError):
        a.health()
    assert b.ready()
    a.start().wait_ready()
    assert a.starts == 2 and a.ready()
    assert cluster.nodes == [a, b]
