"""A fake public feed for tests: a real Tornado WebSocket server on loopback.

It behaves like the exchange and chat feeds analysts point notebooks at:

* nothing is sent until the client subscribes (``{"op": "subscribe", "channel": "trades"}``);
  the feed then acknowledges (``{"event": "subscribed", "channel": ...}``), or
  answers ``{"event": "error", ...}`` for an unknown channel;
* trade messages carry several records, numbers as strings and epoch-ms times:
  ``{"channel": "trades", "data": [{"seq": "1", "px": "101.5", "qty": 3, "ts": 1700000000123, "sym": "BTC"}, ...]}``;
* application pings (``{"op": "ping", "id": n}``) that expect ``{"op": "pong", "id": n}``;
* server-initiated disconnects, and stalls (the socket stays open, nothing is sent).

Every handler records what it saw (headers, cookies, query, subprotocol, pongs,
WebSocket pings, app heartbeats) for assertions.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import orjson
import tornado.web
import tornado.websocket


class FeedHandler(tornado.websocket.WebSocketHandler):
    feed: FakeExchange

    def initialize(self, feed: FakeExchange) -> None:
        self.feed = feed
        self.channels: set[str] = set()
        self.stalled = False

    def check_origin(self, origin: str) -> bool:
        return True

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        self.feed.subprotocols_offered.append(list(subprotocols))
        for p in subprotocols:
            if p in self.feed.accept_subprotocols:
                return p
        return None

    def get(self, *args: Any, **kwargs: Any) -> Any:
        f = self.feed
        if f.require_token is not None and self.get_query_argument("token", None) != f.require_token:
            self.set_status(401)
            self.finish("bad token")
            return None
        return super().get(*args, **kwargs)

    def open(self, *args: str) -> None:
        f = self.feed
        f.handshakes.append({
            "headers": dict(self.request.headers),
            "cookies": {k: v.value for k, v in self.request.cookies.items()},
            "query": {k: self.get_query_argument(k) for k in self.request.query_arguments},
            "subprotocol": self.selected_subprotocol,
        })
        f.clients.add(self)
        if f.greeting is not None:
            self.write_message(f.greeting)
        if f.refuse is not None:
            message, code = f.refuse
            self.write_message(message)
            self.close(code)

    def on_message(self, message: str | bytes) -> None:
        f = self.feed
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            f.received_text.append(message)
            return
        f.received.append(msg)
        op = msg.get("op") if isinstance(msg, dict) else None
        if f.refuse is not None:
            return
        if op == "subscribe":
            ch = msg.get("channel")
            if ch in f.known_channels:
                self.channels.add(ch)
                f.subscribes += 1
                if f.ack:
                    self.write_message({"event": "subscribed", "channel": ch})
            else:
                self.write_message({"event": "error", "msg": f"unknown channel {ch!r}"})
        elif op == "pong":
            f.pongs.append(msg.get("id"))
        elif op == "hb":
            f.heartbeats += 1
            if f.answer_heartbeats:  # even while stalled: the connection looks alive
                self.write_message({"event": "hb_ack"})

    def on_ping(self, data: bytes) -> None:
        self.feed.ws_pings += 1

    def on_close(self) -> None:
        self.feed.clients.discard(self)
        self.feed.closes.append((self.close_code, self.close_reason))


class FakeExchange:
    """Start with ``await feed.start()`` (or ``feed.start_sync()`` on a running loop)."""

    def __init__(self, *, ack: bool = True, ssl_ctx: ssl.SSLContext | None = None,
                 greeting: Any = None, require_token: str | None = None,
                 accept_subprotocols: tuple[str, ...] = (), answer_heartbeats: bool = False,
                 refuse: tuple[Any, int] | None = None) -> None:
        self.ack = ack
        self.ssl_ctx = ssl_ctx
        self.greeting = greeting
        self.require_token = require_token
        self.accept_subprotocols = accept_subprotocols
        #: reply ``{"event": "hb_ack"}`` to ``{"op": "hb"}``, also while stalled
        self.answer_heartbeats = answer_heartbeats
        #: ``(message, close code)``: send it on open, then close (a feed refusing us)
        self.refuse = refuse
        self.known_channels = {"trades", "chat"}
        self.clients: set[FeedHandler] = set()
        self.handshakes: list[dict] = []
        self.received: list[Any] = []
        self.received_text: list[Any] = []
        self.subprotocols_offered: list[list[str]] = []
        self.closes: list[tuple] = []
        self.pongs: list[Any] = []
        self.subscribes = 0
        self.heartbeats = 0
        self.ws_pings = 0
        self.seq = 0
        self._server: Any = None
        self.port = 0

    async def start(self) -> FakeExchange:
        app = tornado.web.Application([(r"/ws", FeedHandler, {"feed": self})])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = tornado.httpserver.HTTPServer(app, ssl_options=self.ssl_ctx)
        self._server.add_sockets([sock])
        return self

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_ctx is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/ws"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            for c in list(self.clients):
                c.close()
            await self._server.close_all_connections()

    # -- behaviour -------------------------------------------------------------------------

    def subscribed(self, channel: str = "trades") -> list[FeedHandler]:
        return [c for c in self.clients if channel in c.channels and not c.stalled]

    def send_trades(self, n_messages: int, per_message: int = 3, channel: str = "trades") -> int:
        """Send ``n_messages`` trade messages of ``per_message`` records each; returns rows sent."""
        rows = 0
        targets = self.subscribed(channel)
        for _ in range(n_messages):
            data = []
            for _ in range(per_message):
                s = self.seq
                self.seq += 1
                data.append({"seq": str(s), "px": f"{100 + s % 50}.5", "qty": s % 7,
                             "ts": 1_700_000_000_000 + s, "sym": "BTC" if s % 2 else "ETH"})
            payload = orjson.dumps({"channel": channel, "data": data}).decode()
            for c in targets:
                c.write_message(payload)
            rows += per_message
        return rows

    def send_raw(self, text: str | dict) -> None:
        for c in list(self.clients):
            if not c.stalled:
                c.write_message(text)

    def ping_clients(self, ident: int) -> None:
        self.send_raw({"op": "ping", "id": ident})

    def disconnect_all(self, code: int = 1001, reason: str = "maintenance") -> None:
        for c in list(self.clients):
            c.close(code, reason)

    def stall_all(self) -> None:
        """Go silent on every open connection without closing it."""
        for c in list(self.clients):
            c.stalled = True


async def stop_soon(feed: FakeExchange) -> None:
    await feed.stop()
    await asyncio.sleep(0)
