"""``livestream dashboard APP --num-procs 2`` against a 2-node cluster: every session's
connection (``ls.connect([node1, node2])`` in the app) reaches a node, and moves to the
other node when its node is killed."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from cluster_util import free_port, node_env, ticks
from testutil import poll, stop_process

import livestream as ls

pytestmark = pytest.mark.redis

APP = textwrap.dedent('''
    import os

    import livestream as ls

    conn = ls.connect(os.environ["LIVESTREAM_URLS"].split(","), backoff=(0.05, 0.2))
    ticks = conn.subscribe("ticks", window=1000)
    ls.Dashboard([ticks.table(rows=5)], title="Cluster desk").servable()
''')


def test_dashboard_with_num_procs_follows_the_cluster(make_cluster, tmp_path):
    from bokeh.client import pull_session

    cluster = make_cluster()
    a, b = cluster.start_sync(2)
    pub = ls.connect(a.url)
    poll(lambda: pub.state == "live", 30, "publisher connected")
    pub.publish("ticks", ticks(10)).result(30)
    pub.close()
    app = tmp_path / "app.py"
    app.write_text(APP)
    log = tmp_path / "dashboard.log"
    env = {**node_env(), "LIVESTREAM_URLS": f"{a.url},{b.url}"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "livestream.cli", "dashboard", str(app),
                                 "--port", str(free_port()), "--num-procs", "2"],
                                stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    sessions = []
    try:
        def url() -> str | None:
            assert proc.poll() is None, log.read_text()
            m = re.search(r"URL\s+(http://\S+)", log.read_text())
            return m.group(1) if m else None

        page = poll(url, 60, "the dashboard URL")
        sessions = [pull_session(url=page) for _ in range(4)]
        for s in sessions:
            assert s.document.title == "Cluster desk"
        # each session's app connected to the first node; killing it moves them all to b
        poll(lambda: a.health()["connections"] >= 4, 30, "4 sessions connected to a",
             ignore=(OSError,))
        assert b.health()["connections"] == 0
        a.kill()
        poll(lambda: b.health()["connections"] >= 4, 60, "the sessions moved to b",
             ignore=(OSError,))
        assert proc.poll() is None, log.read_text()
    finally:
        for s in sessions:
            s.close()
        stop_process(proc)
