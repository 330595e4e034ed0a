"""A small blocking HTTP client for a livestream server: publish DataFrames, manage topics.

For scripts and command-line tools that push data without an event loop or a
WebSocket: :class:`HttpPublisher` POSTs each DataFrame as an Arrow IPC stream to
``/topics/{topic}`` and returns the server's ack; :class:`HttpClient` sends any
request to the server's HTTP endpoints (``GET /topics`` to list, ``DELETE
/topics/{name}`` to delete). Both keep one keep-alive connection (retried once
when the server closed it under them), send a bearer token, and speak
https with the system's CAs, a given CA bundle, or no verification.

The ``livestream publish``, ``replay`` and ``topics`` commands use it. For live
subscriptions, and for publishing from a notebook, use the WebSocket client
(:func:`livestream.connect`).

Errors: a URL that is neither http(s):// nor ws(s):// raises :class:`ValueError`
when the client is made; a server that cannot be reached, or that answers with an
error, raises :class:`HttpError` (a :class:`~livestream.errors.LivestreamError`)
whose message is one line: ``CODE: message`` when the server sent an error code.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from typing import Any

from ..errors import LivestreamError

__all__ = ["ARROW_STREAM", "HttpClient", "HttpError", "HttpPublisher"]

#: Content type of a POST body holding an Arrow IPC stream.
ARROW_STREAM = "application/vnd.apache.arrow.stream"


class HttpError(LivestreamError):
    """An HTTP request to a livestream server failed.

    ``status`` is the HTTP status of the answer (``None`` when there was none: the
    server could not be reached or dropped the connection); ``code`` is the server's
    error code (``docs/protocol.md``) when it sent one, else ``"http_error"``.
    """

    code = "http_error"

    def __init__(self, message: str, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code is not None:
            self.code = code


def _http_base(url: str) -> urllib.parse.SplitResult:
    """``http(s)://host:port`` from an http(s) or ws(s) URL (a ``/ws`` path is dropped)."""
    u = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(u.scheme, u.scheme)
    if scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"{url!r} is not an http(s):// or ws(s):// URL")
    path = u.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[:-3]
    return urllib.parse.SplitResult(scheme, u.netloc, path, "", "")


class HttpClient:
    """Requests to a livestream server's HTTP endpoints on one keep-alive connection.

    ``url`` is the server's http(s):// URL or its ws(s):// WebSocket URL (a ``/ws``
    path is dropped); ``token`` goes in an ``Authorization: Bearer`` header;
    ``insecure`` turns off TLS verification, ``ca`` is a CA bundle to verify with.
    Raises :class:`ValueError` for a URL of another scheme. Not thread-safe: one
    client per thread. :meth:`close` it when done.
    """

    def __init__(self, url: str, token: str | None = None, *, insecure: bool = False,
                 ca: str | None = None, timeout: float = 30.0) -> None:
        self.base = _http_base(url)
        self.token = token
        self.timeout = timeout
        self._ctx: ssl.SSLContext | None = None
        if self.base.scheme == "https":
            self._ctx = ssl.create_default_context(cafile=ca)
            if insecure:
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        self._conn: http.client.HTTPConnection | None = None

    def topic_url(self, topic: str) -> str:
        """The URL of ``/topics/{topic}`` on this server (the name quoted)."""
        return f"{self.base.geturl()}/topics/{urllib.parse.quote(topic, safe='')}"

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self.base.hostname or "", self.base.port
            if self._ctx is not None:
                self._conn = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                         context=self._ctx)
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Any:
        """Send one request to ``url`` (on this server); returns the decoded JSON reply,
        or raises :class:`HttpError` with the server's error code and message."""
        from ..protocol.codec import loads

        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Length"] = str(len(body))
        path = urllib.parse.urlsplit(url).path
        for attempt in (1, 2):  # one retry when a kept-alive connection was closed under us
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                self.close()
                if attempt == 2:
                    raise HttpError(f"cannot {method} {url}: {exc}") from None
            except OSError as exc:
                self.close()
                raise HttpError(f"cannot reach {self.base.geturl()}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
        try:
            reply = loads(data)
        except Exception:
            reply = None
        if resp.status != 200:
            if isinstance(reply, dict) and "message" in reply:
                code = reply.get("code", resp.status)
                raise HttpError(f"{code}: {reply['message']}", status=resp.status,
                                code=code if isinstance(code, str) else None)
            raise HttpError(f"HTTP {resp.status} from {url}", status=resp.status)
        return reply

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class HttpPublisher(HttpClient):
    """POSTs DataFrames as Arrow IPC streams to ``/topics/{topic}`` on one keep-alive connection."""

    def __init__(self, url: str, topic: str, token: str | None = None, *,
                 insecure: bool = False, ca: str | None = None, timeout: float = 30.0) -> None:
        super().__init__(url, token, insecure=insecure, ca=ca, timeout=timeout)
        self.topic = topic

    @property
    def url(self) -> str:
        """The topic's URL, where batches are POSTed."""
        return self.topic_url(self.topic)

    def publish(self, df: Any) -> dict:
        """POST one batch; returns the server's ack (``offset``, ``next``), or raises
        :class:`HttpError`."""
        from ..protocol import frame_to_arrow

        reply = self.request("POST", self.url, frame_to_arrow(df),
                             {"Content-Type": ARROW_STREAM})
        return reply if isinstance(reply, dict) else {}
