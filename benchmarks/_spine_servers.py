"""The three servers the spine benchmark compares, behind one small interface.

``livestream``
    the real thing: ``livestream.serve(port=0)`` on the benchmark's loop,
    ``Server.publish(topic, df)`` (schema check, retained window, offsets,
    encode once per wire encoding, fan-out).
``json`` — baseline (a)
    a hand-written Tornado server: every batch becomes
    ``df.to_json(orient="records")`` once and is sent with
    ``WebSocketHandler.write_message`` to each client.
``arrow`` — baseline (b)
    a raw Tornado server: every batch is encoded once as an Arrow IPC stream
    and sent with ``write_message(payload, binary=True)`` to each client.

The baselines are what a competent person writes in twenty lines: no
schemas, offsets, snapshots, resume, or limits.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pyarrow as pa
import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

import livestream as ls
from livestream.server._tornado_compat import unflushed

SYSTEMS = ("livestream", "json", "arrow")  # every system; the default comparison
LABELS = {
    "livestream": "livestream",
    "json": "(a) tornado + to_json",
    "arrow": "(b) tornado + arrow",
}


def buffered(handler: WebSocketHandler) -> int:
    """Bytes written to ``handler``'s connection and not yet handed to the kernel."""
    conn = handler.ws_connection
    if conn is None or conn.stream is None or conn.stream.closed():
        return 0
    return unflushed(conn.stream)


class Target:
    """A server under test: start, publish batches, report backlog, stop."""

    name = ""
    url = ""

    async def start(self) -> None:
        raise NotImplementedError

    def prepare(self, topic: str, df: pd.DataFrame) -> None:
        """Called before subscribers connect (livestream: fixes the schema)."""

    def subscribers(self, topic: str) -> int:
        raise NotImplementedError

    def handlers(self, topic: str) -> list[WebSocketHandler]:
        raise NotImplementedError

    def backlog(self, topic: str) -> int:
        """The largest per-client unflushed byte count (the publisher's gate)."""
        return max((buffered(h) for h in self.handlers(topic)), default=0)

    def publish(self, topic: str, df: pd.DataFrame) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class LivestreamTarget(Target):
    name = "livestream"

    async def start(self) -> None:
        # on the running loop (the benchmark's), like in a notebook kernel
        self.srv = ls.serve(host="127.0.0.1", port=0)
        self.url = self.srv.url

    def prepare(self, topic: str, df: pd.DataFrame) -> None:
        self.srv.publish(topic, df)

    def handlers(self, topic: str) -> list[WebSocketHandler]:
        return list(self.srv.core.subscribers.get(topic, ()))

    def subscribers(self, topic: str) -> int:
        return sum(1 for h in self.handlers(topic) if h.topics.get(topic) == "live")

    def backlog(self, topic: str) -> int:
        """The largest client queue: written and not yet taken by the socket, and the
        appends held for merging (docs/protocol.md §3.3)."""
        return max((h.unsent() for h in self.handlers(topic)), default=0)

    def publish(self, topic: str, df: pd.DataFrame) -> None:
        self.srv.publish(topic, df)

    async def stop(self) -> None:
        await self.srv.aclose()


class _Hub:
    def __init__(self) -> None:
        self.clients: set[WebSocketHandler] = set()


class _BroadcastHandler(WebSocketHandler):
    def initialize(self, hub: _Hub) -> None:
        self.hub = hub

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        self.hub.clients.add(self)

    def on_close(self) -> None:
        self.hub.clients.discard(self)

    def on_message(self, message: str | bytes) -> None:
        pass


class _TornadoBaseline(Target):
    binary = False

    async def start(self) -> None:
        self.hub = _Hub()
        app = tornado.web.Application([(r"/ws", _BroadcastHandler, {"hub": self.hub})])
        self.http = tornado.httpserver.HTTPServer(app)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.http.add_sockets(sockets)
        self.url = f"ws://127.0.0.1:{sockets[0].getsockname()[1]}/ws"

    def handlers(self, topic: str) -> list[WebSocketHandler]:
        return list(self.hub.clients)

    def subscribers(self, topic: str) -> int:
        return len(self.hub.clients)

    def encode(self, df: pd.DataFrame) -> str | bytes:
        raise NotImplementedError

    def publish(self, topic: str, df: pd.DataFrame) -> None:
        payload = self.encode(df)
        for h in list(self.hub.clients):
            try:
                h.write_message(payload, binary=self.binary)
            except WebSocketClosedError:
                self.hub.clients.discard(h)

    async def stop(self) -> None:
        for h in list(self.hub.clients):
            h.close()
        self.http.stop()
        for _ in range(100):
            if not self.hub.clients:
                break
            await asyncio.sleep(0.01)
        await self.http.close_all_connections()


class JsonBaseline(_TornadoBaseline):
    """(a) ``df.to_json(orient="records")`` once per batch, ``write_message`` per client."""

    name = "json"
    binary = False

    def encode(self, df: pd.DataFrame) -> str:
        return df.to_json(orient="records")


class ArrowBaseline(_TornadoBaseline):
    """(b) Arrow IPC stream bytes encoded once per batch, ``write_message`` per client."""

    name = "arrow"
    binary = True

    def encode(self, df: pd.DataFrame) -> bytes:
        table = pa.Table.from_pandas(df, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()


def make_target(name: str) -> Target:
    return {"livestream": LivestreamTarget, "json": JsonBaseline, "arrow": ArrowBaseline}[name]()
