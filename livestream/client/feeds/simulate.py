"""A simulated public exchange feed, for notebooks, demos and docs (no internet needed).

It speaks like real exchange WebSocket APIs do, so examples written against it
carry over:

* nothing is sent until the client subscribes:
  ``{"type": "subscribe", "channels": ["ticker", "trades"], "product_ids": ["BTC-USD"]}``,
  answered by ``{"type": "subscriptions", "channels": [...]}`` (or
  ``{"type": "error", "message": ...}`` for an unknown channel);
* ``ticker`` messages: one per product per tick, prices as strings, ISO-8601 times::

      {"type": "ticker", "product_id": "BTC-USD", "price": "43012.55",
       "best_bid": "43012.50", "best_ask": "43012.60", "time": "2024-05-01T12:00:00.123456Z"}

* ``trades`` messages with several records and epoch-millisecond times::

      {"type": "trades", "data": [{"p": "43012.5", "q": "0.013", "T": 1714564800123,
                                    "side": "buy", "product_id": "BTC-USD"}, ...]}

* an application-level ``{"type": "ping", "id": n}`` every ``ping_every`` seconds,
  answered with ``{"type": "pong", "id": n}`` by polite clients.

Start it with :func:`start_simulated_exchange` (on the running loop, e.g. a
notebook's, or livestream's background loop in a script).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import socket
from typing import Any

import orjson
import tornado.httpserver
import tornado.web
import tornado.websocket

from ...loop import get_loop, run_in_loop

PRODUCTS = {"BTC-USD": 43_000.0, "ETH-USD": 2_300.0, "SOL-USD": 140.0}
CHANNELS = ("ticker", "trades")


class _Handler(tornado.websocket.WebSocketHandler):
    def initialize(self, exchange: SimulatedExchange) -> None:
        self.exchange = exchange
        self.channels: set[str] = set()
        self.products: set[str] = set()

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.exchange.clients.add(self)

    def on_message(self, message: str | bytes) -> None:
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            self.write_message({"type": "error", "message": "messages must be JSON"})
            return
        if not isinstance(msg, dict):
            return
        if msg.get("type") == "subscribe":
            channels = msg.get("channels") or []
            bad = [c for c in channels if c not in CHANNELS]
            if bad or not channels:
                self.write_message({"type": "error", "message": f"unknown channels {bad}"})
                return
            products = msg.get("product_ids") or list(PRODUCTS)
            self.channels.update(channels)
            self.products.update(p for p in products if p in PRODUCTS)
            self.exchange.subscribes += 1
            self.write_message({"type": "subscriptions", "channels": sorted(self.channels),
                                "product_ids": sorted(self.products)})
        elif msg.get("type") == "pong":
            self.exchange.pongs += 1

    def on_close(self) -> None:
        self.exchange.clients.discard(self)


class SimulatedExchange:
    """A running simulated exchange (see the module docstring). ``url`` to connect to."""

    def __init__(self, rate: float, ping_every: float, seed: int | None) -> None:
        self.rate = rate
        self.ping_every = ping_every
        self.rng = random.Random(seed)
        self.prices = dict(PRODUCTS)
        self.clients: set[_Handler] = set()
        self.subscribes = 0
        self.pongs = 0
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._ping_id = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def __repr__(self) -> str:
        return f"<SimulatedExchange {self.url} clients={len(self.clients)}>"

    def _start(self) -> None:
        app = tornado.web.Application([(r"/ws", _Handler, {"exchange": self})])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = tornado.httpserver.HTTPServer(app)
        self._server.add_sockets([sock])
        self._tasks = [asyncio.ensure_future(self._tick()), asyncio.ensure_future(self._pings())]

    def _send(self, channel: str, product: str, msg: Any) -> None:
        text = orjson.dumps(msg).decode()
        for c in list(self.clients):
            if channel in c.channels and product in c.products:
                with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                    c.write_message(text)

    async def _tick(self) -> None:
        interval = 1.0 / self.rate
        while True:
            await asyncio.sleep(interval)
            now = dt.datetime.now(dt.timezone.utc)
            ms = int(now.timestamp() * 1000)
            for product in self.prices:
                p = self.prices[product] * (1 + self.rng.gauss(0, 0.0005))
                self.prices[product] = p
                spread = p * 0.00002
                self._send("ticker", product, {
                    "type": "ticker", "product_id": product, "price": f"{p:.2f}",
                    "best_bid": f"{p - spread:.2f}", "best_ask": f"{p + spread:.2f}",
                    "time": now.isoformat().replace("+00:00", "Z"),
                })
                trades = [
                    {"p": f"{p * (1 + self.rng.gauss(0, 0.0001)):.2f}",
                     "q": f"{self.rng.expovariate(20):.4f}", "T": ms + i,
                     "side": self.rng.choice(("buy", "sell")), "product_id": product}
                    for i in range(self.rng.randint(1, 4))
                ]
                self._send("trades", product, {"type": "trades", "data": trades})

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(self.ping_every)
            self._ping_id += 1
            for c in list(self.clients):
                if c.channels:
                    with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                        c.write_message({"type": "ping", "id": self._ping_id})

    def send_junk(self) -> None:
        """Send what real feeds sometimes send: a broken frame and an unparseable ticker."""
        def send() -> None:
            for c in list(self.clients):
                if c.channels:
                    c.write_message('{"type": "ticker", "price": ')
                    c.write_message({"type": "ticker", "product_id": "BTC-USD", "price": "n/a",
                                     "time": "2024-05-01T12:00:00Z"})
        assert self.loop is not None
        run_in_loop(self.loop, send)

    def disconnect_all(self) -> None:
        """Drop every client (as exchanges do during maintenance)."""
        def drop() -> None:
            for c in list(self.clients):
                c.close(1001, "maintenance")
        assert self.loop is not None
        run_in_loop(self.loop, drop)

    def close(self) -> None:
        """Stop the feed and drop its clients."""
        def stop() -> None:
            for t in self._tasks:
                t.cancel()
            if self._server is not None:
                self._server.stop()
            for c in list(self.clients):
                c.close(1001, "shutting down")
        assert self.loop is not None
        run_in_loop(self.loop, stop)


def start_simulated_exchange(port: int = 0, *, rate: float = 10.0, ping_every: float = 5.0,
                             seed: int | None = None) -> SimulatedExchange:
    """Start a simulated exchange feed on ``127.0.0.1:port`` (0 = a free port).

    ``rate``: ticks per second (each tick: one ticker and one trades message per
    product). Runs on the running loop, or livestream's background loop.
    """
    if rate <= 0 or ping_every <= 0:
        raise ValueError("rate and ping_every must be positive")
    ex = SimulatedExchange(rate, ping_every, seed)
    ex.port = port
    loop, _ = get_loop()
    ex.loop = loop
    run_in_loop(loop, ex._start)
    return ex
