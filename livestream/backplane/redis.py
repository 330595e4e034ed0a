"""Topics shared by many server processes through a real Redis.

Layout in Redis (``P`` is the key prefix, ``livestream`` by default):

``P:t:NAME`` (hash)
    the topic's settings (mode, key, retention), its schema (JSON; fixed by the first
    batch, cluster-wide), its epoch, the next offset and an entry counter.
``P:s:NAME`` (stream)
    the log: one entry per accepted batch holding the batch's Arrow IPC bytes, encoded
    **once** on the publishing node; every node sends those bytes on to its clients.
    An entry's id is ``<next offset after it>-<counter>``, so ids grow with offsets and
    ``XTRIM MINID`` trims by rows: append topics keep ``retention_rows`` rows (plus the
    rest of the oldest batch), replace topics their last table, keyed topics every
    upsert (a keyed mirror is rebuilt by replaying them).
``P:topics`` (set) and ``P:events`` (stream)
    the topic names, and create/delete events every node follows.
``P:cluster``
    a random id written once; a node that finds it gone or changed knows Redis lost
    its data, and gives every topic it serves a new epoch.
``P:lease:NAME``
    which node computes a derived topic (``SET NX PX``; renewed while it lives).

Offsets are assigned and the entry added by **one Lua script** (atomic: two
publishers on two nodes never get the same offsets, and a batch whose schema differs
from the stored one is refused before anything is written). Every node reads the
logs of the topics it serves with ``XREAD BLOCK`` on a connection of its own, and
applies each entry to a local mirror (a core :class:`~livestream.core.Topic`) in
stream order, which is offset order; an entry is applied at most once (its id is
compared with the last applied), so listeners see every update once, in order, on
the server's loop. A node's own publishes are applied as soon as Redis acknowledges
them when nothing is missing before them; otherwise they wait for the reader.

Mirrors are loaded lazily (``await ensure(name)``) when a node first serves a
topic: settings and schema from the hash, rows from the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from typing import Any

import pandas as pd

from ..core.schema import Schema
from ..core.topic import Mode, Topic, Update, check_topic_name, new_epoch
from ..errors import BackplaneUnavailable, SchemaError, TopicError
from ..protocol.codec import encode_arrow, read_arrow, table_to_frame
from .base import Backplane

log = logging.getLogger("livestream.backplane.redis")

#: seconds a publish may wait for Redis before it raises BackplaneUnavailable
DEFAULT_PUBLISH_TIMEOUT = 5.0
#: publishes waiting for Redis at once, beyond which a publish raises at once
DEFAULT_MAX_PENDING = 1000
#: connections to Redis for commands (publishes beyond wait for one)
MAX_CONNECTIONS = 32
#: seconds a derived topic's lease lives without being renewed
DEFAULT_LEASE_TTL = 3.0

#: updates a mirror remembers by entry id (for publishers that learn their id late)
_RECENT = 4096

_PUBLISH_LUA = """
local h = KEYS[1]
local created = 0
if redis.call('EXISTS', h) == 0 then
  if ARGV[6] ~= '1' then return {'gone'} end
  redis.call('HSET', h, 'epoch', ARGV[7], 'next', 0, 'seq', 0, 'schema', ARGV[15],
             'mode', ARGV[8], 'key', ARGV[9], 'retention_rows', ARGV[10],
             'retention_seconds', ARGV[11])
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '10000', '*', 'op', 'create', 'name', ARGV[1],
             'epoch', ARGV[7])
  created = 1
elseif ARGV[12] == '1' then
  return {'exists'}
end
local epoch = redis.call('HGET', h, 'epoch')
if ARGV[2] ~= '' and epoch ~= ARGV[2] then return {'epoch', epoch} end
if ARGV[14] == '0' then
  if created == 0 and (redis.call('HGET', h, 'mode') ~= ARGV[8]
                       or redis.call('HGET', h, 'key') ~= ARGV[9]) then
    return {'settings', redis.call('HGET', h, 'mode'), redis.call('HGET', h, 'key')}
  end
  return {'ok', epoch, created}
end
local schema = redis.call('HGET', h, 'schema')
if schema == '' then
  redis.call('HSET', h, 'schema', ARGV[3])
elseif schema ~= ARGV[3] then
  return {'schema', schema}
end
local offset = tonumber(redis.call('HGET', h, 'next'))
local nxt = offset + tonumber(ARGV[4])
local seq = redis.call('HINCRBY', h, 'seq', 1)
redis.call('HSET', h, 'next', nxt)
local id = nxt .. '-' .. seq
redis.call('XADD', KEYS[2], id, 'o', offset, 'e', epoch, 'b', ARGV[5])
if ARGV[13] == 'rows' then
  local cut = nxt - tonumber(ARGV[10]) + 1
  if cut > 0 then redis.call('XTRIM', KEYS[2], 'MINID', cut) end
elseif ARGV[13] == 'last' then
  redis.call('XTRIM', KEYS[2], 'MAXLEN', 1)
end
return {'ok', epoch, created, offset, id}
"""

_CHECKPOINT_LUA = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local cur = redis.call('HGET', KEYS[2], 'o')
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'o', ARGV[2], 'e', ARGV[1], 'b', ARGV[3])
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next'))
local cut = math.min(tonumber(ARGV[2]), nxt - tonumber(ARGV[4])) + 1
if cut > 0 then redis.call('XTRIM', KEYS[3], 'MINID', cut) end
return 1
"""

_REBIRTH_LUA = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'next', 0, 'seq', 0)
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"""

_DELETE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[5])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', '10000', '*', 'op', 'delete', 'name', ARGV[1],
           'epoch', epoch)
return 1
"""

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _import_redis() -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # the `redis` extra is not installed
        raise ImportError(
            f"the Redis backplane needs the redis package ({exc}); "
            "pip install 'livestream[redis]'", name="redis") from exc
    return aioredis


def _sid(entry_id: Any) -> tuple[int, int]:
    s = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    a, _, b = s.partition("-")
    return int(a), int(b or 0)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _schema_json(schema: Schema) -> str:
    return json.dumps(schema.to_json(), separators=(",", ":"))


def _differing_column(mine: Schema, stored: Schema) -> str | None:
    have = {f.name: f.type for f in stored}
    return next((f.name for f in mine if have.get(f.name) != f.type),
                next((n for n in have if n not in mine.names), None))


@dataclass
class _Mirror:
    """A topic served by this node: its local state and how far the log is applied."""

    topic: Topic
    last_id: tuple[int, int] = (0, 0)
    waiters: list[tuple[tuple[int, int], asyncio.Future]] = field(default_factory=list)
    #: the last updates applied, by entry id: a publisher whose entry the reader applied
    #: before Redis's answer reached it finds its update here
    recent: OrderedDict[tuple[int, int], Update] = field(default_factory=OrderedDict)
    #: keyed topics: the offset of the newest checkpoint in Redis (the table at that offset)
    checkpoint: int = 0
    checkpointing: bool = False


class RedisBackplane(Backplane):
    """Topics in Redis, shared by every server process started with the same URL.

    ``url`` is ``redis://[:password@]HOST:PORT/DB`` (``rediss://`` for TLS,
    ``unix:///path``). ``prefix`` namespaces the keys (several clusters on one Redis).
    ``publish_timeout`` bounds how long a publish waits for Redis and
    ``max_pending_publishes`` how many may wait at once; beyond either a publish raises
    :class:`~livestream.errors.BackplaneUnavailable`. ``lease_ttl`` is how long a
    derived topic's lease outlives its holder.
    """

    shared = True

    def __init__(self, url: str, *, prefix: str = "livestream",
                 publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT,
                 max_pending_publishes: int = DEFAULT_MAX_PENDING,
                 lease_ttl: float = DEFAULT_LEASE_TTL) -> None:
        super().__init__()
        self._aioredis = _import_redis()
        self.url = url
        self.prefix = prefix
        self.publish_timeout = publish_timeout
        self.max_pending_publishes = max_pending_publishes
        self.lease_ttl = lease_ttl
        self.node = secrets.token_hex(6)
        self._pool: Any = None
        self._r: Any = None  # commands
        self._rx: Any = None  # the blocking reader's connection
        self._mirrors: dict[str, _Mirror] = {}
        self._loading: dict[str, asyncio.Future] = {}
        self._catalog: set[str] = set()
        self._watched: set[str] = set()
        self._events_id = "0-0"
        self._wake_id = "0-0"
        self._cluster: str | None = None
        self._reader: asyncio.Task | None = None
        self._pending = 0
        self._tasks: set[asyncio.Future] = set()
        self._closing = False
        self.connected = False
        self.rtt_ms: float | None = None
        self.lag = 0
        self.last_error: str | None = None
        self._checked = 0.0
        self._publish_sha: Any = None
        self._delete_sha: Any = None
        self._renew_sha: Any = None
        self._checkpoint_sha: Any = None
        self._rebirth_sha: Any = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackplane:
        """The backplane for ``url`` (what ``--backplane URL`` builds)."""
        return cls(url, **options)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<RedisBackplane {self._safe_url()} {state} node={self.node}>"

    def _safe_url(self) -> str:
        if "@" in self.url:
            scheme, _, rest = self.url.partition("://")
            return f"{scheme}://***@{rest.rpartition('@')[2]}"
        return self.url

    # -- keys ----------------------------------------------------------------------------

    def _hkey(self, name: str) -> str:
        return f"{self.prefix}:t:{name}"

    def _skey(self, name: str) -> str:
        return f"{self.prefix}:s:{name}"

    def _ckey(self, name: str) -> str:
        return f"{self.prefix}:c:{name}"

    @property
    def _topics_key(self) -> str:
        return f"{self.prefix}:topics"

    @property
    def _events_key(self) -> str:
        return f"{self.prefix}:events"

    @property
    def _wake_key(self) -> str:
        return f"{self.prefix}:wake:{self.node}"

    @property
    def _cluster_key(self) -> str:
        return f"{self.prefix}:cluster"

    def lease_key(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, read the topic names, start following the logs. Raises
        :class:`BackplaneUnavailable` (one line) if Redis does not answer."""
        opts = dict(socket_connect_timeout=min(2.0, self.publish_timeout),
                    health_check_interval=0)
        try:
            # at most MAX_CONNECTIONS commands in flight; more wait (publish_timeout) for one
            self._pool = self._aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=MAX_CONNECTIONS, timeout=self.publish_timeout,
                socket_timeout=self.publish_timeout, **opts)
            self._r = self._aioredis.Redis(connection_pool=self._pool)
            self._rx = self._aioredis.Redis.from_url(
                self.url, socket_timeout=self.publish_timeout + 2.0, **opts)
            await self._r.ping()
            self._publish_sha = self._r.register_script(_PUBLISH_LUA)
            self._delete_sha = self._r.register_script(_DELETE_LUA)
            self._renew_sha = self._r.register_script(_RENEW_LUA)
            self._checkpoint_sha = self._r.register_script(_CHECKPOINT_LUA)
            self._rebirth_sha = self._r.register_script(_REBIRTH_LUA)
            await self._sync_cluster(first=True)
            self._catalog = {_s(n) for n in await self._r.smembers(self._topics_key)}
            last = await self._r.xrevrange(self._events_key, count=1)
            self._events_id = _s(last[0][0]) if last else "0-0"
            self._wake_id = _s(await self._r.xadd(self._wake_key, {"w": "1"}, maxlen=10))
            await self._r.expire(self._wake_key, 86400)
        except Exception as exc:
            await self._close_clients()
            raise BackplaneUnavailable(
                f"cannot reach the Redis backplane at {self._safe_url()}: {exc}") from None
        self.connected = True
        self._reader = asyncio.ensure_future(self._read_loop())

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._r is not None:
            with contextlib.suppress(Exception):
                await self._r.delete(self._wake_key)
        await self._close_clients()
        self.connected = False

    async def _close_clients(self) -> None:
        for c in (self._r, self._rx):
            if c is not None:
                with contextlib.suppress(Exception):
                    await c.aclose()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.disconnect()

    async def _sync_cluster(self, first: bool = False) -> bool:
        """Read the cluster id (write one if there is none). True if it changed: Redis
        lost its data since this node last looked."""
        fresh = secrets.token_hex(8)
        await self._r.set(self._cluster_key, fresh, nx=True)
        current = _s(await self._r.get(self._cluster_key))
        changed = not first and current != self._cluster
        self._cluster = current
        return changed

    def _wake(self) -> None:
        """Make the reader start a new XREAD (a topic was added to what it follows)."""
        if self._r is None or not self.connected:
            return

        async def wake() -> None:
            with contextlib.suppress(Exception):
                await self._r.xadd(self._wake_key, {"w": "1"}, maxlen=10)
        task = asyncio.ensure_future(wake())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the synchronous face ----------------------------------------------------------

    def get(self, name: str) -> Topic | None:
        m = self._mirrors.get(name)
        return m.topic if m is not None else None

    def names(self) -> list[str]:
        return sorted(self._catalog | set(self._mirrors))

    def _unsupported(self, what: str) -> TopicError:
        return TopicError(f"{what} on a Redis backplane is asynchronous: use {what}_async",
                          code="internal")

    def create(self, name: str, *, mode: Mode = "append", key: Sequence[str] | None = None,
               retention_rows: int, retention_seconds: float | None = None) -> Topic:
        raise self._unsupported("create")

    def publish(self, name: str, df: pd.DataFrame) -> Update:
        raise self._unsupported("publish")

    def publish_new(self, name: str, df: pd.DataFrame, *, mode: Mode = "append",
                    key: Sequence[str] | None = None, retention_rows: int,
                    retention_seconds: float | None = None) -> Update:
        raise self._unsupported("publish")

    def delete(self, name: str) -> bool:
        raise self._unsupported("delete")

    def status(self) -> dict:
        return {"kind": "redis", "url": self._safe_url(), "connected": self.connected,
                "rtt_ms": self.rtt_ms, "lag": self.lag, "node": self.node,
                "topics_loaded": len(self._mirrors), "error": self.last_error}

    # -- loading -------------------------------------------------------------------------

    async def ensure(self, name: str) -> Topic | None:
        """The topic's mirror, loaded from Redis the first time (``None`` if Redis has no
        such topic: the name is then watched, and its mirror made when it is created)."""
        m = self._mirrors.get(name)
        if m is not None:
            return m.topic
        pending = self._loading.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._loading[name] = fut
        try:
            try:
                m = await self._load(name)
            except Exception as exc:
                raise self._unavailable(exc) from None
            if m is None:
                self._watched.add(name)
                fut.set_result(None)
                return None
            if name not in self._mirrors:
                self._install(name, m)
            topic = self._mirrors[name].topic
            fut.set_result(topic)
            return topic
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._loading.pop(name, None)

    def _install(self, name: str, m: _Mirror) -> None:
        self._mirrors[name] = m
        self._catalog.add(name)
        self._watched.discard(name)
        self._wake()

    async def _load(self, name: str) -> _Mirror | None:
        """Read a topic's settings and retained log into a new mirror."""
        for _ in range(5):
            h = {_s(k): _s(v) for k, v in (await self._r.hgetall(self._hkey(name))).items()}
            if not h:
                return None
            epoch = h["epoch"]
            entries = []
            cursor = "-"
            while True:
                chunk = await self._r.xrange(self._skey(name), min=cursor, count=1000)
                entries.extend(chunk)
                if len(chunk) < 1000:
                    break
                cursor = "(" + _s(chunk[-1][0])
            if any(_s(f[b"e"]) != epoch for _, f in entries):
                continue  # deleted and created again meanwhile: read again
            schema = Schema.from_json(json.loads(h["schema"])) if h.get("schema") else None
            if entries and schema is None:
                continue  # its first batch arrived after the settings were read
            start = int(entries[0][1][b"o"]) if entries else int(h.get("next", 0))
            ckpt = None
            if h.get("mode") == "keyed" and schema is not None:
                ckpt = {_s(k): v for k, v in (await self._r.hgetall(self._ckey(name))).items()}
                if not ckpt or _s(ckpt["e"]) != epoch:
                    ckpt = None
            if ckpt is not None:
                m = self._from_checkpoint(name, h, epoch, schema, entries, ckpt)
            else:
                if h.get("mode") == "keyed":
                    start = 0  # rebuilt by replaying every upsert (no checkpoint yet)
                m = _Mirror(self._new_topic(name, h, epoch, schema, start))
            complete = True
            for entry_id, fields in entries:
                result, _ = self._apply(m, entry_id, fields, deliver=False)
                if result == "hole":  # trimmed by a checkpoint meanwhile: read again
                    complete = False
                    break
            if not complete:
                continue
            if not entries:
                m.last_id = (start, int(h.get("seq", 0)))
            return m
        raise BackplaneUnavailable(f"topic {name!r} kept changing while it was loaded")

    def _from_checkpoint(self, name: str, h: dict, epoch: str, schema: Schema,
                         entries: list, ckpt: dict) -> _Mirror:
        """A keyed mirror from its checkpoint (the table at offset ``o``): the retained
        upserts before ``o`` go to its log only, the later ones are applied after."""
        at = int(ckpt["o"])
        before = [(i, f) for i, f in entries if _sid(i)[0] <= at]
        start = int(before[0][1][b"o"]) if before else at
        topic = self._new_topic(name, h, epoch, schema, start)
        history = [table_to_frame(read_arrow(f[b"b"]), schema) for _, f in before]
        topic.restore_keyed(table_to_frame(read_arrow(ckpt["b"]), schema), history)
        m = _Mirror(topic, checkpoint=at)
        if before:
            m.last_id = _sid(before[-1][0])
        return m

    def _maybe_checkpoint(self, name: str, m: _Mirror) -> None:
        """After a publish to a keyed topic: every ``retention_rows`` upserts, save its
        table in Redis, so that the log before it can be trimmed."""
        t = m.topic
        if t.mode != "keyed" or m.checkpointing or t.schema is None or \
                t.next_offset - m.checkpoint < t.retention_rows:
            return
        at, epoch = t.next_offset, t.epoch
        body = encode_arrow(t.frame(), t.schema)  # the table at offset `at`, read now
        m.checkpointing = True

        async def save() -> None:
            try:
                await asyncio.wait_for(self._checkpoint_sha(
                    keys=[self._hkey(name), self._ckey(name), self._skey(name)],
                    args=[epoch, at, body, t.retention_rows]), self.publish_timeout)
                m.checkpoint = max(m.checkpoint, at)
            except Exception as exc:
                log.warning("livestream: checkpoint of keyed topic %r failed: %s", name, exc)
            finally:
                m.checkpointing = False
        task = asyncio.ensure_future(save())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _new_topic(name: str, h: dict, epoch: str, schema: Schema | None, start: int) -> Topic:
        key = tuple(json.loads(h.get("key") or "[]"))
        rs = h.get("retention_seconds") or ""
        return Topic(name, mode=h.get("mode", "append"), key=key or None,  # type: ignore[arg-type]
                     retention_rows=int(h.get("retention_rows") or 100_000),
                     retention_seconds=float(rs) if rs else None, schema=schema,
                     epoch=epoch, next_offset=start)

    # -- applying the log -----------------------------------------------------------------

    def _apply(self, m: _Mirror, entry_id: Any, fields: dict, *, deliver: bool = True,
               frame: pd.DataFrame | None = None) -> tuple[str, Update | None]:
        """Apply one log entry to a mirror: ``"applied"`` (with the update), ``"old"``
        (already applied), ``"hole"`` (entries before it are missing), ``"epoch"``
        (it belongs to another history) or ``"backwards"`` (it reuses offsets this mirror
        has: Redis lost the end of the log)."""
        sid = _sid(entry_id)
        if sid <= m.last_id:
            return "old", None
        topic = m.topic
        if _s(fields[b"e"] if b"e" in fields else fields.get("e")) != topic.epoch:
            return "epoch", None
        start = int(fields[b"o"] if b"o" in fields else fields["o"])
        if start > topic.next_offset:
            return "hole", None
        if start < topic.next_offset:  # a newer entry over offsets it had: Redis lost some
            return "backwards", None
        body = fields[b"b"] if b"b" in fields else fields["b"]
        if frame is None:
            assert topic.schema is not None
            frame = table_to_frame(read_arrow(body), topic.schema)
        update = topic.publish(frame)
        update = _replace(update, payload=bytes(body))
        m.last_id = sid
        if deliver:
            m.recent[sid] = update
            if len(m.recent) > _RECENT:
                m.recent.popitem(last=False)
            self._deliver(update)
        if m.waiters:
            keep = []
            for want, fut in m.waiters:
                if want <= sid:
                    if not fut.done():
                        fut.set_result(update if want == sid else None)
                else:
                    keep.append((want, fut))
            m.waiters = keep
        return "applied", update

    async def _read_loop(self) -> None:
        backoff = 0.05
        me = asyncio.current_task()
        cancelling = getattr(me, "cancelling", None)  # Python 3.11+
        while not self._closing:
            if cancelling is not None and cancelling():
                # redis-py can swallow a cancellation that lands while a blocking read
                # returns (redis/redis-py#2028); the request is still on the task
                raise asyncio.CancelledError
            try:
                if not self.connected:
                    await self._rx.ping()
                    await self._reconnected()
                streams = {self._events_key: self._events_id, self._wake_key: self._wake_id}
                for name, m in self._mirrors.items():
                    streams[self._skey(name)] = f"{m.last_id[0]}-{m.last_id[1]}"
                resp = await self._rx.xread(streams, block=1000, count=1000)
                backoff = 0.05
                for key, entries in resp or ():
                    await self._handle(_s(key), entries)
                if time.monotonic() - self._checked > 1.0:
                    await self._check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                if isinstance(exc, self._aioredis.ConnectionError | self._aioredis.TimeoutError
                              | OSError | asyncio.TimeoutError):
                    if self.connected:
                        log.warning("livestream: Redis backplane unreachable: %s", exc)
                    self.connected = False
                else:  # not the connection: say so loudly, and try again
                    log.error("livestream: Redis backplane reader failed", exc_info=exc)
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)

    async def _handle(self, key: str, entries: list) -> None:
        if key == self._wake_key:
            if entries:
                self._wake_id = _s(entries[-1][0])
            return
        if key == self._events_key:
            for entry_id, fields in entries:
                self._events_id = _s(entry_id)
                await self._event({_s(k): _s(v) for k, v in fields.items()})
            return
        name = key[len(self.prefix) + 3:]
        for entry_id, fields in entries:
            m = self._mirrors.get(name)
            if m is None:
                return
            if m.topic.schema is None:  # its first batch: take the schema it stored
                raw = await self._r.hget(self._hkey(name), "schema")
                if self._mirrors.get(name) is not m:
                    return
                if raw and m.topic.schema is None:  # (a publish here may have set it)
                    m.topic._set_schema(Schema.from_json(json.loads(_s(raw))))
            result, _ = self._apply(m, entry_id, fields)
            if result == "backwards":
                await self._rebirth(name, m)
                return
            if result in ("hole", "epoch"):
                await self._reload(name)
                return

    async def _event(self, ev: dict) -> None:
        name, op = ev.get("name", ""), ev.get("op")
        if op == "create":
            self._catalog.add(name)
            if name in self._watched and name not in self._mirrors:
                # someone here waits for this topic: follow it from its first entry
                m = await self._load_from_start(name, ev.get("epoch", ""))
                if m is not None and name not in self._mirrors:
                    self._install(name, m)
        elif op == "delete":
            m = self._mirrors.get(name)
            if m is not None and m.topic.epoch == ev.get("epoch"):
                self._drop(name)
            elif m is None:
                self._catalog.discard(name)

    async def _load_from_start(self, name: str, epoch: str) -> _Mirror | None:
        h = {_s(k): _s(v) for k, v in (await self._r.hgetall(self._hkey(name))).items()}
        if not h or h["epoch"] != epoch:
            return None
        schema = Schema.from_json(json.loads(h["schema"])) if h.get("schema") else None
        return _Mirror(self._new_topic(name, h, epoch, schema, 0))

    def _drop(self, name: str) -> None:
        m = self._mirrors.pop(name, None)
        self._catalog.discard(name)
        if m is None:
            return
        for _, fut in m.waiters:
            if not fut.done():
                fut.set_exception(TopicError(f"topic {name!r} was deleted", code="unknown_topic"))
                fut.exception()
        self._deliver_delete(m.topic)

    async def _reload(self, name: str) -> None:
        """Load a mirror again (its log moved on without it, or its history changed) and
        tell the listeners its state was replaced."""
        old = self._mirrors.get(name)
        if old is None:
            return
        m = await self._load(name)
        if self._mirrors.get(name) is not old:
            return
        if m is None:
            self._drop(name)
            return
        self._mirrors[name] = m
        if m.topic.epoch == old.topic.epoch:
            m.waiters = old.waiters
        else:  # publishes waiting for the old history will not see their entry
            for _, fut in old.waiters:
                if not fut.done():
                    fut.set_result(None)
        self._deliver_reset(old.topic, m.topic)
        self._wake()

    async def _check(self) -> None:
        """Once a second: round-trip time, lag behind the shared log, lost data."""
        self._checked = time.monotonic()
        t0 = time.perf_counter()
        if await self._sync_cluster():
            log.warning("livestream: Redis lost its data; every topic gets a new epoch")
            await self._recover_lost()
        self.rtt_ms = round((time.perf_counter() - t0) * 1000.0 / 2, 3)
        await self._verify_mirrors()

    async def _verify_mirrors(self) -> None:
        """Compare every mirror with its hash: the lag behind the shared log, and
        deletions or new histories whose event this node missed (it was disconnected
        longer than the event stream keeps)."""
        # what each mirror held *before* asking: publishes and reads applied while the
        # answer is on its way are newer than it, so they cannot count against Redis
        asked = [(n, m, m.topic.epoch, m.topic.next_offset) for n, m in self._mirrors.items()]
        if not asked:
            self.lag = 0
            return
        pipe = self._r.pipeline(transaction=False)
        for n, *_ in asked:
            pipe.hmget(self._hkey(n), "next", "epoch")
        answers = await pipe.execute()
        lag = 0
        for (n, m, was_epoch, was_next), (nxt, epoch) in zip(asked, answers, strict=True):
            if self._mirrors.get(n) is not m or m.topic.epoch != was_epoch:
                continue  # replaced or reloaded meanwhile: the next check looks again
            if epoch is None:
                log.info("livestream: topic %r is gone from Redis; dropping it here", n)
                self._drop(n)
            elif _s(epoch) != was_epoch:
                await self._reload(n)
            elif int(nxt) < was_next:  # Redis holds less than this node had applied
                await self._rebirth(n, m)
            else:
                lag = max(lag, int(nxt) - m.topic.next_offset)
        self.lag = lag

    async def _reconnected(self) -> None:
        log.warning("livestream: Redis backplane reachable again")
        self.connected = True
        self.last_error = None
        if await self._sync_cluster():
            log.warning("livestream: Redis lost its data; every topic gets a new epoch")
            await self._recover_lost()
        else:
            self._catalog |= {_s(n) for n in await self._r.smembers(self._topics_key)}
            await self._verify_mirrors()

    async def _rebirth(self, name: str, m: _Mirror) -> None:
        """Redis lost the end of a topic's log (restarted from an AOF or RDB file older
        than what this node applied): the history is broken, so it gets a new epoch
        (offsets from 0, the same settings and schema) and every node starts its
        subscribers over with ``gap`` (epoch) and a snapshot."""
        log.warning("livestream: Redis lost the end of topic %r's log (this node holds "
                    "it up to offset %s); the topic gets a new epoch", name,
                    m.topic.next_offset)
        await self._rebirth_sha(keys=[self._hkey(name), self._skey(name), self._ckey(name)],
                                args=[m.topic.epoch, new_epoch()])
        await self._reload(name)

    async def _recover_lost(self) -> None:
        """Redis came back empty: declare every served topic again (its settings and
        schema; a new epoch, offsets from 0; the first node to do so picks the epoch)
        and replace each mirror, so subscribers get ``gap`` (epoch) and a snapshot."""
        self._events_id = "0-0"
        self._wake_id = "0-0"
        self._catalog = {_s(n) for n in await self._r.smembers(self._topics_key)}
        for name, m in list(self._mirrors.items()):
            t = m.topic
            await self._script(name, mode=t.mode, key=t.key, retention_rows=t.retention_rows,
                               retention_seconds=t.retention_seconds, create=True,
                               declare=True, schema=t.schema)
            await self._reload(name)

    # -- leases (derived topics) ----------------------------------------------------------

    async def hold_lease(self, name: str) -> bool:
        """Take or renew this node's lease on computing derived topic ``name`` (for
        ``lease_ttl`` seconds); False while another node holds it."""
        key, ms = self.lease_key(name), max(1, int(self.lease_ttl * 1000))
        if await self._renew_sha(keys=[key], args=[self.node, ms]):
            return True
        return bool(await self._r.set(key, self.node, nx=True, px=ms))

    async def release_lease(self, name: str) -> None:
        """Give the lease up (a clean shutdown: another node takes over at once)."""
        with contextlib.suppress(Exception):
            await self._renew_sha(keys=[self.lease_key(name)], args=[self.node, 1])

    # -- writing -------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> BackplaneUnavailable:
        if isinstance(exc, BackplaneUnavailable):
            return exc
        return BackplaneUnavailable(f"the Redis backplane did not take it: "
                                    f"{type(exc).__name__}: {exc}")

    async def _script(self, name: str, *, mode: str, key: Sequence[str],
                      retention_rows: int, retention_seconds: float | None,
                      create: bool, declare: bool, schema: Schema | None = None,
                      epoch: str = "", rows: int = 0, body: bytes = b"",
                      must_be_new: bool = False) -> list:
        trim = "last" if mode == "replace" else ("none" if mode == "keyed" else "rows")
        keys = [self._hkey(name), self._skey(name), self._topics_key, self._events_key]
        args = [name, epoch, _schema_json(schema) if schema is not None else "", rows, body,
                "1" if create else "0", new_epoch(), mode, json.dumps(list(key)),
                retention_rows, "" if retention_seconds is None else repr(retention_seconds),
                "1" if must_be_new else "0", trim, "0" if declare else "1",
                _schema_json(schema) if (declare and schema is not None) else ""]
        res = await asyncio.wait_for(self._publish_sha(keys=keys, args=args),
                                     self.publish_timeout)
        return [_s(x) if isinstance(x, bytes) else x for x in res]

    async def create_async(self, name: str, *, mode: Mode = "append",
                           key: Sequence[str] | None = None, retention_rows: int,
                           retention_seconds: float | None = None) -> Topic:
        """Declare a topic cluster-wide (idempotent for the same mode and key)."""
        check_topic_name(name)
        wanted: Mode = "keyed" if key else mode
        if not self.connected:
            raise BackplaneUnavailable("the Redis backplane is unreachable")
        try:
            res = await self._script(name, mode=wanted, key=tuple(key or ()),
                                     retention_rows=retention_rows,
                                     retention_seconds=retention_seconds,
                                     create=True, declare=True)
        except Exception as exc:
            raise self._unavailable(exc) from None
        if res[0] == "settings":
            raise TopicError(
                f"topic {name!r} exists as {res[1]} (key {json.loads(res[2])}); "
                f"cannot redeclare it as {wanted} (key {list(key or ())})", code="topic_exists")
        topic = await self.ensure(name)
        if topic is None:
            raise TopicError(f"topic {name!r} was deleted while it was declared",
                             code="unknown_topic")
        return topic

    async def delete_async(self, name: str) -> bool:
        """Delete the topic's log and settings in Redis; every node drops its mirror."""
        if not self.connected:
            raise BackplaneUnavailable("the Redis backplane is unreachable")
        try:
            done = await asyncio.wait_for(self._delete_sha(
                keys=[self._hkey(name), self._skey(name), self._topics_key, self._events_key,
                      self._ckey(name)], args=[name]), self.publish_timeout)
        except Exception as exc:
            raise self._unavailable(exc) from None
        self._drop(name)
        self._catalog.discard(name)
        return bool(done)

    async def publish_async(self, name: str, df: pd.DataFrame, *,
                            create: dict | None = None) -> Update:
        """Validate, encode once, append to the shared log atomically; returns the update
        (as this node's listeners saw it) once it is applied here."""
        if not self.connected:
            raise BackplaneUnavailable("the Redis backplane is unreachable; the batch was "
                                       "not published")
        if self._pending >= self.max_pending_publishes:
            raise BackplaneUnavailable(
                f"{self._pending} publishes are waiting for Redis (max_pending_publishes); "
                "the batch was not published")
        self._pending += 1
        try:
            return await self._publish(name, df, create)
        finally:
            self._pending -= 1

    async def _publish(self, name: str, df: pd.DataFrame, create: dict | None) -> Update:
        stored: Schema | None = None
        for _attempt in range(4):
            topic = await self.ensure(name)
            if topic is None and create is None:
                raise TopicError(f"unknown topic {name!r}", code="unknown_topic")
            settings = create or {}
            probe = topic if topic is not None else Topic(
                name, mode=settings.get("mode", "append"), key=settings.get("key"),
                retention_rows=settings["retention_rows"],
                retention_seconds=settings.get("retention_seconds"))
            if stored is not None and probe.schema is None:
                probe = Topic(name, mode=probe.mode, key=probe.key or None,
                              retention_rows=probe.retention_rows, schema=stored)
            batch = probe.conform(df)
            schema = probe.schema or Schema.from_frame(batch)
            if probe.mode == "keyed":
                dup = batch.duplicated(subset=list(probe.key), keep="last")
                if dup.any():
                    batch = batch.loc[~dup.to_numpy()].reset_index(drop=True)
            body = encode_arrow(batch, schema)  # the one encoding of this batch
            try:
                res = await self._script(
                    name, mode=probe.mode, key=probe.key, retention_rows=probe.retention_rows,
                    retention_seconds=probe.retention_seconds, create=create is not None,
                    declare=False, schema=schema,
                    epoch=topic.epoch if topic is not None else "", rows=len(batch), body=body)
            except Exception as exc:
                raise self._unavailable(exc) from None
            tag = res[0]
            if tag == "schema":
                stored = Schema.from_json(json.loads(res[1]))
                if topic is not None and topic.schema is not None:
                    col = _differing_column(schema, stored)
                    raise SchemaError(f"the batch's schema differs from topic {name!r}'s "
                                      f"{stored.to_json()} at column {col!r}", column=col)
                continue  # conform to the cluster's schema (raises naming the column)
            if tag in ("epoch", "gone"):
                if name in self._mirrors:
                    await self._reload(name)
                continue
            if tag != "ok":
                raise TopicError(f"unexpected answer from the Redis backplane: {res!r}")
            epoch, offset, sid = res[1], int(res[3]), _sid(res[4])
            m = self._mirrors.get(name)
            if m is None:
                m = _Mirror(Topic(name, mode=probe.mode, key=probe.key or None,
                                  retention_rows=probe.retention_rows,
                                  retention_seconds=probe.retention_seconds,
                                  epoch=epoch, next_offset=offset))
                m.last_id = (offset, 0)
                self._install(name, m)
            if m.topic.schema is None:
                m.topic._set_schema(schema)
            if m.topic.epoch == epoch and m.topic.next_offset == offset and sid > m.last_id:
                fields = {"o": str(offset), "e": epoch, "b": body}
                _, update = self._apply(m, f"{sid[0]}-{sid[1]}", fields, frame=batch)
                if update is not None:
                    self._maybe_checkpoint(name, m)
                    return update
            if m.topic.epoch == epoch and sid <= m.last_id:  # the reader was first
                done = m.recent.get(sid)
                if done is not None and done.offset == offset:
                    self._maybe_checkpoint(name, m)
                    return done
                if offset < m.topic.next_offset:  # not ours: the log went backwards
                    await self._rebirth(name, m)
                    raise BackplaneUnavailable(
                        f"Redis lost the end of topic {name!r}'s log; the topic starts a new "
                        "epoch and the batch was not published: publish it again")
                raise BackplaneUnavailable("the batch was published, but this node fell "
                                           "behind the log before it saw it")
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            m.waiters.append((sid, fut))
            try:
                update = await asyncio.wait_for(fut, self.publish_timeout)
            except TimeoutError:
                raise BackplaneUnavailable(
                    "Redis took the batch but this node did not read it back in time") from None
            if update is None:
                raise BackplaneUnavailable("the topic's history was replaced while publishing")
            self._maybe_checkpoint(name, m)
            return update
        if stored is not None:
            raise SchemaError(f"the batch does not fit topic {name!r}'s schema "
                              f"{stored.to_json()}")
        raise BackplaneUnavailable(f"topic {name!r} kept changing while publishing to it")
