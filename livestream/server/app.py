"""The livestream server: topics on a backplane, served over WebSocket and HTTP by Tornado.

:class:`LivestreamServer` is the adapter between the pure core and the sockets.
It owns subscriber sets per topic, encodes each update **once per wire encoding
in use** and hands the same bytes to every subscriber, schedules derived
topics, and enforces limits. Everything runs on one event loop; calls from
other threads go through :class:`Server`, the handle ``livestream.serve()``
returns.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import tornado.httpserver
import tornado.netutil
import tornado.web

from .._version import __version__
from ..backplane import Backplane, MemoryBackplane
from ..core.derived import Derivation, DeriveError
from ..core.schema import Schema
from ..core.topic import Mode, Topic, Update, check_topic_name
from ..errors import AuthError, LimitError, ProtocolError, TopicError
from ..loop import get_loop, on_loop_thread, run_in_loop
from ..protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    Publish,
    Subscribe,
    Unsubscribe,
    data_header,
    decode_columns_json,
    dumps,
    encode_data,
    error_message,
)
from .config import ServerConfig
from .http import routes
from .metrics import Metrics
from .websocket import ClientHandler

if TYPE_CHECKING:
    from ..core.topic import Resume

log = logging.getLogger("livestream.server")


class LivestreamServer:
    """Topic state, subscribers and fan-out. Lives on one event loop."""

    def __init__(self, config: ServerConfig, backplane: Backplane | None = None) -> None:
        self.config = config
        self.backplane = backplane or MemoryBackplane()
        self.backplane.add_listener(self._on_update)
        self.metrics = Metrics()
        self.clients: set[ClientHandler] = set()
        self.subscribers: dict[str, set[ClientHandler]] = {}
        self.derivations: dict[str, Derivation] = {}
        self._by_source: dict[str, list[Derivation]] = {}
        self.started = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._resync_timer: asyncio.TimerHandle | None = None

    @staticmethod
    def now_ms() -> float:
        return round(time.time() * 1000.0, 3)

    # -- topics ----------------------------------------------------------------------

    def topic(
        self,
        name: str,
        *,
        key: Sequence[str] | str | None = None,
        mode: Mode = "append",
        retention_rows: int | None = None,
        retention_seconds: float | None = None,
    ) -> Topic:
        """Declare a topic (idempotent); a key makes it a keyed (upsert) topic."""
        check_topic_name(name)
        if isinstance(key, str):
            key = (key,)
        return self.backplane.create(
            name,
            mode=mode,
            key=key,
            retention_rows=retention_rows or self.config.retention_rows,
            retention_seconds=(retention_seconds if retention_seconds is not None
                               else self.config.retention_seconds),
        )

    def publish(self, name: str, df: pd.DataFrame) -> Update:
        """Append (or upsert) a batch; creates an append topic on first use."""
        check_topic_name(name)
        if name in self.derivations:
            raise TopicError(f"topic {name!r} is derived; it cannot be published to",
                             code="derived_topic")
        if len(df) > self.config.max_rows_per_publish:
            raise LimitError(
                f"{len(df)} rows in one publish; the limit is {self.config.max_rows_per_publish}",
                code="too_many_rows",
            )
        if self.backplane.get(name) is None:
            self.topic(name)
        update = self.backplane.publish(name, df)
        self.metrics.publishes += 1
        self.metrics.rows_published += update.rows
        return update

    def derive(
        self,
        name: str,
        source: str,
        fn: Callable[[pd.DataFrame], pd.DataFrame],
        *,
        key: Sequence[str] | str | None = None,
        rate: float = 4.0,
        window: int | None = None,
    ) -> Derivation:
        """Declare a derived topic: ``fn(source window)`` at most ``rate`` times a second."""
        if name in self.derivations or self.backplane.get(name) is not None:
            raise TopicError(f"topic {name!r} already exists", code="topic_exists")
        d = Derivation(name, source, fn, key=tuple([key] if isinstance(key, str) else key or ()),
                       rate=rate, window=window)
        self.derivations[name] = d
        self._by_source.setdefault(source, []).append(d)
        if d.key:
            self.topic(name, key=d.key)
        else:
            self.topic(name, mode="replace")
        src = self.backplane.get(source)
        if src is not None and src.schema is not None:
            self._schedule(d)
        return d

    def _schedule(self, d: Derivation) -> None:
        delay = d.source_changed(time.monotonic())
        if delay is None:
            return
        loop = self.loop or asyncio.get_event_loop()
        if delay <= 0:
            loop.call_soon(self._run_derivation, d)
        else:
            loop.call_later(delay, self._run_derivation, d)

    def _run_derivation(self, d: Derivation) -> None:
        if self.derivations.get(d.name) is not d:
            return  # removed
        src = self.backplane.get(d.source)
        if src is None or src.schema is None:
            d.scheduled = False
            return
        try:
            result = d.compute(src.frame(), time.monotonic())
            topic = self.backplane.get(d.name)
            assert topic is not None
            if d.key:
                result = d.changed_rows(topic, result)
                if len(result) == 0:
                    return
            self.backplane.publish(d.name, result)
        except Exception as exc:
            err = exc if isinstance(exc, DeriveError) else DeriveError(
                f"derived topic {d.name!r}: {type(exc).__name__}: {exc}")
            d.last_error = str(err)
            log.error("livestream: %s", err, exc_info=exc.__cause__ or exc)
            self.metrics.errors["derive_failed"] += 1
            frame = dumps(error_message("derive_failed", str(err), topic=d.name))
            for h in list(self.subscribers.get(d.name, ())):
                h.send_frame(frame, binary=False, size=None)

    # -- fan-out ------------------------------------------------------------------------

    def _on_update(self, update: Update) -> None:
        """Backplane listener: encode once per encoding, send to every subscriber."""
        for d in self._by_source.get(update.topic, ()):
            self._schedule(d)
        subs = self.subscribers.get(update.topic)
        if not subs:
            return
        topic = self.backplane.get(update.topic)
        assert topic is not None and topic.schema is not None
        frames: dict[str, bytes] = {}
        snapshots: dict[str, bytes] = {}
        snap: Update | None = None
        for h in list(subs):
            enc = h.encoding
            if h.topics.get(update.topic) == "pending":
                # the topic just got its schema: start this client with a snapshot
                h.topics[update.topic] = "live"
                h.send_json({"type": "subscribed", "topic": topic.name, "exists": True,
                             "mode": topic.mode, "key": list(topic.key),
                             "schema": topic.schema.to_json(), "epoch": topic.epoch,
                             "offset": topic.first_offset, "next": topic.next_offset,
                             "resumed": False})
                old_epoch, old_offset = h.pending_resume.pop(update.topic, (None, None))
                if old_epoch is not None and old_epoch != topic.epoch:
                    h.send_json({"type": "gap", "topic": topic.name, "epoch": old_epoch,
                                 "offset": old_offset, "new_epoch": topic.epoch,
                                 "until": topic.first_offset, "reason": "epoch"})
                data = snapshots.get(enc)
                if data is None:
                    snap = snap or topic.snapshot()
                    data = snapshots[enc] = self.encode(snap, topic.schema, enc)
                h.send_update(snap or update, data, enc == "arrow")
                continue
            data = frames.get(enc)
            if data is None:
                data = self.encode(update, topic.schema, enc)
                frames[enc] = data
            h.send_update(update, data, enc == "arrow")

    def encode(self, update: Update, schema: Schema, encoding: str,
               with_schema: bool = False) -> bytes:
        self.metrics.encodes += 1
        header = data_header(update.kind, update.topic, update.epoch, update.offset,
                             update.next, update.rows, update.ts,
                             schema if (with_schema or update.kind in ("snapshot", "replace"))
                             else None)
        return encode_data(header, update.frame, schema, encoding)

    def _send_snapshot(self, h: ClientHandler, topic: Topic, snap: Update) -> None:
        assert topic.schema is not None
        h.send_frame(self.encode(snap, topic.schema, h.encoding), binary=h.encoding == "arrow",
                     size=None, rows=snap.rows)

    # -- clients ------------------------------------------------------------------------

    def _client_opened(self, h: ClientHandler) -> None:
        self.clients.add(h)
        self.metrics.connections += 1
        self.metrics.connections_total += 1

    def _client_closed(self, h: ClientHandler, reason: str) -> None:
        if h not in self.clients:
            return
        self.clients.discard(h)
        for name in list(h.topics):
            self._drop_subscriber(h, name)
        self.metrics.connections -= 1
        self.metrics.disconnects[reason] += 1

    def _drop_subscriber(self, h: ClientHandler, name: str) -> None:
        h.pending_resume.pop(name, None)
        if h.topics.pop(name, None) is not None:
            self.metrics.subscriptions -= 1
        subs = self.subscribers.get(name)
        if subs is not None:
            subs.discard(h)
            if not subs:
                del self.subscribers[name]

    def welcome(self, h: ClientHandler) -> dict:
        return {
            "type": "welcome",
            "v": PROTOCOL_VERSION,
            "server": f"livestream/{__version__}",
            "session": h.session,
            "encoding": h.encoding,
            "limits": self.config.limits(),
            "heartbeat": self.config.ping_interval,
        }

    def _check_token(self, given: str | None, needed: str | None, what: str) -> None:
        if needed is not None and given != needed:
            raise AuthError(f"a valid {what} token is required")

    def subscribe(self, h: ClientHandler, msg: Subscribe) -> None:
        try:
            check_topic_name(msg.topic)
            self._check_token(msg.token or h.token, self.config.subscribe_token, "subscribe")
        except (TopicError, AuthError) as exc:
            raise ProtocolError(exc.code, str(exc), id=msg.id, topic=msg.topic) from None
        if msg.topic in h.topics:
            self._drop_subscriber(h, msg.topic)  # resubscribe replaces
        if len(h.topics) >= self.config.max_subscriptions:
            raise ProtocolError(
                "too_many_subscriptions",
                f"this connection has {len(h.topics)} subscriptions; the limit is "
                f"{self.config.max_subscriptions}", id=msg.id, topic=msg.topic,
            )
        topic = self.backplane.get(msg.topic)
        ack: dict[str, Any] = {"type": "subscribed", "topic": msg.topic}
        if msg.id is not None:
            ack["id"] = msg.id
        h.topics[msg.topic] = "pending"
        self.subscribers.setdefault(msg.topic, set()).add(h)
        self.metrics.subscriptions += 1
        if topic is None or topic.schema is None:
            ack.update(exists=topic is not None,
                       mode=topic.mode if topic is not None else None,
                       key=list(topic.key) if topic is not None else [], schema=None,
                       resumed=False, epoch=topic.epoch if topic is not None else None)
            h.pending_resume[msg.topic] = (msg.epoch, msg.offset)
            h.send_json(ack)
            return
        h.topics[msg.topic] = "live"
        resume: Resume = topic.since(msg.epoch, msg.offset)
        ack.update(exists=True, mode=topic.mode, key=list(topic.key),
                   schema=topic.schema.to_json(), epoch=topic.epoch,
                   offset=topic.first_offset, next=topic.next_offset,
                   resumed=msg.epoch is not None and resume.gap is None)
        h.send_json(ack)
        if resume.gap is not None:
            h.send_gap(resume.gap)
        if resume.snapshot is not None:
            self._send_snapshot(h, topic, resume.snapshot)
        elif resume.update is not None:
            u = resume.update
            h.send_frame(self.encode(u, topic.schema, h.encoding), binary=h.encoding == "arrow",
                         size=None, rows=u.rows)

    def unsubscribe(self, h: ClientHandler, msg: Unsubscribe) -> None:
        if msg.topic not in h.topics:
            raise ProtocolError("not_subscribed", f"not subscribed to {msg.topic!r}", id=msg.id,
                                topic=msg.topic)
        self._drop_subscriber(h, msg.topic)
        out: dict[str, Any] = {"type": "unsubscribed", "topic": msg.topic}
        if msg.id is not None:
            out["id"] = msg.id
        h.send_json(out)

    def publish_message(self, h: ClientHandler, msg: Publish, payload: Any) -> Update:
        """A publish frame from a client (JSON columns, or Arrow payload)."""
        try:
            check_topic_name(msg.topic)
            self._check_token(msg.token or h.token, self.config.publish_token, "publish")
        except (TopicError, AuthError) as exc:
            raise ProtocolError(exc.code, str(exc), id=msg.id, topic=msg.topic) from None
        df = self.frame_from_message(msg.topic, msg.message, payload)
        return self.publish(msg.topic, df)

    def frame_from_message(self, name: str, message: dict, payload: Any) -> pd.DataFrame:
        """Decode the rows of a publish (WebSocket frame or HTTP body)."""
        from ..protocol import arrow_to_frame

        if payload is not None:
            return arrow_to_frame(payload)
        topic = self.backplane.get(name)
        schema = topic.schema if topic is not None else None
        if "schema" in message and message["schema"] is not None:
            given = Schema.from_json(message["schema"])
            if schema is not None and given != schema:
                raise ProtocolError("schema_mismatch", "the given schema differs from the topic's")
            schema = given
        if "rows" in message:
            rows = message["rows"]
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ProtocolError("bad_message", "'rows' must be an array of objects")
            if len(rows) > self.config.max_rows_per_publish:
                raise LimitError(f"{len(rows)} rows in one publish; the limit is "
                                 f"{self.config.max_rows_per_publish}", code="too_many_rows")
            columns: dict[str, list] = {}
            names = schema.names if schema is not None else list(dict.fromkeys(
                k for r in rows for k in r))
            for n in names:
                columns[n] = [r.get(n) for r in rows]
            extra = {k for r in rows for k in r} - set(names)
            if extra:
                from ..errors import SchemaError
                col = sorted(extra)[0]
                raise SchemaError(f"column {col!r} is not in the topic's schema {names}",
                                  column=col)
        elif "columns" in message:
            columns = message["columns"]
            if not isinstance(columns, dict):
                raise ProtocolError("bad_message", "'columns' must be an object of arrays")
        else:
            raise ProtocolError("bad_message", "a publish needs 'columns' or 'rows'")
        if schema is None:
            try:
                return pd.DataFrame(columns)
            except (ValueError, TypeError) as exc:
                raise ProtocolError("bad_message", f"cannot build a table: {exc}") from None
        return decode_columns_json(columns, schema, message.get("categories"))

    def resync(self, h: ClientHandler) -> None:
        """A conflated client drained its queue: gap + fresh snapshot for each topic."""
        for name, state in list(h.topics.items()):
            topic = self.backplane.get(name)
            if state != "live" or topic is None or topic.schema is None:
                continue
            snap = topic.snapshot()
            h.send_json({"type": "gap", "topic": name, "epoch": topic.epoch, "offset": None,
                         "new_epoch": topic.epoch, "until": snap.offset,
                         "reason": "slow_consumer"})
            self._send_snapshot(h, topic, snap)

    def _check_stalled(self) -> None:
        for h in list(self.clients):
            if h.stalled and h.queue_drained():
                h.stalled = False
                self.resync(h)
        loop = self.loop
        if loop is not None and not loop.is_closed():
            self._resync_timer = loop.call_later(0.05, self._check_stalled)

    def start_timers(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.config.slow_consumer == "conflate":
            self._check_stalled()

    def close_clients(self) -> None:
        if self._resync_timer is not None:
            self._resync_timer.cancel()
        for h in list(self.clients):
            h.close_reason_tag = "shutdown"
            h.close(CloseCode.GOING_AWAY, "server shutting down")


def make_app(server: LivestreamServer) -> tornado.web.Application:
    """The Tornado application: ``/ws`` plus the HTTP endpoints."""
    cfg = server.config
    return tornado.web.Application(
        [(r"/ws", ClientHandler, {"server": server}), *routes(server)],
        websocket_ping_interval=cfg.ping_interval,
        websocket_ping_timeout=cfg.ping_timeout,
        websocket_max_message_size=cfg.max_message_size,
    )


def _ssl_context(cfg: ServerConfig) -> ssl.SSLContext | None:
    if cfg.certfile is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.certfile, cfg.keyfile)
    return ctx


class Server:
    """A running livestream server: the handle ``livestream.serve()`` returns.

    Its methods may be called from any thread: on the server's loop they run
    directly; from elsewhere (a script's main thread while the server runs on
    the ``livestream-io`` thread) they are handed to the loop and waited for, so
    a bad batch still raises :class:`~livestream.SchemaError` in the caller.
    """

    def __init__(self, core: LivestreamServer, loop: asyncio.AbstractEventLoop, owned: bool):
        self.core = core
        self.loop = loop
        self.owned_loop = owned
        self.http_server: tornado.httpserver.HTTPServer | None = None
        self.sockets: list[socket.socket] = []
        self.port = 0
        self.closed = False

    # addresses
    @property
    def config(self) -> ServerConfig:
        return self.core.config

    @property
    def tls(self) -> bool:
        return self.config.certfile is not None

    @property
    def host(self) -> str:
        h = self.config.host
        return "127.0.0.1" if h in ("", "0.0.0.0") else ("[::1]" if h == "::" else h)

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        """The base URL of the HTTP endpoints."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running"
        return f"<livestream.Server {self.url} {state} topics={len(self.core.backplane.names())}>"

    def _call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.closed:
            raise TopicError("the server is closed", code="closed")
        return run_in_loop(self.loop, lambda: fn(*args, **kwargs))

    # API
    def publish(self, topic: str, df: pd.DataFrame) -> Update:
        """Append rows to ``topic`` (upsert, for keyed topics). Returns the update
        with its offsets; raises ``SchemaError`` naming the column if the batch
        does not fit (nothing of it is applied)."""
        return self._call(self.core.publish, topic, df)

    def topic(self, name: str, *, key: Sequence[str] | str | None = None,
              retention_rows: int | None = None, retention_seconds: float | None = None,
              ) -> Topic:
        """Declare a topic before publishing: ``key=`` makes it keyed (upserts by key)."""
        return self._call(self.core.topic, name, key=key, retention_rows=retention_rows,
                          retention_seconds=retention_seconds)

    def derive(self, name: str, source: str, fn: Callable[[pd.DataFrame], pd.DataFrame], *,
               key: Sequence[str] | str | None = None, rate: float = 4.0,
               window: int | None = None) -> Derivation:
        """A topic computed by ``fn`` from ``source``'s window, at most ``rate``/s.

        With ``key=`` only changed rows are streamed (upserts); without, each result
        replaces the table. Exceptions in ``fn`` are logged and sent to the derived
        topic's subscribers as ``derive_failed`` errors; nothing else stops.
        """
        return self._call(self.core.derive, name, source, fn, key=key, rate=rate, window=window)

    def topics(self) -> list[dict]:
        """What ``GET /topics`` returns."""
        return self._call(lambda: [self.core.backplane.get(n).info()  # type: ignore[union-attr]
                                   for n in self.core.backplane.names()])

    def snapshot(self, topic: str) -> pd.DataFrame:
        """The topic's current snapshot as a DataFrame."""
        def get() -> pd.DataFrame:
            t = self.core.backplane.get(topic)
            if t is None:
                raise TopicError(f"unknown topic {topic!r}", code="unknown_topic")
            return t.snapshot().frame
        return self._call(get)

    @property
    def metrics(self) -> Metrics:
        return self.core.metrics

    def close(self, timeout: float = 5.0) -> None:
        """Close every client (1001 going away), stop listening, free the port."""
        if self.closed:
            return
        self.closed = True

        def shutdown() -> None:
            self.core.close_clients()
            if self.http_server is not None:
                self.http_server.stop()
        run_in_loop(self.loop, shutdown, timeout=timeout)

    async def aclose(self) -> None:
        """Close, then wait until every client connection is gone."""
        self.close()
        deadline = time.monotonic() + 5.0
        while self.core.clients and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.http_server is not None:
            await self.http_server.close_all_connections()

    def serve_forever(self) -> None:
        """Block the calling thread until the server is closed (CLI use)."""
        if on_loop_thread(self.loop):
            raise RuntimeError("serve_forever() would block the server's own loop")
        while not self.closed:
            time.sleep(0.2)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    backplane: Backplane | None = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> Server:
    """Start a livestream server in this process and return its handle.

    Runs on the current event loop when there is one (a Jupyter kernel, an async
    program) without blocking it; otherwise on the ``livestream-io`` background
    thread. ``port=0`` picks a free port (see ``Server.port`` / ``Server.url``).
    Other keyword arguments are :class:`ServerConfig` fields (limits, tokens,
    ``allowed_origins``, ``certfile``/``keyfile`` for TLS, ``slow_consumer``…).
    """
    cfg = config or ServerConfig(host=host, port=port, **options)
    if config is not None:
        cfg.host, cfg.port = host, port
    loop, owned = get_loop()
    core = LivestreamServer(cfg, backplane)
    handle = Server(core, loop, owned)

    def start() -> None:
        core.start_timers()
        app = make_app(core)
        http = tornado.httpserver.HTTPServer(
            app, ssl_options=_ssl_context(cfg), max_buffer_size=cfg.max_message_size,
            max_body_size=cfg.max_message_size, xheaders=True,
        )
        sockets = tornado.netutil.bind_sockets(cfg.port, cfg.host or None)
        http.add_sockets(sockets)
        handle.http_server = http
        handle.sockets = sockets
        handle.port = sockets[0].getsockname()[1]

    run_in_loop(loop, start)
    log.info("livestream: serving %s", handle.url)
    return handle
