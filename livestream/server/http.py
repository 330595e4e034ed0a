"""HTTP endpoints: topics, one-time snapshots, publishing, health and metrics.

- ``GET /health`` → ``{"status": "ok", ...}``
- ``GET /metrics`` → Prometheus text format
- ``GET /topics`` → every topic's name, mode, key, schema, rows and offsets
- ``GET /topics/{name}?format=json|arrow|csv`` → the current snapshot
- ``POST /topics/{name}`` → publish rows (JSON ``{"columns": …}`` / ``{"rows": […]}`` /
  a JSON array of row objects with content type ``application/json``, or an Arrow IPC
  stream with content type ``application/vnd.apache.arrow.stream``); needs the publish
  right on the name (and the right to create it, if it does not exist yet)
- ``DELETE /topics/{name}`` → delete the topic and its history; needs the admin
  right on the name (without any auth configured: only from loopback)
- anything else → 404 ``not_found``

Before any of them (``_Base.prepare``, see :mod:`.security`): a ``Host`` the server does not
answer gets 403 ``host_not_allowed``; a ``POST`` (or ``DELETE``) from another site's page gets
403 ``origin_not_allowed``; a ``POST`` body that is neither JSON nor Arrow gets 415
``unsupported_media_type``.

Rights come from the request's token (``Authorization: Bearer``, else ``?token=``)
by the rules of :mod:`livestream.server.auth`, the same as on the WebSocket.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import tornado.web

from ..core.topic import check_topic_name
from ..errors import AuthError, LimitError, LivestreamError, ProtocolError, SchemaError, TopicError
from ..protocol import data_header, dumps, encode_data, frame_to_arrow, loads
from .auth import Grant
from .security import media_type

if TYPE_CHECKING:
    from .app import LivestreamServer

ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: The content types a POST body may have; anything else (a form, text/plain — what a page on
#: another site can send without a CORS preflight — or none) gets 415.
POST_TYPES = ("application/json", ARROW_STREAM)
#: Methods that change nothing: no cross-site check (browsers do not let a page read the answer).
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

log = logging.getLogger("livestream.server")

_STATUS = {
    "unknown_topic": 404,
    "not_found": 404,
    "bad_topic_name": 400,
    "unauthorized": 401,
    "schema_mismatch": 422,
    "too_many_rows": 413,
    "too_many_topics": 409,
    "too_many_columns": 413,
    "limit_exceeded": 413,
    "derived_topic": 409,
    "backplane_unavailable": 503,
    "topic_exists": 409,
}


class _Base(tornado.web.RequestHandler):
    def initialize(self, server: LivestreamServer) -> None:
        self.server = server

    def prepare(self) -> None:
        """The checks every request passes first: proxy headers, Host, cross-site, body type."""
        guard = self.server.guard
        req = self.request
        guard.apply_proxy(req)
        why = guard.host_refusal(req)
        if why is not None:
            log.warning("livestream: refused %s request from %s: %s", req.method,
                        req.remote_ip, why)
            return self.fail("host_not_allowed", why, 403)
        if req.method in SAFE_METHODS:
            return None
        why = guard.cross_origin_refusal(req)
        if why is not None:
            log.warning("livestream: refused %s request from %s: %s", req.method,
                        req.remote_ip, why)
            return self.fail("origin_not_allowed", why, 403)
        if req.method == "POST" and media_type(req.headers.get("Content-Type")) not in POST_TYPES:
            given = req.headers.get("Content-Type")
            return self.fail(
                "unsupported_media_type",
                f"a POST body must be JSON (Content-Type: application/json) or an Arrow IPC "
                f"stream (Content-Type: {ARROW_STREAM}); got "
                f"{'no Content-Type' if given is None else repr(given)}", 415)
        return None

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(obj))

    def fail(self, code: str, message: str, status: int | None = None, **extra: Any) -> None:
        self.server.metrics.errors[code] += 1
        self.write_json({"type": "error", "code": code, "message": message, **extra},
                        status or _STATUS.get(code, 400))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.write_json({"type": "error", "code": "http_error", "message": self._reason},
                        status_code)

    def token(self) -> str | None:
        auth = self.request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return self.get_query_argument("token", None)

    def grant(self) -> Grant:
        """The rights of this request's token (loopback counts only without any auth)."""
        return self.server.auth.grant(self.token(), loopback=from_loopback(self.request))


class HealthHandler(_Base):
    def get(self) -> None:
        s = self.server
        backplane = s.backplane.status() or {"kind": "memory", "connected": True}
        self.write_json({
            # degraded: the shared backplane is unreachable; subscribers keep their data
            # but publishes are refused (backplane_unavailable) until it is back
            "status": "ok" if backplane.get("connected") else "degraded",
            "topics": len(s.backplane.names()),
            "connections": s.metrics.connections,
            "uptime": round(time.time() - s.started, 3),
            "backplane": backplane,
        })


class MetricsHandler(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.server.metrics.render(len(self.server.backplane.names()),
                                               self.server.backplane.status()))


class TopicsHandler(_Base):
    async def get(self) -> None:
        """The topics the token may subscribe to (or administer)."""
        bp = self.server.backplane
        grant = self.grant()
        if not (grant.sub or grant.admin) or grant.expired(None, self.server.auth.leeway):
            return self.fail("unauthorized", self.server.auth.denial(grant, "subscribe", "*"))
        names = [n for n in bp.names()
                 if grant.allows("subscribe", n) or grant.allows("delete", n)]
        infos = []
        for n in names:
            try:
                t = await self.server.ensure(n)
            except LivestreamError:  # Redis unreachable: what this node has loaded
                t = bp.get(n)
            if t is not None:
                infos.append(t.info())
        out: dict = {"topics": infos}
        status = bp.status()
        if status is not None:
            out["backplane"] = status
        self.write_json(out)


class TopicHandler(_Base):
    async def get(self, name: str) -> None:
        try:
            check_topic_name(name)  # as POST and DELETE: 400 bad_topic_name, not 404
            self.server.auth.check(self.grant(), "subscribe", name)
        except (TopicError, AuthError) as exc:
            return self.fail(exc.code, str(exc))
        try:
            topic = await self.server.ensure(name)
        except LivestreamError as exc:
            return self.fail(exc.code, str(exc))
        if topic is None:
            return self.fail("unknown_topic", f"unknown topic {name!r}")
        fmt = self.get_query_argument("format", "json")
        snap = topic.snapshot()
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            return self.finish(snap.frame.to_csv(index=False))
        if topic.schema is None:
            return self.write_json({"topic": name, "rows": 0, "schema": None})
        if fmt == "arrow":
            self.set_header("Content-Type", ARROW_STREAM)
            self.set_header("X-Livestream-Epoch", snap.epoch)
            self.set_header("X-Livestream-Offset", str(snap.offset))
            self.set_header("X-Livestream-Next", str(snap.next))
            return self.finish(frame_to_arrow(snap.frame))
        if fmt != "json":
            return self.fail("bad_message", "format must be json, arrow or csv")
        header = data_header("snapshot", name, snap.epoch, snap.offset, snap.next, snap.rows,
                             snap.ts, topic.schema)
        self.set_header("Content-Type", "application/json")
        self.finish(encode_data(header, snap.frame, topic.schema, "json"))

    async def post(self, name: str) -> None:
        s = self.server
        try:
            check_topic_name(name)
            if s.shared:
                await s.ensure(name)
            s.authorize_publish(self.grant(), name)
            ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip()
            if ctype == ARROW_STREAM:
                df = s.frame_from_message(name, {}, memoryview(self.request.body))
            else:
                body = loads(self.request.body)
                if isinstance(body, list):
                    body = {"rows": body}
                if not isinstance(body, dict):
                    raise ProtocolError("bad_message", "the body must be a JSON object or array")
                df = s.frame_from_message(name, body, None)
            update = await s.publish_async(name, df) if s.shared else s.publish(name, df)
        except SchemaError as exc:
            return self.fail(exc.code, str(exc), column=exc.column)
        except (ProtocolError, TopicError, AuthError) as exc:
            return self.fail(exc.code, str(exc))
        except LimitError as exc:
            return self.fail(exc.code, str(exc))
        except LivestreamError as exc:
            return self.fail(exc.code, str(exc))
        self.write_json({"type": "ack", "topic": name, "offset": update.offset,
                         "next": update.next, "rows": update.rows})

    async def delete(self, name: str) -> None:
        s = self.server
        try:
            check_topic_name(name)
            s.auth.check(self.grant(), "delete", name)
            if not await s.delete_async(name):
                raise TopicError(f"unknown topic {name!r}", code="unknown_topic")
        except LivestreamError as exc:
            return self.fail(exc.code, str(exc))
        self.write_json({"type": "deleted", "topic": name})


#: Headers a reverse proxy adds: a request that carries one did not come from this machine.
_FORWARDED = ("X-Forwarded-For", "X-Real-Ip", "Forwarded")


def from_loopback(request: Any) -> bool:
    """Whether the request's TCP peer is a loopback address and no proxy forwarded it.

    Reads the socket's peer address, not ``remote_ip`` (which ``xheaders`` lets a
    client set).
    """
    ctx = getattr(request.connection, "context", None)
    family = getattr(ctx, "address_family", None)
    address = getattr(ctx, "address", None)
    if family not in (socket.AF_INET, socket.AF_INET6) or not address:
        return False
    if any(h in request.headers for h in _FORWARDED):
        return False
    try:
        return ipaddress.ip_address(address[0].split("%")[0]).is_loopback
    except ValueError:
        return False


class NotFoundHandler(_Base):
    """Any other path: 404 ``not_found`` (after the same Host check as every endpoint)."""

    def prepare(self) -> None:
        super().prepare()
        if not self._finished:
            self.fail("not_found", f"no such endpoint: {self.request.path}", 404)


def routes(server: LivestreamServer) -> list:
    args = {"server": server}
    return [
        (r"/health", HealthHandler, args),
        (r"/metrics", MetricsHandler, args),
        (r"/topics", TopicsHandler, args),
        (r"/topics/([^?]+)", TopicHandler, args),
    ]
