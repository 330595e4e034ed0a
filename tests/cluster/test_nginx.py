"""docs/scaling.md's nginx example, run for real: two nodes behind nginx with that very
configuration (its ``nginx`` block, read from the document; only addresses, ports and TLS
changed for a loopback test). A client on the one proxied URL resumes on the other node when
its node is killed, with nothing lost or repeated; /health answers through the proxy.

Needs Debian's nginx (``nginx-light``; scripts/test installs it): skipped when missing,
failed under CI, like the ``redis`` marker's redis-server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from cluster_util import ROOT, free_port, http_json, publish, run, ticks
from testutil import poll, stop_process, until

import livestream as ls

pytestmark = pytest.mark.redis

TOPIC = "ticks"
KILLS = 3


def find_nginx() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                     else None)
    if path is None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("nginx is required under CI (scripts/test installs nginx-light)",
                        pytrace=False)
        pytest.skip("nginx is not installed")
    return path


def doc_config() -> str:
    """The ``nginx`` block of docs/scaling.md."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/scaling.md should hold one nginx example"
    return blocks[0]


def loopback_config(doc: str, listen: int, a: int, b: int, tmp) -> str:
    """The documented server blocks on loopback ports, without TLS, inside the minimal
    main/events/http context a standalone nginx needs."""
    conf = doc.replace("10.0.0.11:8765", f"127.0.0.1:{a}").replace(
        "10.0.0.12:8765", f"127.0.0.1:{b}")
    assert f"127.0.0.1:{a}" in conf and f"127.0.0.1:{b}" in conf
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen};")
    conf = "\n".join(line for line in conf.splitlines() if "ssl_certificate" not in line)
    temps = "\n".join(f"    {k}_temp_path {tmp}/{k};" for k in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {tmp}/access.log;\n{temps}\n{conf}\n}}\n")


def test_docs_nginx_example_fronts_two_nodes_and_clients_resume(make_cluster, tmp_path):
    nginx = find_nginx()
    cluster = make_cluster()
    extra = ["--allow-host", "live.example.com", "--trusted-proxy", "127.0.0.1"]
    home, x, y = cluster.start_sync(3, extra=extra)  # the flags the document gives
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(loopback_config(doc_config(), port, x.port, y.port, tmp_path))
    check = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        status, health = poll(lambda: http_json(f"http://127.0.0.1:{port}/health"), 30,
                              "nginx answering /health", ignore=(OSError,))
        assert status == 200 and health["backplane"]["connected"] is True
        run(clients_resume_through(f"ws://127.0.0.1:{port}/ws", home, x, y), timeout=240)
    finally:
        stop_process(proc)
        if proc.stderr is not None:
            proc.stderr.close()


async def clients_resume_through(url: str, home, x, y) -> None:
    import asyncio

    pub = ls.connect(home.url, backoff=(0.01, 0.1))
    await pub.wait_live(30)
    await publish(pub, TOPIC, ticks(10))
    total = 10
    conn = ls.connect(url, backoff=(0.01, 0.1))
    sub = conn.subscribe(TOPIC, window=None)
    seen: list[int] = []
    sub.on_update(lambda s, frame, kind: seen.extend(frame["seq"].tolist()))
    await until(lambda: sub.offset == total, timeout=30, what="subscribed through nginx")

    def serving() -> list:
        # the node holding the client's connection (the publisher is on ``home``)
        return [n for n in (x, y) if n.alive and n.health()["connections"] > 0]

    for k in range(KILLS):
        nodes = await asyncio.to_thread(poll, serving, 30, "the client's node", 0.05,
                                        (OSError,))
        assert len(nodes) == 1, nodes
        victim = nodes[0]
        before = conn.stats.connects
        victim.kill()
        ack = await publish(pub, TOPIC, ticks(10, total))
        assert ack["offset"] == total
        total += 10
        await until(lambda b=before: conn.stats.connects > b and conn.state == "live",
                    timeout=60, what=f"reconnected through nginx (kill {k})")
        await until(lambda t=total: sub.offset == t, timeout=30, what="caught up")
        victim.start()
        await victim.wait_ready_async()
    assert seen == list(range(total)) and sub.stats.gaps == 0, sub.gaps
    assert conn.stats.reconnects == KILLS and conn.url == url
    conn.close()
    pub.close()
