"""Server settings and limits, each with its documented default (``docs/protocol.md``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..core.topic import DEFAULT_RETENTION_ROWS

MiB = 1024 * 1024


@dataclass
class ServerConfig:
    """Everything ``livestream.serve()`` and ``livestream serve`` accept.

    Limits (defaults in brackets) and what happens when one is hit:

    - ``max_message_size`` [16 MiB]: a bigger incoming frame closes the
      connection with 1009; a bigger POST body gets HTTP 400 (Tornado's, empty body).
    - ``max_subscriptions`` [256 per connection]: error frame
      ``too_many_subscriptions``.
    - ``max_rows_per_publish`` [1,000,000]: error frame / HTTP 413 ``too_many_rows``.
      A publish may also hold at most ``max_message_size`` cells (rows × columns),
      so that a small frame cannot decode to a huge table: ``too_many_rows`` too.
    - ``max_columns`` [1,000]: columns of a publish (and of a topic); more gets
      error frame / HTTP 413 ``too_many_columns``, before the rows are decoded.
    - ``send_queue_bytes`` [8 MiB per client]: bytes written to a client and not
      yet flushed to its socket. Past it, ``slow_consumer="close"`` closes the
      client with 4000; ``"conflate"`` drops its updates until its queue drains
      below half, then sends each of its topics a ``gap`` and a fresh snapshot.
    - ``retention_rows`` [100,000 per topic]: rows kept for snapshots and resume.
    - ``max_errors`` [100]: malformed messages in a row before closing with 4002.
    - ``ping_interval`` / ``ping_timeout`` [20 s / 20 s]: WebSocket keepalive; a
      client that does not answer a ping in time is disconnected.
    - ``allowed_origins`` [same host and localhost]: browser ``Origin`` values
      allowed to open a WebSocket; others get HTTP 403. ``["*"]`` allows all.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    max_message_size: int = 16 * MiB
    max_subscriptions: int = 256
    max_rows_per_publish: int = 1_000_000
    max_columns: int = 1000
    send_queue_bytes: int = 8 * MiB
    slow_consumer: Literal["close", "conflate"] = "close"
    retention_rows: int = DEFAULT_RETENTION_ROWS
    retention_seconds: float | None = None
    max_errors: int = 100
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    allowed_origins: list[str] = field(default_factory=list)
    subscribe_token: str | None = None
    publish_token: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.slow_consumer not in ("close", "conflate"):
            raise ValueError("slow_consumer must be 'close' or 'conflate'")
        for name in ("max_message_size", "max_subscriptions", "max_rows_per_publish",
                     "max_columns", "send_queue_bytes", "retention_rows", "max_errors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("give both certfile and keyfile for TLS, or neither")

    def limits(self) -> dict:
        """The limits a client is told in ``welcome``."""
        return {
            "max_message_size": self.max_message_size,
            "max_subscriptions": self.max_subscriptions,
            "max_rows_per_publish": self.max_rows_per_publish,
            "max_columns": self.max_columns,
            "send_queue_bytes": self.send_queue_bytes,
            "slow_consumer": self.slow_consumer,
            "retention_rows": self.retention_rows,
        }
