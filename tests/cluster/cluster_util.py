"""A local livestream cluster for the multi-node tests: one real ``redis-server`` (the
``make_redis`` fixture of tests/conftest.py) and N ``livestream serve --backplane redis://…``
subprocesses on free loopback ports.

Readiness is decided by polling each node's ``GET /health`` with a deadline, never by
sleeping. Nodes are killed with SIGKILL (a crash) or stopped with SIGTERM; the ``cluster``
fixture (tests/cluster/conftest.py) kills whatever is left after each test. Each node's
stdout and stderr go to a log file that failing assertions quote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testutil import poll, stop_process

ROOT = Path(__file__).resolve().parents[2]

#: How long a node may take to start and connect to Redis (two shared cores, under load).
READY_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    """``GET url`` → (status, decoded JSON body or None). Connection errors raise OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, None


def backplane_connected(health: Any) -> bool:
    """Whether a ``/health`` body says the node's Redis backplane is connected."""
    bp = health.get("backplane") if isinstance(health, dict) else None
    return isinstance(bp, dict) and bp.get("connected") is True


def node_env() -> dict[str, str]:
    """The environment of a node: this checkout first on the path, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESTREAM_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    return env


class Node:
    """One ``livestream serve --backplane REDIS_URL`` subprocess on a fixed loopback port
    (kept across restarts, so clients can come back to the same URL)."""

    def __init__(self, name: str, backplane: str, workdir: Path,
                 extra: Sequence[str] = ()) -> None:
        self.name = name
        self.backplane = backplane
        self.port = free_port()
        self.extra = list(extra)
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        state = "running" if self.alive else "down"
        return f"<Node {self.name} :{self.port} {state}>"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "livestream.cli", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--backplane", self.backplane,
                "--log-level", "info", *self.extra]

    def start(self) -> Node:
        """Start the process (not waiting for it: see :meth:`wait_ready`)."""
        if self.alive:
            return self
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=node_env(), cwd=ROOT)
        return self

    def health(self) -> Any:
        """The node's ``/health`` body (raises OSError when it does not answer)."""
        status, body = http_json(f"{self.http_url}/health", timeout=2.0)
        if status != 200:
            raise OSError(f"/health answered {status}: {body}")
        return body

    def ready(self) -> bool:
        """Answers /health with the backplane connected. Raises if the process ended."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}:\n"
                               f"{self.log_tail()}")
        try:
            return backplane_connected(self.health())
        except OSError:
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Node:
        """Block until :meth:`ready` (a deadline, polled)."""
        try:
            poll(self.ready, timeout, f"node {self.name} ready on :{self.port}", step=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    async def wait_ready_async(self, timeout: float = READY_TIMEOUT) -> Node:
        """:meth:`wait_ready` from a coroutine, without blocking the test's loop."""
        return await asyncio.to_thread(self.wait_ready, timeout)

    def kill(self) -> None:
        """SIGKILL: the node dies at once, no close frames, no cleanup."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL if it lingers); the exit code."""
        proc = self.proc
        if proc is None:
            return None
        stop_process(proc, timeout)
        return proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return f"--- {self.name} log (last {lines} lines):\n" + "\n".join(
            text.splitlines()[-lines:])


class Cluster:
    """Nodes sharing one Redis. ``await cluster.start(n)`` starts n nodes and waits for all."""

    def __init__(self, redis: Any, workdir: Path) -> None:
        self.redis = redis
        self.workdir = workdir
        self.nodes: list[Node] = []

    def node(self, extra: Sequence[str] = ()) -> Node:
        """A new node (not started)."""
        node = Node(f"node{len(self.nodes)}", self.redis.url, self.workdir, extra)
        self.nodes.append(node)
        return node

    def start_sync(self, n: int, extra: Sequence[str] = ()) -> list[Node]:
        nodes = [self.node(extra).start() for _ in range(n)]
        for node in nodes:
            node.wait_ready()
        return nodes

    async def start(self, n: int, extra: Sequence[str] = ()) -> list[Node]:
        return await asyncio.to_thread(self.start_sync, n, extra)

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):  # cleanup goes on for the others
                node.kill()

    def logs(self) -> str:
        return "\n".join(node.log_tail() for node in self.nodes)


# -- helpers for the scenarios ---------------------------------------------------------------


def run(coro: Any, timeout: float) -> Any:
    """Run a scenario coroutine on a fresh event loop, bounded by ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ticks(n: int, start: int = 0, source: int = 0) -> Any:
    """``n`` rows whose ``seq`` numbers them from ``start``; ``source`` tells publishers apart."""
    import numpy as np
    import pandas as pd

    seq = np.arange(start, start + n, dtype=np.int64)
    return pd.DataFrame({"source": np.full(n, source, dtype=np.int64), "seq": seq,
                         "price": 100.0 + seq * 0.01})


async def publish(conn: Any, topic: str, df: Any, timeout: float = 30.0) -> dict:
    """Publish once and await the ack (bounded: a lost reply fails the test, never hangs)."""
    return await asyncio.wait_for(asyncio.ensure_future(conn.publish(topic, df)), timeout)


async def publish_when_back(conn: Any, topic: str, df: Any, timeout: float = 60.0,
                            retry_codes: tuple[str, ...] = ("backplane_unavailable",)) -> dict:
    """Publish ``df``, retrying while the server answers that the backplane is unavailable
    (so nothing was written) or while the publisher is reconnecting; fails after ``timeout``."""
    from livestream.errors import ConnectionClosed, RemoteError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await publish(conn, topic, df, timeout=max(1.0, deadline - loop.time()))
        except RemoteError as exc:
            if exc.code not in retry_codes or loop.time() > deadline:
                raise
        except ConnectionClosed:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.05)  # retry pacing, not synchronisation


class Balancer:
    """A minimal TCP load balancer on the test's loop: each accepted connection goes to the
    next upstream in turn that accepts it (a refused one is skipped), bytes are piped both
    ways, and when either side closes, so does the other. Stands in for nginx/HAProxy in
    front of a cluster (clients use its one URL)."""

    def __init__(self, upstreams: Sequence[int]) -> None:
        self.upstreams = list(upstreams)
        self.port = 0
        self._next = 0
        self._server: asyncio.AbstractServer | None = None
        #: upstream port of every connection made, in order
        self.routed: list[int] = []
        self._links: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> Balancer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.upstreams)):
            port = self.upstreams[self._next % len(self.upstreams)]
            self._next += 1
            try:
                up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.routed.append(port)
            self._links |= {writer, up_w}
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
            return
        writer.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(dst)
            with contextlib.suppress(Exception):
                dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._links):
            with contextlib.suppress(Exception):
                w.close()
