"""``livestream demo --backplane redis://…`` publishes its topics into a cluster: a plain
``livestream serve`` node on the same Redis serves them, growing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cluster_util import free_port, http_json, node_env
from testutil import poll, stop_process

from livestream.demo import DEMO_TOPICS

pytestmark = pytest.mark.redis


def test_demo_on_redis_feeds_another_node(make_cluster, tmp_path):
    cluster = make_cluster()
    (node,) = cluster.start_sync(1)
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "livestream.cli", "demo", "--port",
                                 str(free_port()), "--backplane", cluster.redis.url,
                                 "--duration", "120"], stdout=out, stderr=subprocess.STDOUT,
                                env=node_env(), stdin=subprocess.DEVNULL)
    try:
        expected = {t for topics in DEMO_TOPICS.values() for t in topics}

        def offsets() -> dict[str, int] | None:
            assert demo.poll() is None, log.read_text()
            status, body = http_json(f"{node.http_url}/topics")
            got = {t["name"]: t["next_offset"] for t in body["topics"]} if status == 200 else {}
            return got if expected <= set(got) else None

        first = poll(offsets, 60, "the demo's topics on the other node", ignore=(OSError,))
        poll(lambda: all(o > first[n] for n, o in offsets().items() if n in ("trades", "chat")),
             60, "the demo's topics growing on the other node", ignore=(OSError,))
    finally:
        stop_process(demo)
