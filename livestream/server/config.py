"""Server settings and limits, each with its documented default (``docs/protocol.md``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..core.topic import DEFAULT_RETENTION_ROWS
from .security import parse_allowed_host, parse_trusted_proxy

MiB = 1024 * 1024
DEFAULT_MAX_TOPICS = 10_000


@dataclass
class ServerConfig:
    """Everything ``livestream.serve()`` and ``livestream serve`` accept.

    Limits (defaults in brackets) and what happens when one is hit:

    - ``max_message_size`` [16 MiB]: a bigger incoming frame closes the
      connection with 1009; a bigger POST body gets HTTP 400 (Tornado's, empty body).
      Frames up to the limit may be pipelined: a connection's read buffer holds one
      whole frame plus 1 MiB of the next.
    - ``max_subscriptions`` [256 per connection]: error frame
      ``too_many_subscriptions``.
    - ``max_rows_per_publish`` [1,000,000]: error frame / HTTP 413 ``too_many_rows``.
      A publish may also hold at most ``max_message_size`` cells (rows × columns),
      so that a small frame cannot decode to a huge table: ``too_many_rows`` too.
    - ``max_columns`` [1,000]: columns of a publish (and of a topic); more gets
      error frame / HTTP 413 ``too_many_columns``, before the rows are decoded.
    - ``send_queue_bytes`` [8 MiB per client]: bytes written to a client and not
      yet flushed to its socket, snapshots included. Past it, ``slow_consumer="close"``
      closes the client with 4000; ``"conflate"`` drops its updates until its queue
      drains below half, then sends each of its topics a ``gap`` and a fresh snapshot.
      Snapshots never trip it: they are paced (below).
    - ``snapshot_slice_bytes`` [1 MiB]: a subscription's snapshot (or the rows a
      resume missed) is sent in slices of about this size (at most half of
      ``send_queue_bytes``), each only while the client's queue is below half of
      ``send_queue_bytes``; the rest follows as the client reads.
    - ``kernel_unsent_bytes`` [64 KiB]: bytes of a client's stream the kernel may hold
      unsent (``TCP_NOTSENT_LOWAT``, Linux; ignored elsewhere). What a client does not
      take beyond that waits in the server's own queue, where ``send_queue_bytes``
      bounds it and appends merge, instead of in kernel buffers of up to 4 MiB per
      connection that no limit here sees. Data in flight is not limited by it. 0 leaves
      the kernel's default.
    - ``merge_bytes`` [1 MiB]: binary appends of a topic that a client's busy socket
      makes wait are merged into one frame of up to about this size (one Arrow stream
      of several record batches; docs/protocol.md §3.3): a client that falls behind
      catches up with fewer, bigger messages. 0 sends every append as it was published.
    - ``max_send_bytes_total`` [256 MiB]: bytes queued for all clients together.
      Past it, the clients with the largest queues are disconnected (close code
      4000, connection aborted at once) until the total is below it again.
    - ``send_timeout`` [20 s]: a client with bytes queued that accepts none of them
      for this long is disconnected (4000, aborted).
    - ``retention_rows`` [100,000 per topic]: rows kept for snapshots and resume.
    - ``max_errors`` [100]: malformed messages in a row before closing with 4002.
    - ``ping_interval`` / ``ping_timeout`` [20 s / 20 s]: WebSocket keepalive; a
      client that does not answer a ping in time is disconnected.
    - ``http_idle_timeout`` [10 s]: an HTTP connection whose request headers are not
      complete this long after it opened (or after its previous request) is closed.
    - ``http_body_timeout`` [30 s]: a request body not received in full this long
      after its headers is abandoned and the connection closed.
    - ``allowed_origins`` [same host and localhost]: browser ``Origin`` values
      allowed to open a WebSocket or to ``POST``; others get HTTP 403
      (``origin_not_allowed`` for a POST). ``["*"]`` allows all.

    Protection from hostile web pages and spoofed headers (docs/protocol.md §2.2, §2.4):

    - ``allowed_hosts`` [``[]``]: extra ``Host`` header names the server answers, on
      the WebSocket handshake and every HTTP endpoint; other names get HTTP 403
      ``host_not_allowed`` (the DNS-rebinding defence). Always accepted: IP address
      literals, ``localhost`` and the bound ``host`` name; when bound beyond loopback
      (``0.0.0.0``, ``::``, a LAN address or name) also this machine's host name and
      FQDN. Entries are names (a port is ignored), ``".example.com"`` for a domain and
      its subdomains, or ``"*"`` for any Host (unsafe: turns the check off).
    - ``trusted_proxies`` [``[]``]: proxy IPs / CIDR networks whose ``X-Forwarded-For``,
      ``X-Real-Ip`` and ``X-Forwarded-Proto`` headers are believed. Empty: those
      headers are ignored and the client address is the socket peer.
    - ``max_topics`` [10,000]: topics held (declared, published or derived).
      Creating one more is refused with error ``too_many_topics`` (HTTP 409);
      nothing is created.

    Rights (``docs/protocol.md`` §2.3; rules in :mod:`livestream.server.auth`),
    all unset by default, which leaves everything open and allows deleting
    topics from loopback only:

    - ``subscribe_token`` / ``publish_token`` / ``admin_token``: static tokens.
      Subscribe: subscribe to every topic. Publish: publish to and create every
      topic. Admin: everything, deleting topics included. Setting one closes
      its action (and, for publish, creating) to requests without it.
    - ``jwt_secret_file`` (HS256 shared secret, at least 32 bytes) and/or
      ``jwt_public_key_file`` (PEM; RS256/ES256): accept signed tokens whose
      ``livestream`` claim grants ``sub``/``pub``/``admin`` topic patterns until
      ``exp``. Configuring either closes subscribe, publish and create to
      requests without a token that grants them.
    - ``jwt_algorithms`` [HS256 for the secret; RS256, ES256 for the public
      key]: the algorithms accepted. ``jwt_audience`` [none]: the ``aud`` a
      token must carry (tokens with an ``aud`` are refused when unset).
      ``jwt_leeway`` [0 s]: clock skew allowed on ``exp``/``nbf``/``iat``.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    max_message_size: int = 16 * MiB
    max_subscriptions: int = 256
    max_rows_per_publish: int = 1_000_000
    max_columns: int = 1000
    send_queue_bytes: int = 8 * MiB
    snapshot_slice_bytes: int = 1 * MiB
    merge_bytes: int = 1 * MiB
    kernel_unsent_bytes: int = 64 * 1024
    max_send_bytes_total: int = 256 * MiB
    send_timeout: float = 20.0
    slow_consumer: Literal["close", "conflate"] = "close"
    retention_rows: int = DEFAULT_RETENTION_ROWS
    retention_seconds: float | None = None
    max_errors: int = 100
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    http_idle_timeout: float = 10.0
    http_body_timeout: float = 30.0
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    trusted_proxies: list[str] = field(default_factory=list)
    subscribe_token: str | None = None
    publish_token: str | None = None
    admin_token: str | None = None
    jwt_secret_file: str | None = None
    jwt_public_key_file: str | None = None
    jwt_algorithms: list[str] | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = 0.0
    max_topics: int = DEFAULT_MAX_TOPICS
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.slow_consumer not in ("close", "conflate"):
            raise ValueError("slow_consumer must be 'close' or 'conflate'")
        for name in ("max_message_size", "max_subscriptions", "max_rows_per_publish",
                     "max_columns", "send_queue_bytes", "retention_rows", "max_errors",
                     "max_topics", "snapshot_slice_bytes", "max_send_bytes_total"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.merge_bytes < 0:
            raise ValueError("merge_bytes must be 0 (no merging) or more")
        if self.kernel_unsent_bytes < 0:
            raise ValueError("kernel_unsent_bytes must be 0 (the kernel's default) or more")
        for name in ("send_timeout", "http_idle_timeout", "http_body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("give both certfile and keyfile for TLS, or neither")
        for name, check in (("allowed_hosts", parse_allowed_host),
                            ("trusted_proxies", parse_trusted_proxy)):
            value = getattr(self, name)
            value = [value] if isinstance(value, str) else list(value)
            setattr(self, name, value)
            for entry in value:
                check(entry)  # ValueError naming the setting and the entry
        if self.jwt_leeway < 0:
            raise ValueError("jwt_leeway must be at least 0 (seconds)")
        if self.jwt_algorithms is not None:
            from .auth import HMAC_ALGORITHMS, PUBLIC_KEY_ALGORITHMS

            self.jwt_algorithms = list(self.jwt_algorithms)
            bad = [a for a in self.jwt_algorithms
                   if a not in HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS]
            if bad or not self.jwt_algorithms:
                raise ValueError(f"jwt_algorithms: unsupported {bad}; choose from "
                                 f"{list(HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS)}")

    @property
    def slice_bytes(self) -> int:
        """The size a snapshot slice aims at: ``snapshot_slice_bytes``, at most half
        of ``send_queue_bytes``."""
        return max(1, min(self.snapshot_slice_bytes, self.send_queue_bytes // 2))

    @property
    def pacing_bytes(self) -> int:
        """A client gets its next snapshot slice only while its queue stays below this."""
        return max(1, self.send_queue_bytes // 2)

    def limits(self) -> dict:
        """The limits a client is told in ``welcome``."""
        return {
            "max_message_size": self.max_message_size,
            "max_subscriptions": self.max_subscriptions,
            "max_rows_per_publish": self.max_rows_per_publish,
            "max_columns": self.max_columns,
            "send_queue_bytes": self.send_queue_bytes,
            "snapshot_slice_bytes": self.slice_bytes,
            "send_timeout": self.send_timeout,
            "slow_consumer": self.slow_consumer,
            "retention_rows": self.retention_rows,
            "max_topics": self.max_topics,
            "max_errors": self.max_errors,
            "ping_timeout": self.ping_timeout,
        }
