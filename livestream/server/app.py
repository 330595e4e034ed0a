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
from ..errors import (
    AuthError,
    BackplaneUnavailable,
    LimitError,
    ProtocolError,
    SchemaError,
    TopicError,
)
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
    pack_binary,
)
from ..protocol.codec import stream_batches, stream_head, untrusted_arrow_to_frame
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


#: extra room in a connection's read buffer beyond ``max_message_size`` (see serve())
READ_BUFFER_MARGIN = 1024 * 1024


def make_backplane(backplane: Backplane | str | None) -> Backplane:
    """The backplane for ``serve(backplane=...)``: an instance, ``None``/``"memory"``
    (in this process), or a ``redis://`` / ``rediss://`` / ``unix://`` URL."""
    if backplane is None or backplane in ("memory", "memory://"):
        return MemoryBackplane()
    if isinstance(backplane, Backplane):
        return backplane
    if isinstance(backplane, str) and backplane.startswith(("redis://", "rediss://",
                                                            "unix://")):
        from ..backplane.redis import RedisBackplane

        return RedisBackplane.from_url(backplane)
    raise ValueError(f"backplane must be 'memory' or a redis:// URL, not {backplane!r}")


class LivestreamServer:
    """Topic state, subscribers and fan-out. Lives on one event loop."""

    def __init__(self, config: ServerConfig, backplane: Backplane | str | None = None) -> None:
        self.config = config
        self.backplane = make_backplane(backplane)
        #: the backplane is shared with other processes: its writes are awaited
        self.shared = self.backplane.shared
        self.backplane.add_listener(self._on_update)
        self.backplane.add_delete_listener(self._on_delete)
        self.backplane.add_reset_listener(self._on_reset)
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
        self._lease_task: asyncio.Future | None = None
        #: derived topics this node computes (on a shared backplane: holds the lease)
        self._leased: set[str] = set()

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
        self._check_publish(name, df)
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

    async def publish_async(self, name: str, df: pd.DataFrame) -> Update:
        """``publish`` for any backplane: on a shared one (Redis) it returns once the
        shared log accepted the batch, or raises ``BackplaneUnavailable``."""
        if not self.shared:
            return self.publish(name, df)
        self._check_publish(name, df)
        if await self.backplane.ensure(name) is None:
            self._check_topic_limit(name)
        # created with its first batch if it does not exist (also if it was deleted just now)
        create = {"retention_rows": self.config.retention_rows,
                  "retention_seconds": self.config.retention_seconds}
        update = await self.backplane.publish_async(name, df, create=create)
        self.metrics.publishes += 1
        self.metrics.rows_published += update.rows
        return update

    def publish_any(self, name: str, df: pd.DataFrame) -> Any:
        """``publish`` on the in-memory backplane; the ``publish_async`` coroutine on a
        shared one (``Server.publish`` waits for it, or returns it as a task)."""
        return self.publish_async(name, df) if self.shared else self.publish(name, df)

    async def ensure(self, name: str) -> Topic | None:
        """Load ``name`` from a shared backplane (no-op in memory)."""
        if not self.shared:
            return self.backplane.get(name)
        return await self.backplane.ensure(name)

    async def topic_async(self, name: str, *, key: Sequence[str] | str | None = None,
                          mode: Mode = "append", retention_rows: int | None = None,
                          retention_seconds: float | None = None) -> Topic:
        """``topic`` for any backplane."""
        if not self.shared:
            return self.topic(name, key=key, mode=mode, retention_rows=retention_rows,
                              retention_seconds=retention_seconds)
        check_topic_name(name)
        if isinstance(key, str):
            key = (key,)
        if await self.backplane.ensure(name) is None:
            self._check_topic_limit(name)
        return await self.backplane.create_async(
            name, mode=mode, key=key,
            retention_rows=retention_rows or self.config.retention_rows,
            retention_seconds=(retention_seconds if retention_seconds is not None
                               else self.config.retention_seconds))

    async def delete_async(self, name: str) -> bool:
        """``delete_topic`` for any backplane."""
        check_topic_name(name)
        if not self.shared:
            return self.backplane.delete(name)
        return await self.backplane.delete_async(name)

    def _check_publish(self, name: str, df: pd.DataFrame) -> None:
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

    async def derive_async(
        self,
        name: str,
        source: str,
        fn: Callable[[pd.DataFrame], pd.DataFrame],
        *,
        key: Sequence[str] | str | None = None,
        rate: float = 4.0,
        window: int | None = None,
    ) -> Derivation:
        """``derive`` for any backplane. On a shared one every node declares the same
        derivation (its code runs everywhere) and one node at a time computes it: the
        holder of a lease in Redis (``lease_ttl``), taken over by another node when the
        holder stops renewing it; the topic's offsets carry on."""
        if not self.shared:
            return self.derive(name, source, fn, key=key, rate=rate, window=window)
        if name in self.derivations:
            raise TopicError(f"topic {name!r} already exists", code="topic_exists")
        d = Derivation(name, source, fn, key=tuple([key] if isinstance(key, str) else key or ()),
                       rate=rate, window=window)
        if await self.backplane.ensure(name) is None:
            self._check_topic_limit(name)
        if d.key:
            await self.topic_async(name, key=d.key)
        else:
            await self.topic_async(name, mode="replace")
        self.derivations[name] = d
        self._by_source.setdefault(source, []).append(d)
        await self.backplane.ensure(source)  # follow the source's log on this node
        if self._lease_task is None:
            self._lease_task = asyncio.ensure_future(self._lease_loop())
        else:
            await self._renew_leases()
        return d

    async def _lease_loop(self) -> None:
        ttl = float(getattr(self.backplane, "lease_ttl", 3.0))
        while True:
            await self._renew_leases()
            await asyncio.sleep(ttl / 3)

    async def _renew_leases(self) -> None:
        """Hold (or try to take) the lease of every derivation declared here; a lease
        just taken starts the computation at once."""
        for name, d in list(self.derivations.items()):
            try:
                held = await self.backplane.hold_lease(name)  # type: ignore[attr-defined]
            except Exception as exc:
                held = False
                log.debug("livestream: lease of %r not renewed: %s", name, exc)
            if self.derivations.get(name) is not d:
                continue
            if held and name not in self._leased:
                log.info("livestream: this node now computes derived topic %r", name)
                self._leased.add(name)
                src = self.backplane.get(d.source)
                if src is not None and src.schema is not None:
                    self._schedule(d)
            elif not held and name in self._leased:
                log.info("livestream: derived topic %r is computed by another node", name)
                self._leased.discard(name)

    async def close_backplane(self) -> None:
        """Give up leases and disconnect from a shared backplane."""
        if self._lease_task is not None:
            self._lease_task.cancel()
            self._lease_task = None
            for name in list(self._leased):
                await self.backplane.release_lease(name)  # type: ignore[attr-defined]
            self._leased.clear()
        await self.backplane.close()

    def _schedule(self, d: Derivation) -> None:
        if self.shared and d.name not in self._leased:
            return  # another node computes it
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
            if self.shared:
                task = asyncio.ensure_future(self.backplane.publish_async(d.name, result))
                task.add_done_callback(lambda t: self._derived_published(d, t))
                return
            self.backplane.publish(d.name, result)
        except Exception as exc:
            self._derive_failed(d, exc)

    def _derived_published(self, d: Derivation, task: asyncio.Future) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, BackplaneUnavailable):
            log.warning("livestream: derived topic %r not published: %s", d.name, exc)
            return
        self._derive_failed(d, exc)  # type: ignore[arg-type]

    def _derive_failed(self, d: Derivation, exc: BaseException) -> None:
        err = exc if isinstance(exc, DeriveError) else DeriveError(
            f"derived topic {d.name!r}: {type(exc).__name__}: {exc}")
        d.last_error = str(err)
        log.error("livestream: %s", err, exc_info=exc.__cause__ or exc)
        self.metrics.errors["derive_failed"] += 1
        frame = dumps(error_message("derive_failed", str(err), topic=d.name))
        for h in list(self.subscribers.get(d.name, ())):
            h.send_frame(frame, binary=False, size=None)

    async def topics_info(self) -> list[dict]:
        """``GET /topics``: every topic's description (loading shared ones first)."""
        out = []
        for n in self.backplane.names():
            t = await self.ensure(n)
            if t is not None:
                out.append(t.info())
        return out

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
        self._leased.discard(name)
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

    def _on_reset(self, old: Topic, topic: Topic) -> None:
        """Backplane reset listener: the topic's history was replaced (Redis lost its
        data: a new epoch). Subscribers get ``gap`` (epoch) and a fresh snapshot."""
        for h in list(self.subscribers.get(topic.name, ())):
            if h.topics.get(topic.name) not in ("live", "sending"):
                continue
            held: tuple[str | None, int | None] = (old.epoch, old.next_offset)
            d = h.deliveries.get(topic.name)
            if d is not None:
                held = d.held or (None, None)
                self.pacer.cancel(h, topic.name)
            if topic.schema is None:
                h.topics[topic.name] = "pending"
                h.pending_resume[topic.name] = held
            else:
                self.pacer.start(h, topic.name, Delivery.fresh(topic, *held))

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
        # binary appends may be merged for a client whose socket is busy: their stream's
        # schema message and record batches, found once per update (docs/protocol.md §3.3)
        head = stream_head(topic.schema) if update.kind == "append" else None
        merge: tuple[bytes, memoryview] | None = None
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
                if enc == "arrow" and head is not None:
                    body = stream_batches(data, head)
                    merge = (head, body) if body is not None else None
            if enc == "arrow":
                h.send_update(update, data, True, merge)
            else:
                h.send_update(update, data, False)

    def encode(self, update: Update, schema: Schema, encoding: str,
               with_schema: bool = False) -> bytes:
        header = data_header(update.kind, update.topic, update.epoch, update.offset,
                             update.next, update.rows, update.ts,
                             schema if (with_schema or update.kind in ("snapshot", "replace"))
                             else None)
        if encoding == "arrow" and update.payload is not None:
            return pack_binary(header, update.payload)  # encoded once, by the publisher
        self.metrics.encodes += 1
        return encode_data(header, update.frame, schema, encoding,
                           update.arrays if encoding == "arrow" else None)

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

    async def publish_message_async(self, h: ClientHandler, msg: Publish, payload: Any
                                    ) -> Update:
        """``publish_message`` on a shared backplane (the topic is loaded first)."""
        try:
            check_topic_name(msg.topic)
            await self.ensure(msg.topic)
            self.authorize_publish(self.grant_for(h, msg.token), msg.topic)
        except (TopicError, AuthError) as exc:
            raise ProtocolError(exc.code, str(exc), id=msg.id, topic=msg.topic) from None
        df = self.frame_from_message(msg.topic, msg.message, payload)
        return await self.publish_async(msg.topic, df)

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
        #: done once the backplane is connected (a task when started on a running loop)
        self.ready: asyncio.Future | None = None
        self._closing_task: asyncio.Future | None = None

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
        """Run ``fn`` on the server's loop and return its result. A coroutine result (a
        shared backplane's write) is awaited when called from another thread, and
        returned as a task when called on the loop itself (``await`` it there)."""
        if self.closed:
            raise TopicError("the server is closed", code="closed")
        if on_loop_thread(self.loop):
            result = fn(*args, **kwargs)
            return asyncio.ensure_future(result) if asyncio.iscoroutine(result) else result
        return run_in_loop(self.loop, lambda: fn(*args, **kwargs),
                           timeout=self._wait_timeout())

    def _wait_timeout(self) -> float:
        bp = self.core.backplane
        return 30.0 + 2 * float(getattr(bp, "publish_timeout", 0.0))

    # API
    def publish(self, topic: str, df: pd.DataFrame) -> Update:
        """Append rows to ``topic`` (upsert, for keyed topics). Returns the update
        with its offsets; raises ``SchemaError`` naming the column if the batch
        does not fit (nothing of it is applied).

        With a shared backplane (Redis) it waits until the shared log took the batch and
        raises :class:`~livestream.BackplaneUnavailable` if Redis cannot take it; called
        on the server's own loop (a notebook cell) it returns an ``asyncio.Task`` to
        ``await`` for the update instead of blocking the loop."""
        return self._call(self.core.publish_any, topic, df)

    def topic(self, name: str, *, key: Sequence[str] | str | None = None,
              retention_rows: int | None = None, retention_seconds: float | None = None,
              ) -> Topic:
        """Declare a topic before publishing: ``key=`` makes it keyed (upserts by key)."""
        fn = self.core.topic_async if self.core.shared else self.core.topic
        return self._call(fn, name, key=key, retention_rows=retention_rows,
                          retention_seconds=retention_seconds)

    def derive(self, name: str, source: str, fn: Callable[[pd.DataFrame], pd.DataFrame], *,
               key: Sequence[str] | str | None = None, rate: float = 4.0,
               window: int | None = None) -> Derivation:
        """A topic computed by ``fn`` from ``source``'s window, at most ``rate``/s.

        With ``key=`` only changed rows are streamed (upserts); without, each result
        replaces the table. Exceptions in ``fn`` are logged and sent to the derived
        topic's subscribers as ``derive_failed`` errors; nothing else stops.
        """
        fn_ = self.core.derive_async if self.core.shared else self.core.derive
        return self._call(fn_, name, source, fn, key=key, rate=rate, window=window)

    def delete(self, topic: str) -> bool:
        """Delete ``topic`` and its history; ``False`` if there was none. Subscribers
        get a ``deleted`` message and wait for the topic to be created again."""
        fn = self.core.delete_async if self.core.shared else self.core.delete_topic
        return self._call(fn, topic)

    def topics(self) -> list[dict]:
        """What ``GET /topics`` returns."""
        if self.core.shared:
            return self._call(self.core.topics_info)
        return self._call(lambda: [self.core.backplane.get(n).info()  # type: ignore[union-attr]
                                   for n in self.core.backplane.names()])

    def snapshot(self, topic: str) -> pd.DataFrame:
        """The topic's current snapshot as a DataFrame."""
        async def get() -> pd.DataFrame:
            t = await self.core.ensure(topic)
            if t is None:
                raise TopicError(f"unknown topic {topic!r}", code="unknown_topic")
            return t.snapshot().frame
        if on_loop_thread(self.loop) and not self.core.shared:
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

        def shutdown() -> Any:
            self.core.close_clients()
            if self.http_server is not None:
                self.http_server.stop()
            return self.core.close_backplane()
        if on_loop_thread(self.loop):
            self._closing_task = asyncio.ensure_future(shutdown())
        else:
            run_in_loop(self.loop, shutdown, timeout=timeout)

    async def aclose(self) -> None:
        """Close, then wait until every client connection is gone."""
        self.close()
        if self._closing_task is not None:
            await self._closing_task
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
    backplane: Backplane | str | None = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> Server:
    """Start a livestream server in this process and return its handle.

    Runs on the current event loop when there is one (a Jupyter kernel, an async
    program) without blocking it; otherwise on the ``livestream-io`` background
    thread. ``port=0`` picks a free port (see ``Server.port`` / ``Server.url``).
    Other keyword arguments are :class:`ServerConfig` fields (limits, tokens,
    ``allowed_origins``, ``certfile``/``keyfile`` for TLS, ``slow_consumer``…).

    ``backplane`` is where topics live: this process (default) or a Redis shared by
    many server processes (``"redis://HOST:PORT/DB"``, ``rediss://`` for TLS, or a
    :class:`~livestream.backplane.Backplane`). Called from a script, ``serve`` connects
    before it returns and raises :class:`~livestream.BackplaneUnavailable` if Redis does
    not answer; on a running loop (a notebook) it connects in the background: ``await
    srv.ready`` (which raises the same way). With Redis, ``publish``, ``topic``,
    ``derive`` and ``delete`` called on the server's own loop return tasks to await.
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
            app, ssl_options=_ssl_context(cfg),
            # the read buffer holds a whole frame of max_message_size plus what the socket
            # already read of the next (pipelined) frame: at most a read chunk or two
            max_buffer_size=cfg.max_message_size + READ_BUFFER_MARGIN,
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

    if core.shared:
        if on_loop_thread(loop):
            # a notebook's loop cannot block: connect in the background (``await
            # srv.ready``); publishes raise BackplaneUnavailable until it is connected
            handle.ready = asyncio.ensure_future(core.backplane.start())
        else:
            run_in_loop(loop, core.backplane.start, timeout=60.0)
    try:
        run_in_loop(loop, start)
    except BaseException:
        if core.shared:
            run_in_loop(loop, core.close_backplane, timeout=10.0)
        raise
    cells.own(handle)
    log.info("livestream: serving %s", handle.url)
    hosts = core.guard.hosts
    if hosts.any_host:
        log.warning("livestream: allowed_hosts '*': any Host header is answered, so a web page "
                    "whose name resolves to this server (DNS rebinding) can use it")
    elif hosts.network:
        log.info("livestream: answering Host %s (more with --allow-host)", hosts.describe())
    return handle
