"""Server counters, rendered in the Prometheus text exposition format (``GET /metrics``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Metrics:
    """Counters and gauges of one server process."""

    connections: int = 0
    subscriptions: int = 0
    connections_total: int = 0
    messages_sent: int = 0
    rows_sent: int = 0
    bytes_sent: int = 0
    rows_published: int = 0
    publishes: int = 0
    queue_drops: int = 0
    encodes: int = 0
    topics_deleted: int = 0
    disconnects: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    def render(self, topics: int) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, value: object, labels: str = "") -> None:
            if not any(line.startswith(f"# HELP {name} ") for line in lines):
                lines.append(f"# HELP {name} {help_}")
                lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{labels} {value}")

        metric("livestream_connections", "gauge", "Open WebSocket connections.", self.connections)
        metric("livestream_subscriptions", "gauge", "Active subscriptions.", self.subscriptions)
        metric("livestream_topics", "gauge", "Topics held.", topics)
        metric("livestream_connections_total", "counter", "WebSocket connections accepted.",
               self.connections_total)
        metric("livestream_messages_sent_total", "counter", "Frames sent to clients.",
               self.messages_sent)
        metric("livestream_rows_sent_total", "counter", "Rows sent to clients.", self.rows_sent)
        metric("livestream_bytes_sent_total", "counter", "Bytes sent to clients.", self.bytes_sent)
        metric("livestream_rows_published_total", "counter", "Rows accepted from publishers.",
               self.rows_published)
        metric("livestream_publishes_total", "counter", "Batches accepted from publishers.",
               self.publishes)
        metric("livestream_encodes_total", "counter",
               "Update encodings performed (one per update and wire encoding in use).",
               self.encodes)
        metric("livestream_queue_drops_total", "counter",
               "Updates not sent to a slow client (conflated).", self.queue_drops)
        metric("livestream_topics_deleted_total", "counter", "Topics deleted.",
               self.topics_deleted)
        if not self.disconnects:
            metric("livestream_disconnects_total", "counter", "Closed connections by reason.", 0,
                   '{reason="none"}')
        for reason, n in sorted(self.disconnects.items()):
            metric("livestream_disconnects_total", "counter", "Closed connections by reason.", n,
                   f'{{reason="{reason}"}}')
        for code, n in sorted(self.errors.items()):
            metric("livestream_errors_total", "counter", "Error frames sent, by code.", n,
                   f'{{code="{code}"}}')
        return "\n".join(lines) + "\n"
