"""Simulated live feeds for the three use cases livestream is built for.

Each simulator is a plain, seedable generator of pandas DataFrames with no I/O,
so notebooks, the dashboard, benchmarks and tests can reuse them::

    from livestream.demo import TradesSim, ChatSim, GameSim
    trades = TradesSim(seed=1)
    trades.batch(100)          # ts, symbol, price, size, side
    trades.quotes()            # the latest bid/ask/last per symbol

:func:`run_demo_feeds` wires them to a running server (``livestream demo`` uses
it): it declares the demo topics and publishes on the server's own event loop
at a steady rate until stopped.

Demo topics (:data:`DEMO_TOPICS`):

============  ======================  ===============================================
topic         kind                    columns
============  ======================  ===============================================
``trades``    append                  ts, symbol, price, size, side
``quotes``    keyed by ``symbol``     symbol, bid, ask, last, ts
``bars_1s``   derived, keyed          ts, symbol, open, high, low, close, volume
              by ``ts`` + ``symbol``  (1-second OHLC bars of ``trades``)
``chat``      append                  ts, room, user, text
``telemetry`` append                  ts, player, x, y, hp
``scores``    keyed by ``player``     player, score, kills, deaths, ts
============  ======================  ===============================================
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .server.app import Server

__all__ = [
    "DEMO_TOPICS",
    "ChatSim",
    "DemoFeeds",
    "GameSim",
    "TradesSim",
    "demo_dashboard",
    "ohlc_bars",
    "run_demo_feeds",
]

#: The topics ``run_demo_feeds`` creates, by use case.
DEMO_TOPICS: dict[str, tuple[str, ...]] = {
    "trading": ("trades", "quotes", "bars_1s"),
    "chat": ("chat",),
    "game": ("telemetry", "scores"),
}

DEFAULT_SYMBOLS: tuple[str, ...] = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA")
DEFAULT_ROOMS: tuple[str, ...] = ("general", "markets", "random", "support")
DEFAULT_USERS: tuple[str, ...] = (
    "ada", "alan", "grace", "linus", "guido", "barbara", "ken", "margaret", "dennis", "edsger",
)
DEFAULT_PLAYERS: tuple[str, ...] = ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8")

_WORDS: tuple[str, ...] = (
    "buy", "sell", "hold", "price", "moon", "dip", "rally", "lag", "ping", "gg", "nice", "lol",
    "ok", "yes", "no", "maybe", "later", "chart", "live", "stream", "data", "window", "update",
    "market", "open", "close", "bid", "ask", "spread", "volume", "team", "push", "defend",
    "heal", "respawn", "map", "score", "round", "win", "lose", "draw",
)

Clock = Callable[[], pd.Timestamp]


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp(time.time_ns(), unit="ns", tz="UTC")


def _timestamps(last: pd.Timestamp | None, now: pd.Timestamp, n: int) -> pd.DatetimeIndex:
    """``n`` increasing timestamps spread over ``(last, now]`` (all ``now`` on the first call)."""
    if n == 0:
        return pd.DatetimeIndex([], dtype="datetime64[ns, UTC]")
    if last is None or last >= now:
        start = now - pd.Timedelta(microseconds=n)
        last = start
    span = (now - last).value
    steps = np.arange(1, n + 1, dtype=np.int64) * span // n
    return pd.DatetimeIndex(last.value + steps, tz="UTC").as_unit("ns")


@dataclass(kw_only=True)
class _Sim:
    seed: int | None = None
    clock: Clock = field(default=_utc_now, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._last: pd.Timestamp | None = None

    def _times(self, n: int, now: pd.Timestamp | None) -> pd.DatetimeIndex:
        now = self.clock() if now is None else pd.Timestamp(now)
        if now.tzinfo is None:
            now = now.tz_localize("UTC")
        ts = _timestamps(self._last, now, n)
        if n:
            self._last = ts[-1]
        return ts


@dataclass(kw_only=True)
class TradesSim(_Sim):
    """Trades on a desk: random-walk prices per symbol, random sizes and sides.

    ``batch(n)`` returns ``n`` trades (``ts`` UTC, ``symbol``, ``price``,
    ``size``, ``side``) with timestamps spread since the previous batch;
    :meth:`quotes` the latest bid/ask/last of every symbol.
    """

    symbols: Sequence[str] = DEFAULT_SYMBOLS
    start_price: float = 100.0
    volatility: float = 0.0005
    spread: float = 0.0002

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.symbols:
            raise ValueError("TradesSim needs at least one symbol")
        self.symbols = tuple(self.symbols)
        self.prices = self.start_price * np.exp(self.rng.normal(0, 0.3, len(self.symbols)))
        self._last_ts = [pd.NaT] * len(self.symbols)

    def batch(self, n: int, now: pd.Timestamp | None = None) -> pd.DataFrame:
        """``n`` new trades."""
        ts = self._times(n, now)
        idx = self.rng.integers(0, len(self.symbols), n)
        steps = self.rng.normal(0.0, self.volatility, n)
        price = np.empty(n)
        for i, (s, r) in enumerate(zip(idx, steps, strict=True)):
            self.prices[s] *= float(np.exp(r))
            price[i] = self.prices[s]
            self._last_ts[s] = ts[i]
        return pd.DataFrame({
            "ts": ts,
            "symbol": pd.array(np.asarray(self.symbols, dtype=object)[idx], dtype=object),
            "price": np.round(price, 4),
            "size": (self.rng.pareto(2.0, n) * 100 + 1).astype(np.int64),
            "side": np.where(self.rng.random(n) < 0.5, "buy", "sell").astype(object),
        })

    def quotes(self) -> pd.DataFrame:
        """The current quote of every symbol (for a topic keyed by ``symbol``)."""
        last = np.round(self.prices, 4)
        half = last * self.spread / 2
        now = self._last if self._last is not None else self.clock()
        ts = [t if t is not pd.NaT else now for t in self._last_ts]
        return pd.DataFrame({
            "symbol": np.asarray(self.symbols, dtype=object),
            "bid": np.round(last - half, 4),
            "ask": np.round(last + half, 4),
            "last": last,
            "ts": pd.DatetimeIndex(ts).as_unit("ns"),
        })


@dataclass(kw_only=True)
class ChatSim(_Sim):
    """Chat messages in rooms: ``ts``, ``room``, ``user``, ``text``.

    Rooms are unevenly busy (the first room gets the most traffic), so a chart of
    messages per room per second has some shape.
    """

    rooms: Sequence[str] = DEFAULT_ROOMS
    users: Sequence[str] = DEFAULT_USERS

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rooms or not self.users:
            raise ValueError("ChatSim needs at least one room and one user")
        self.rooms, self.users = tuple(self.rooms), tuple(self.users)
        w = 1.0 / np.arange(1, len(self.rooms) + 1)
        self._room_p = w / w.sum()

    def _text(self) -> str:
        k = int(self.rng.integers(1, 9))
        return " ".join(self.rng.choice(_WORDS, k))

    def batch(self, n: int, now: pd.Timestamp | None = None) -> pd.DataFrame:
        """``n`` new messages."""
        ts = self._times(n, now)
        rooms = self.rng.choice(len(self.rooms), n, p=self._room_p)
        users = self.rng.integers(0, len(self.users), n)
        return pd.DataFrame({
            "ts": ts,
            "room": np.asarray(self.rooms, dtype=object)[rooms],
            "user": np.asarray(self.users, dtype=object)[users],
            "text": np.asarray([self._text() for _ in range(n)], dtype=object),
        })


@dataclass(kw_only=True)
class GameSim(_Sim):
    """Game telemetry: players moving on a 100×100 map, losing and regaining hp.

    ``batch(n)`` gives position samples (``ts``, ``player``, ``x``, ``y``,
    ``hp``); a player whose hp reaches 0 dies, respawns, and the last player to
    hit them scores. :meth:`scores` is the scoreboard (keyed by ``player``).
    """

    players: Sequence[str] = DEFAULT_PLAYERS
    size: float = 100.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.players:
            raise ValueError("GameSim needs at least one player")
        self.players = tuple(self.players)
        p = len(self.players)
        self.pos = self.rng.uniform(0, self.size, (p, 2))
        self.vel = self.rng.normal(0, 1, (p, 2))
        self.hp = np.full(p, 100, dtype=np.int64)
        self.score = np.zeros(p, dtype=np.int64)
        self.kills = np.zeros(p, dtype=np.int64)
        self.deaths = np.zeros(p, dtype=np.int64)

    def batch(self, n: int, now: pd.Timestamp | None = None) -> pd.DataFrame:
        """``n`` new telemetry samples."""
        ts = self._times(n, now)
        who = self.rng.integers(0, len(self.players), n)
        xs, ys, hps = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64)
        for i, p in enumerate(who):
            self.vel[p] = 0.9 * self.vel[p] + self.rng.normal(0, 0.5, 2)
            self.pos[p] = np.clip(self.pos[p] + self.vel[p], 0.0, self.size)
            if self.rng.random() < 0.2:  # hit by someone else
                hitter = int(self.rng.integers(0, len(self.players)))
                if hitter != p:
                    self.hp[p] -= int(self.rng.integers(5, 30))
                    self.score[hitter] += 1
                    if self.hp[p] <= 0:
                        self.kills[hitter] += 1
                        self.score[hitter] += 10
                        self.deaths[p] += 1
                        self.hp[p] = 100
                        self.pos[p] = self.rng.uniform(0, self.size, 2)
            elif self.hp[p] < 100:
                self.hp[p] = min(100, self.hp[p] + 1)
            xs[i], ys[i] = np.round(self.pos[p], 3)
            hps[i] = self.hp[p]
        return pd.DataFrame({
            "ts": ts,
            "player": np.asarray(self.players, dtype=object)[who],
            "x": xs,
            "y": ys,
            "hp": hps,
        })

    def scores(self) -> pd.DataFrame:
        """The scoreboard: one row per player."""
        now = self._last if self._last is not None else self.clock()
        return pd.DataFrame({
            "player": np.asarray(self.players, dtype=object),
            "score": self.score.copy(),
            "kills": self.kills.copy(),
            "deaths": self.deaths.copy(),
            "ts": pd.DatetimeIndex([now] * len(self.players)).as_unit("ns"),
        })


_BAR_COLUMNS = ["ts", "symbol", "open", "high", "low", "close", "volume"]


def ohlc_bars(window: pd.DataFrame, freq: str = "1s", last_bars: int = 5) -> pd.DataFrame:
    """OHLC bars per symbol of a trades window (``ts``, ``symbol``, ``price``, ``size``).

    Only the bars of the last ``last_bars`` periods are returned: older bars no
    longer change, and the oldest rows of a rolling window would give a partial
    (wrong) bar. Used as the function of the derived ``bars_1s`` topic, keyed by
    ``ts`` + ``symbol`` so only bars that changed are streamed.
    """
    if window.empty:
        return pd.DataFrame({
            "ts": pd.DatetimeIndex([], tz="UTC").as_unit("ns"),
            "symbol": pd.Series([], dtype=object), "open": pd.Series([], dtype=float),
            "high": pd.Series([], dtype=float), "low": pd.Series([], dtype=float),
            "close": pd.Series([], dtype=float), "volume": pd.Series([], dtype=np.int64),
        })
    bar = window["ts"].dt.floor(freq)
    keep = bar >= bar.max() - (last_bars - 1) * pd.Timedelta(freq)
    w = window.loc[keep.to_numpy(), ["symbol", "price", "size"]].assign(ts=bar[keep])
    g = w.groupby(["ts", "symbol"], sort=True, observed=True)
    out = g["price"].agg(["first", "max", "min", "last"])
    out.columns = ["open", "high", "low", "close"]
    out["volume"] = g["size"].sum().astype(np.int64)
    out = out.reset_index()
    out["symbol"] = out["symbol"].astype(object)
    return out[_BAR_COLUMNS]


class DemoFeeds:
    """Publishes the simulators into a server at a steady rate, on the server's loop.

    Create with :func:`run_demo_feeds`. ``rate`` is rows per second *per feed*
    (trades, chat and telemetry each); ``quotes`` and ``scores`` are upserted
    on every tick. :meth:`stop` is safe from any thread.
    """

    def __init__(self, server: Server, rate: float = 200.0, *, interval: float = 0.1,
                 seed: int | None = None, feeds: Sequence[str] = ("trading", "chat", "game"),
                 ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (rows per second per feed)")
        if interval <= 0:
            raise ValueError("interval must be positive (seconds)")
        unknown = set(feeds) - set(DEMO_TOPICS)
        if unknown:
            raise ValueError(f"unknown demo feeds {sorted(unknown)}; choose from "
                             f"{sorted(DEMO_TOPICS)}")
        self.server = server
        self.rate = float(rate)
        self.interval = float(interval)
        self.feeds = tuple(feeds)
        ss = np.random.SeedSequence(seed)
        s1, s2, s3 = (int(s.generate_state(1)[0]) for s in ss.spawn(3))
        self.trades = TradesSim(seed=s1)
        self.chat = ChatSim(seed=s2)
        self.game = GameSim(seed=s3)
        self.ticks = 0
        self.rows = 0
        self.errors = 0
        self._carry = 0.0
        self._last: float | None = None
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False
        self._starting: asyncio.Future | None = None

    @property
    def topics(self) -> list[str]:
        """The topics this feed publishes to."""
        return [t for f in self.feeds for t in DEMO_TOPICS[f]]

    def _setup(self) -> list:
        """Declare the topics; returns what to await (a shared backplane's writes)."""
        srv = self.server
        out = []
        if "trading" in self.feeds:
            out.append(srv.topic("trades"))
            out.append(srv.topic("quotes", key="symbol"))
            out.append(srv.derive("bars_1s", "trades", ohlc_bars, key=("ts", "symbol"),
                                  rate=4.0, window=20_000))
        if "chat" in self.feeds:
            out.append(srv.topic("chat"))
        if "game" in self.feeds:
            out.append(srv.topic("telemetry"))
            out.append(srv.topic("scores", key="player"))
        return [r for r in out if inspect.isawaitable(r)]

    def start(self) -> DemoFeeds:
        """Declare the topics, publish a first batch and keep publishing."""
        from .loop import run_in_loop

        def begin() -> None:
            self._last = asyncio.get_running_loop().time()
            self._publish(max(1, round(self.rate * self.interval)))
            self._due = self._last + self.interval
            self._handle = asyncio.get_running_loop().call_at(self._due, self._tick)

        def go() -> Any:
            waits = self._setup()
            if not waits:
                begin()
                return None

            async def declared() -> None:  # a shared backplane (Redis): await the topics
                for w in waits:
                    await w
                begin()
            return declared()

        started = run_in_loop(self.server.loop, go)
        if started is not None:  # on the server's own loop: declare in the background
            self._starting = asyncio.ensure_future(started)
        return self

    def _sent(self, result: Any) -> None:
        """Count a publish that fails later (a shared backplane's publish is a task)."""
        if isinstance(result, asyncio.Future):
            result.add_done_callback(self._publish_done)

    def _publish_done(self, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.errors += 1
            if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                logging.getLogger("livestream.demo").warning(
                    "livestream demo: publish failed (%d so far): %s", self.errors,
                    task.exception())

    def _publish(self, n: int) -> None:
        srv = self.server
        if n > 0:
            if "trading" in self.feeds:
                self._sent(srv.publish("trades", self.trades.batch(n)))
                self._sent(srv.publish("quotes", self.trades.quotes()))
            if "chat" in self.feeds:
                self._sent(srv.publish("chat", self.chat.batch(n)))
            if "game" in self.feeds:
                self._sent(srv.publish("telemetry", self.game.batch(n)))
                self._sent(srv.publish("scores", self.game.scores()))
            self.rows += n * sum(1 for f in self.feeds)
        self.ticks += 1

    def _tick(self) -> None:
        if self._stopped or self.server.closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        elapsed = now - (self._last if self._last is not None else now)
        self._last = now
        # rows owed since the last tick (late ticks catch up; capped at 1 s of rows)
        want = self.rate * min(elapsed, 1.0) + self._carry
        n = int(want)
        self._carry = want - n
        try:
            self._publish(n)
        except Exception:  # keep the demo alive; count and log
            import logging

            self.errors += 1
            logging.getLogger("livestream.demo").exception("livestream demo: publish failed")
        # a steady cadence: the next tick is due one interval after this one was due
        self._due = max(self._due + self.interval, loop.time())
        self._handle = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        """Stop publishing (the server keeps running)."""
        from .loop import call_in_loop

        self._stopped = True
        if self.server.loop.is_closed():
            return

        def cancel() -> None:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None

        call_in_loop(self.server.loop, cancel)


def run_demo_feeds(server: Server, rate: float = 200.0, *, interval: float = 0.1,
                   seed: int | None = None,
                   feeds: Sequence[str] = ("trading", "chat", "game")) -> DemoFeeds:
    """Start publishing simulated trades, chat and game telemetry into ``server``.

    Declares the topics of :data:`DEMO_TOPICS` (the derived ``bars_1s`` too), then
    publishes every ``interval`` seconds on the server's event loop — never from
    another thread — about ``rate`` rows per second per feed. Returns the
    :class:`DemoFeeds`; call ``.stop()`` to stop publishing.
    """
    from . import cells

    feeds_ = DemoFeeds(server, rate, interval=interval, seed=seed, feeds=feeds).start()
    cells.own(feeds_, feeds_.stop)  # a re-run cell stops the feeds it started before
    return feeds_


def demo_dashboard(url: str, feeds: Sequence[str] = ("trading", "chat", "game"),
                   *, token: str | None = None, theme: str = "light") -> Any:
    """The demo's dashboard: one panel per use case, subscribing to the server at ``url``.

    trading: price lines by symbol, 1-second candlesticks (AAPL) from ``bars_1s``,
    quote cards and trade controls; chat: messages per room (bars) and the
    latest messages; game: player positions (scatter) and the scoreboard. Each
    browser session opens its own subscriptions (see ``livestream.Dashboard``).
    """
    from .dashboard import Dashboard, ViewSpec

    def view(view_kind: str, topic: str, rows: int | None = None, /, **options: Any
             ) -> ViewSpec:
        # rows: the subscription's window; options: the view's (a chart's window= is its
        # points per series)
        return ViewSpec(view_kind, topic, options, url=url,  # type: ignore[arg-type]
                        window=rows, token=token)  # type: ignore[arg-type]

    panels: list[Any] = []
    if "trading" in feeds:
        panels += [
            "## Trading",
            [view("chart", "trades", 20_000, x="ts", y="price", by="symbol", window=2_000,
                  title="trades: price by symbol"),
             view("chart", "bars_1s", None, x="ts", kind="candlestick",
                  where={"symbol": "AAPL"}, window=120, title="AAPL 1-second bars")],
            [view("ticker", "quotes", None, value="last", by="symbol"),
             view("controls", "trades", 20_000, filter_column="symbol")],
        ]
    if "chat" in feeds:
        panels += [
            "## Chat",
            [view("chart", "chat", 5_000, x="room", kind="bar", agg="count",
                  title="chat: messages per room (last 5,000)"),
             view("table", "chat", 5_000, rows=12, columns=["ts", "room", "user", "text"])],
        ]
    if "game" in feeds:
        panels += [
            "## Game",
            [view("chart", "telemetry", 5_000, x="x", y="y", by="player", kind="scatter",
                  window=60, size=7, title="players: last positions",
                  x_range=(0, 100), y_range=(0, 100)),
             view("table", "scores", None, rows=10, sort_by="score", ascending=False)],
        ]
    return Dashboard(panels, title="livestream demo", theme=theme)  # type: ignore[arg-type]
