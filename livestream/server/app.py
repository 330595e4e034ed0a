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
from typing import Any

import pandas as pd
import tornado.httpserver
import tornado.netutil
import tornado.web

from .. import cells
from .._version import __version__
from ..backplane import Backplane, MemoryBackplane
from ..core.delivery import Delivery
from ..core.derived import Derivation, DeriveError
from ..core.schema import Schema
from ..core.topic import Mode, Topic, Update, check_topic_name
from ..errors import AuthError, LimitError, ProtocolError, SchemaError, TopicError
from ..loop import get_loop, on_loop_thread, run_in_loop
from ..protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    data_header,
    decode_columns_json,
    dumps,
    encode_data,
    error_message,
)
from ..protocol.codec import untrusted_arrow_to_frame
from ..protocol.ipc import Limits
from . import _tornado_compat
from .auth import Authenticator, Grant, TokenError
from .budget import SendBudget
from .config import ServerConfig
from .http import NotFoundHandler, routes
from .metrics import Metrics
from .pacing import SnapshotPacer
from .security import RequestGuard
from .websocket import ClientHandler

log = logging.getLogger("livestream.server")


class LivestreamServer:
    """Topic state, subscribers and fan-out. Lives on one event loop."""

    def __init__(self, config: ServerConfig, backplane: Backplane | None = None) -> None:
        self.config = config
        self.backplane = backplane or MemoryBackplane()
        self.backplane.add_listener(self._on_update)
        self.backplane.add_delete_listener(self._on_delete)
        self.auth = Authenticator.from_config(config)
        self.metrics = Metrics()
        self.guard = RequestGuard(config)  # Host allowlist, origin rule, trusted proxies
        self.clients: set[ClientHandler] = set()
        self.subscribers: dict[str, set[ClientHandler]] = {}
        self.derivations: dict[str, Derivation] = {}
        self._by_source: dict[str, list[Derivation]] = {}
        self.started = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.budget = SendBudget(self)
        self.pacer = SnapshotPacer(self)

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
        if self.backplane.get(name) is None:
            self._check_topic_limit(name)
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
        if len(df.columns) > self.config.max_columns:
            raise LimitError(
                f"{len(df.columns)} columns in one publish; the limit is "
                f"{self.config.max_columns}", code="too_many_columns",
            )
        if self.backplane.get(name) is None:
            # created with its first batch: a refused batch leaves no topic behind
            self._check_topic_limit(name)
            update = self.backplane.publish_new(
                name, df, retention_rows=self.config.retention_rows,
                retention_seconds=self.config.retention_seconds)
        else:
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
        self._check_topic_limit(name)
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
            if topic is None:  # deleted under the derivation
                return
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

    def _check_topic_limit(self, name: str) -> None:
        n = len(self.backplane.names())
        if n >= self.config.max_topics:
            raise LimitError(
                f"topic {name!r} was not created: the server holds {n} topics and "
                f"max_topics is {self.config.max_topics}", code="too_many_topics")

    def delete_topic(self, name: str) -> bool:
        """Delete a topic and its history (``False`` if there was none). Its subscribers
        get ``deleted`` and wait as for a topic that does not exist yet; a derived
        topic's derivation stops; derivations *of* it keep their last table."""
        check_topic_name(name)
        return self.backplane.delete(name)

    def _on_delete(self, topic: Topic) -> None:
        """Backplane delete listener: stop its derivation, tell its subscribers."""
        name = topic.name
        d = self.derivations.pop(name, None)
        if d is not None:
            siblings = self._by_source.get(d.source, [])
            if d in siblings:
                siblings.remove(d)
            if not siblings:
                self._by_source.pop(d.source, None)
        self.metrics.topics_deleted += 1
        frame = dumps({"type": "deleted", "topic": name})
        for h in list(self.subscribers.get(name, ())):
            if h.topics.get(name) in ("live", "sending"):
                # like a subscription made before the topic existed, resuming from where
                # the deleted history ended: a re-created topic starts with a gap
                held: tuple[str | None, int | None] = (topic.epoch, topic.next_offset)
                d = h.deliveries.get(name)
                if d is not None:  # its snapshot was being sent: it holds only part of it
                    held = d.held or (None, None)
                    self.pacer.cancel(h, name)
                h.topics[name] = "pending"
                h.pending_resume[name] = held
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
        for h in list(subs):
            enc = h.encoding
            state = h.topics.get(update.topic)
            if state != "live":
                if state == "pending":
                    # the topic just got its schema: start this client with a snapshot
                    h.send_json({"type": "subscribed", "topic": topic.name, "exists": True,
                                 "mode": topic.mode, "key": list(topic.key),
                                 "schema": topic.schema.to_json(), "epoch": topic.epoch,
                                 "offset": topic.first_offset, "next": topic.next_offset,
                                 "resumed": False})
                    old_epoch, old_offset = h.pending_resume.pop(update.topic, (None, None))
                    self.pacer.start(h, topic.name, Delivery.fresh(topic, old_epoch, old_offset))
                # "sending": the pacer sends these rows from the topic's log, in order
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

    # -- clients ------------------------------------------------------------------------

    def _client_opened(self, h: ClientHandler) -> None:
        self.clients.add(h)
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        self.set_connection_token(h, h.token)

    def _client_closed(self, h: ClientHandler, reason: str) -> None:
        if h not in self.clients:
            return
        self.clients.discard(h)
        if h.auth_timer is not None:
            h.auth_timer.cancel()
            h.auth_timer = None
        for name in list(h.topics):
            self._drop_subscriber(h, name)
        self.pacer.forget(h)
        self.budget.forget(h)
        self.metrics.connections -= 1
        self.metrics.disconnects[reason] += 1

    def _drop_subscriber(self, h: ClientHandler, name: str) -> None:
        h.pending_resume.pop(name, None)
        self.pacer.cancel(h, name)
        h.sub_exp.pop(name, None)
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
            "exp": h.grant.exp,
        }

    # -- rights -------------------------------------------------------------------------

    def set_connection_token(self, h: ClientHandler, token: str | None) -> None:
        """Make ``token`` the connection's (connect time, ``hello``). A well-signed token
        that has expired closes the connection with 4003; any other refused token is
        kept, and each message that needs a right gets ``unauthorized`` (as always)."""
        try:
            grant = self.auth.anonymous().union(self.auth.verify(token)) if token \
                else self.auth.anonymous()
        except TokenError as exc:
            if exc.expired:
                self._close_expired(h)
                return
            grant = self.auth.grant(token)
        h.token, h.grant = token, grant
        self._recheck_subscriptions(h)
        self._arm_expiry(h)

    def refresh(self, h: ClientHandler, msg: Refresh) -> None:
        """``refresh``: replace the connection's token before it expires."""
        try:
            given = self.auth.verify(msg.token)
        except TokenError as exc:
            raise ProtocolError("unauthorized", f"refresh refused: {exc}; the connection "
                                "keeps its current token", id=msg.id) from None
        h.token, h.grant = msg.token, self.auth.anonymous().union(given)
        out: dict[str, Any] = {"type": "refreshed", "exp": given.exp}
        if msg.id is not None:
            out["id"] = msg.id
        h.send_json(out)
        self._recheck_subscriptions(h)
        self._arm_expiry(h)

    def grant_for(self, h: ClientHandler, token: str | None) -> Grant:
        """The rights of a message: its own token's, else the connection's."""
        if not token or token == h.token:
            return h.grant
        return self.auth.grant(token)

    def authorize_publish(self, grant: Grant, name: str) -> None:
        """Raise ``AuthError`` unless ``grant`` may publish to ``name`` (and create it,
        if it does not exist yet)."""
        self.auth.check(grant, "publish", name)
        if self.backplane.get(name) is None and name not in self.derivations:
            self.auth.check(grant, "create", name)

    def _recheck_subscriptions(self, h: ClientHandler) -> None:
        """After a token change: end the subscriptions the connection may no longer hold."""
        for name in list(h.topics):
            if h.grant.allows("subscribe", name):
                h.sub_exp.pop(name, None)  # now held by the connection's token
            elif name not in h.sub_exp:
                self._revoke(h, name, "unauthorized",
                             f"the connection's new token does not allow subscribing to "
                             f"{name!r}; unsubscribed")

    def _revoke(self, h: ClientHandler, name: str, reason: str, message: str) -> None:
        self._drop_subscriber(h, name)
        self.metrics.errors["unauthorized"] += 1
        h.send_json(error_message("unauthorized", message, topic=name))
        h.send_json({"type": "unsubscribed", "topic": name, "reason": reason})

    def _arm_expiry(self, h: ClientHandler) -> None:
        """(Re)start the connection's timer for the earliest end of its tokens."""
        if h.auth_timer is not None:
            h.auth_timer.cancel()
            h.auth_timer = None
        ends = [e for e in (h.grant.exp, *h.sub_exp.values()) if e is not None]
        if not ends or h not in self.clients:
            return
        delay = max(0.0, min(ends) + self.auth.leeway - time.time())
        loop = self.loop or asyncio.get_event_loop()
        h.auth_timer = loop.call_later(delay, self._token_deadline, h)

    def _token_deadline(self, h: ClientHandler) -> None:
        h.auth_timer = None
        if h not in self.clients:
            return
        now = time.time()
        if h.grant.expired(now, self.auth.leeway):
            self._close_expired(h)
            return
        for name, exp in list(h.sub_exp.items()):
            if now >= exp + self.auth.leeway:
                self._revoke(h, name, "token_expired",
                             f"the token of the subscription to {name!r} has expired; "
                             "unsubscribed")
        self._arm_expiry(h)

    def _close_expired(self, h: ClientHandler) -> None:
        log.info("livestream: closing client %s: its token expired", h.session)
        h.close_reason_tag = "token_expired"
        h.close(CloseCode.UNAUTHORIZED, "token expired; refresh it before exp")

    # -- subscriptions ------------------------------------------------------------------

    def subscribe(self, h: ClientHandler, msg: Subscribe) -> None:
        try:
            check_topic_name(msg.topic)
            grant = self.grant_for(h, msg.token)
            self.auth.check(grant, "subscribe", msg.topic)
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
        if grant is not h.grant and grant.exp is not None and \
                not h.grant.allows("subscribe", msg.topic):
            h.sub_exp[msg.topic] = grant.exp  # held by its own token: ends with it
            self._arm_expiry(h)
        if topic is None or topic.schema is None:
            ack.update(exists=topic is not None,
                       mode=topic.mode if topic is not None else None,
                       key=list(topic.key) if topic is not None else [], schema=None,
                       resumed=False, epoch=topic.epoch if topic is not None else None)
            h.pending_resume[msg.topic] = (msg.epoch, msg.offset)
            h.send_json(ack)
            return
        h.topics[msg.topic] = "live"
        # what the client misses (a snapshot, the rows since its offset, or a gap and a
        # snapshot) goes in slices paced by its send queue: server/pacing.py
        delivery = Delivery.for_subscribe(topic, msg.epoch, msg.offset)
        ack.update(exists=True, mode=topic.mode, key=list(topic.key),
                   schema=topic.schema.to_json(), epoch=topic.epoch,
                   offset=topic.first_offset, next=topic.next_offset,
                   resumed=msg.epoch is not None and (delivery is None or delivery.resumes))
        h.send_json(ack)
        if delivery is not None:
            self.pacer.start(h, msg.topic, delivery)

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
            self.authorize_publish(self.grant_for(h, msg.token), msg.topic)
        except (TopicError, AuthError) as exc:
            raise ProtocolError(exc.code, str(exc), id=msg.id, topic=msg.topic) from None
        df = self.frame_from_message(msg.topic, msg.message, payload)
        return self.publish(msg.topic, df)

    def decode_limits(self) -> Limits:
        """What one untrusted publish may hold (rows, columns, cells)."""
        cfg = self.config
        return Limits(max_rows=cfg.max_rows_per_publish, max_columns=cfg.max_columns,
                      max_cells=cfg.max_message_size)

    def _check_shape(self, rows: int, columns: int) -> None:
        """Refuse a publish of more rows, columns or cells than the limits, before any
        of its values are decoded."""
        cfg = self.config
        if columns > cfg.max_columns:
            raise LimitError(f"{columns} columns in one publish; the limit is "
                             f"{cfg.max_columns}", code="too_many_columns")
        if rows > cfg.max_rows_per_publish:
            raise LimitError(f"{rows} rows in one publish; the limit is "
                             f"{cfg.max_rows_per_publish}", code="too_many_rows")
        if rows * columns > cfg.max_message_size:
            raise LimitError(f"{rows} rows x {columns} columns is more than "
                             f"{cfg.max_message_size} cells (max_message_size) in one publish",
                             code="too_many_rows")

    def frame_from_message(self, name: str, message: dict, payload: Any) -> pd.DataFrame:
        """Decode the rows of a publish (WebSocket frame or HTTP body).

        Everything in it is untrusted: shapes and types of the JSON fields, and the
        Arrow payload (validated in full, see ``untrusted_arrow_to_frame``), are
        checked, and the limits applied, before any rows are built.
        """
        if payload is not None:
            return untrusted_arrow_to_frame(payload, self.decode_limits())
        topic = self.backplane.get(name)
        schema = topic.schema if topic is not None else None
        given = message.get("schema")
        if given is not None:
            if isinstance(given, list):
                self._check_shape(0, len(given))
            try:
                given_schema = Schema.from_json(given)
            except SchemaError as exc:
                raise ProtocolError("bad_message", f"bad 'schema': {exc}") from None
            if schema is not None and given_schema != schema:
                have = {f.name: f.type for f in schema}
                col = next((f.name for f in given_schema if have.get(f.name) != f.type),
                           next((n for n in have if n not in given_schema.names), None))
                raise SchemaError(f"the given schema differs from the topic's {schema.to_json()}"
                                  f" at column {col!r}", column=col)
            schema = given_schema
        categories = message.get("categories")
        if categories is not None and not (isinstance(categories, dict) and all(
                isinstance(v, list) and all(isinstance(c, str) for c in v)
                for v in categories.values())):
            raise ProtocolError("bad_message",
                                "'categories' must be an object of arrays of strings")
        if "rows" in message:
            rows = message["rows"]
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ProtocolError("bad_message", "'rows' must be an array of objects")
            names = schema.names if schema is not None else list(dict.fromkeys(
                k for r in rows for k in r))
            self._check_shape(len(rows), len(names))
            extra = {k for r in rows for k in r} - set(names)
            if extra:
                col = sorted(extra)[0]
                raise SchemaError(f"column {col!r} is not in the topic's schema {names}",
                                  column=col)
            columns: dict[str, list] = {n: [r.get(n) for r in rows] for n in names}
        elif "columns" in message:
            columns = message["columns"]
            if not isinstance(columns, dict):
                raise ProtocolError("bad_message", "'columns' must be an object of arrays")
            self._check_shape(max((len(v) for v in columns.values() if isinstance(v, list)),
                                  default=0), len(columns))
        else:
            raise ProtocolError("bad_message", "a publish needs 'columns' or 'rows'")
        if schema is None:
            try:
                return pd.DataFrame(columns)
            except (ValueError, TypeError) as exc:
                raise ProtocolError("bad_message", f"cannot build a table: {exc}") from None
        return decode_columns_json(columns, schema, categories)

    def resync(self, h: ClientHandler) -> None:
        """A conflated client drained its queue: gap + fresh snapshot for each live topic
        (topics still being delivered lost nothing: the pacer reads them from the log)."""
        for name, state in list(h.topics.items()):
            topic = self.backplane.get(name)
            if state != "live" or topic is None or topic.schema is None:
                continue
            self.pacer.start(h, name, Delivery.after_slow_consumer(topic))

    def start_timers(self) -> None:
        self.loop = asyncio.get_running_loop()

    def close_clients(self) -> None:
        self.budget.close()
        for h in list(self.clients):
            h.close_reason_tag = "shutdown"
            h.close(CloseCode.GOING_AWAY, "server shutting down")


def make_app(server: LivestreamServer) -> tornado.web.Application:
    """The Tornado application: ``/ws`` plus the HTTP endpoints."""
    cfg = server.config
    return tornado.web.Application(
        [(r"/ws", ClientHandler, {"server": server}), *routes(server)],
        default_handler_class=NotFoundHandler,
        default_handler_args={"server": server},
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
        if h in ("", "0.0.0.0"):
            return "127.0.0.1"
        if h == "::":
            return "[::1]"
        return f"[{h}]" if ":" in h and not h.startswith("[") else h  # an IPv6 literal

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

    def delete(self, topic: str) -> bool:
        """Delete ``topic`` and its history; ``False`` if there was none. Subscribers
        get a ``deleted`` message and wait for the topic to be created again."""
        return self._call(self.core.delete_topic, topic)

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
    # a re-run notebook cell first stops the server (and feeds, connections) it started
    # before: its port is free again, and no second server is left listening
    cells.release_previous()
    loop, owned = get_loop()
    core = LivestreamServer(cfg, backplane)
    handle = Server(core, loop, owned)

    def start() -> None:
        _tornado_compat.check()  # fails loudly if a Tornado upgrade broke a reliance
        core.start_timers()
        app = make_app(core)
        http = tornado.httpserver.HTTPServer(
            app, ssl_options=_ssl_context(cfg), max_buffer_size=cfg.max_message_size,
            max_body_size=cfg.max_message_size,
            # a request's headers (or the next request on a kept-alive connection) and
            # its body must arrive in time: half-sent requests cannot hold connections
            idle_connection_timeout=cfg.http_idle_timeout, body_timeout=cfg.http_body_timeout,
        )  # no xheaders: handlers honour proxy headers from trusted_proxies only
        sockets = tornado.netutil.bind_sockets(cfg.port, cfg.host or None)
        http.add_sockets(sockets)
        handle.http_server = http
        handle.sockets = sockets
        handle.port = sockets[0].getsockname()[1]

    run_in_loop(loop, start)
    cells.own(handle)
    log.info("livestream: serving %s", handle.url)
    hosts = core.guard.hosts
    if hosts.any_host:
        log.warning("livestream: allowed_hosts '*': any Host header is answered, so a web page "
                    "whose name resolves to this server (DNS rebinding) can use it")
    elif hosts.network:
        log.info("livestream: answering Host %s (more with --allow-host)", hosts.describe())
    return handle
