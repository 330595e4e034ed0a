"""The options of an outside-feed connection, checked once: :class:`FeedOptions`.

Everything ``livestream.connect(url, protocol="json", ...)`` accepts is validated
here, with a clear error naming the option, before anything connects. The
result is plain data (plus the TLS context and the compiled matchers) that the
sans-I/O :class:`~livestream.client.feeds.session.FeedSession` and the transport
adapter :class:`~livestream.client.feed.FeedConnection` read.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from ..backoff import Backoff
from ..transport import check_proxy
from .select import Selector, compile_selector

__all__ = ["DEFAULT_BACKOFF", "ERROR_FIELDS", "FeedOptions", "Message", "OnOpen", "Reply", "encode_message", "looks_like_error"]

Message = Mapping[str, Any] | Sequence[Any] | str | bytes
OnOpen = Sequence[Message] | Message | Callable[..., Any] | None
Reply = Message | Callable[[Any], Any]

#: Feeds' default reconnect delays: 0.5 s doubling up to 30 s, with jitter.
DEFAULT_BACKOFF = Backoff()


def encode_message(msg: Any) -> str | bytes:
    """A message as sent: bytes as is (binary frame), str as is (text), else JSON text."""
    if isinstance(msg, (bytes, bytearray)):
        return bytes(msg)
    if isinstance(msg, str):
        return msg
    try:
        return orjson.dumps(msg, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as exc:
        raise TypeError(f"cannot send {msg!r} as JSON: {exc}") from None


def as_messages(value: Any, what: str) -> list:
    """``value`` (a message or a list of them) as a list, each checked to be sendable."""
    if value is None:
        return []
    if isinstance(value, (Mapping, str, bytes, bytearray)):
        msgs = [value]
    elif isinstance(value, (list, tuple)):
        msgs = list(value)
    else:
        raise TypeError(
            f"{what} must be a message (dict, str, bytes), a list of them, or a function "
            f"of the connection; got {type(value).__name__}"
        )
    for m in msgs:
        encode_message(m)  # fail early on what cannot be sent
    return msgs


#: Fields whose value ``"error"`` marks a feed's error message when ``ack_error`` is not given.
ERROR_FIELDS = ("type", "event", "op", "status", "channel", "e")
_ERROR_FIELD_SET = frozenset(ERROR_FIELDS)


def looks_like_error(msg: Any) -> bool:
    """The default ``ack_error``: an object whose ``type``, ``event``, ``op``, ``status``,
    ``channel`` or ``e`` field is ``"error"`` (any case), the shape most feeds use."""
    if type(msg) is not dict:
        return False
    for f in _ERROR_FIELD_SET.intersection(msg):  # in C: usually empty or one field
        v = msg[f]
        if type(v) is str and len(v) == 5 and v.lower() == "error":
            return True
    return False


def _match(spec: Any, what: str) -> Callable[[Any], bool] | None:
    try:
        return compile_selector(spec)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None


def _with_params(url: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(str(k), str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _make_ssl(url: str, ca: Any, verify: bool,
              ctx: ssl.SSLContext | None) -> ssl.SSLContext | None:
    if not url.startswith("wss://"):
        if ca is not None or ctx is not None:
            raise ValueError("ca= and ssl_context= apply to wss:// URLs only")
        return None
    if ctx is not None:
        if ca is not None:
            raise ValueError("pass either ca= or ssl_context=, not both")
        return ctx
    if ca is not None and not os.path.isfile(ca):
        raise FileNotFoundError(f"ca bundle {os.fspath(ca)!r} does not exist")
    ctx = ssl.create_default_context(cafile=os.fspath(ca) if ca is not None else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class FeedOptions:
    """The checked options of one feed connection (see :class:`FeedConnection` for
    their meaning). Build with :meth:`FeedOptions.of`."""

    url: str
    #: ``url`` with ``params`` appended to its query string
    request_url: str
    headers: dict[str, str]
    subprotocols: list[str] | None
    ssl: ssl.SSLContext | None
    connect_timeout: float
    #: the ``on_open`` argument as given (a function is called at each connect)
    on_open: OnOpen
    #: the ``on_open`` messages when they are not a function
    on_open_messages: tuple
    ack: Callable[[Any], bool] | None
    ack_error: Callable[[Any], bool] | None
    ack_count: int | None
    ack_timeout: float
    #: an exact text that is a ping (``ping_match="ping"``)
    ping_text: str | None
    #: a predicate on decoded messages that are pings
    ping: Callable[[Any], bool] | None
    pong: Reply | None
    app_ping: Any
    app_ping_interval: float | None
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    stale_after: float | None
    backoff: Backoff
    max_retries: int | None
    reconnect: bool
    max_message_size: int
    proxy: str | None
    dead_letter_limit: int
    batch_interval: float
    #: messages after which a batch is converted, even within ``batch_interval``
    batch_messages: int

    @classmethod
    def of(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        subprotocols: Sequence[str] | None = None,
        ca: str | os.PathLike | None = None,
        verify: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        on_open: OnOpen = None,
        ack: Selector = None,
        ack_error: Selector | bool = None,
        ack_count: int | None = None,
        ack_timeout: float = 10.0,
        ping_match: Selector | str = None,
        pong: Reply | None = None,
        app_ping: Any = None,
        app_ping_interval: float | None = None,
        ws_ping_interval: float | None = None,
        ws_ping_timeout: float | None = None,
        stale_after: float | None = None,
        backoff: Backoff | tuple[float, float] = DEFAULT_BACKOFF,
        max_retries: int | None = None,
        reconnect: bool = True,
        max_message_size: int = 64 * 1024 * 1024,
        proxy: str | None = None,
        dead_letter_limit: int = 1000,
        batch_interval: float = 0.02,
        batch_messages: int = 2048,
    ) -> FeedOptions:
        """Check every option; raises ValueError/TypeError naming the one at fault."""
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"an outside feed URL starts with ws:// or wss://, got {url!r}")
        hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
        if cookies:
            cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
            hdrs["Cookie"] = f"{hdrs['Cookie']}; {cookie}" if "Cookie" in hdrs else cookie
        if subprotocols is not None and (
            isinstance(subprotocols, str) or not all(isinstance(p, str) for p in subprotocols)
        ):
            raise TypeError(f"subprotocols must be a list of strings, got {subprotocols!r}")
        context = _make_ssl(url, ca, verify, ssl_context)
        for name, val in (("connect_timeout", connect_timeout), ("ack_timeout", ack_timeout),
                          ("app_ping_interval", app_ping_interval),
                          ("ws_ping_interval", ws_ping_interval),
                          ("ws_ping_timeout", ws_ping_timeout), ("stale_after", stale_after)):
            if val is not None and not (isinstance(val, (int, float)) and val > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {val!r}")
        on_open_messages: tuple = ()
        if on_open is not None and not callable(on_open):
            on_open_messages = tuple(as_messages(on_open, "on_open"))
        ack_fn = _match(ack, "ack")
        if ack_error is None or ack_error is True:
            ack_error_fn: Callable[[Any], bool] | None = looks_like_error
        elif ack_error is False:
            ack_error_fn = None
        else:
            ack_error_fn = _match(ack_error, "ack_error")
        if ack_count is not None and (ack_count < 1 or ack_fn is None):
            raise ValueError("ack_count needs ack= and must be at least 1")
        if isinstance(ping_match, str):
            ping_text: str | None = ping_match
            ping_fn = None
        else:
            ping_text = None
            ping_fn = _match(ping_match, "ping_match")
        if ping_match is not None and pong is None:
            raise ValueError("ping_match needs pong= (the reply to send, or a function of the ping)")
        if pong is not None and ping_match is None:
            raise ValueError("pong= needs ping_match= (which messages are pings)")
        if (app_ping is None) != (app_ping_interval is None):
            raise ValueError("app_ping and app_ping_interval go together")
        if isinstance(backoff, tuple):
            backoff = Backoff(*backoff)
        if not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff or (initial, maximum), got {backoff!r}")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0 (or None to retry forever)")
        if not (isinstance(batch_interval, (int, float)) and 0 <= batch_interval <= 1):
            raise ValueError(f"batch_interval must be between 0 and 1 s, got {batch_interval!r}")
        if (not isinstance(batch_messages, int) or isinstance(batch_messages, bool)
                or batch_messages < 1):
            raise ValueError(f"batch_messages must be a whole number >= 1, got {batch_messages!r}")
        return cls(
            url=url, request_url=_with_params(url, params), headers=hdrs,
            subprotocols=list(subprotocols) if subprotocols is not None else None,
            ssl=context, connect_timeout=float(connect_timeout), on_open=on_open,
            on_open_messages=on_open_messages, ack=ack_fn, ack_error=ack_error_fn,
            ack_count=ack_count, ack_timeout=float(ack_timeout), ping_text=ping_text,
            ping=ping_fn, pong=pong, app_ping=app_ping, app_ping_interval=app_ping_interval,
            ws_ping_interval=ws_ping_interval, ws_ping_timeout=ws_ping_timeout,
            stale_after=stale_after, backoff=backoff, max_retries=max_retries,
            reconnect=reconnect, max_message_size=max_message_size,
            proxy=check_proxy(proxy), dead_letter_limit=dead_letter_limit, batch_interval=float(batch_interval),
            batch_messages=batch_messages,
        )
