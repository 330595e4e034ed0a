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
    appends_merged: int = 0
    encodes: int = 0
    send_queue_bytes: int = 0
    send_queue_bytes_peak: int = 0
    snapshot_slices: int = 0
    snapshot_encodes: int = 0
    snapshot_waits: int = 0
    snapshots_pending: int = 0
    topics_deleted: int = 0
    disconnects: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    def render(self, topics: int, backplane: dict | None = None) -> str:
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
        metric("livestream_appends_merged_total", "counter",
               "Appends sent merged into the frame of the append before them (held while "
               "the client's socket was busy).", self.appends_merged)
        metric("livestream_send_queue_bytes", "gauge",
               "Bytes written to all clients and not yet taken by their sockets.",
               self.send_queue_bytes)
        metric("livestream_send_queue_bytes_peak", "gauge",
               "Highest livestream_send_queue_bytes since the server started.",
               self.send_queue_bytes_peak)
        metric("livestream_snapshots_pending", "gauge",
               "Subscriptions whose snapshot (or missed rows) is still being sent.",
               self.snapshots_pending)
        metric("livestream_snapshot_slices_total", "counter",
               "Snapshot slices sent to clients.", self.snapshot_slices)
        metric("livestream_snapshot_encodes_total", "counter",
               "Snapshot slices encoded (one encoding is shared by every client that needs it).",
               self.snapshot_encodes)
        metric("livestream_snapshot_waits_total", "counter",
               "Times a snapshot paused until its client's send queue drained.",
               self.snapshot_waits)
        metric("livestream_topics_deleted_total", "counter", "Topics deleted.",
               self.topics_deleted)
        if not self.disconnects:
            metric("livestream_disconnects_total", "counter", "Closed connections by reason.", 0,
                   '{reason="none"}')
        for reason, n in sorted(self.disconnects.items()):
            metric("livestream_disconnects_total", "counter", "Closed connections by reason.", n,
                   f'{{reason="{reason}"}}')
        if backplane is not None:
            metric("livestream_backplane_connected", "gauge",
                   "1 while the shared backplane (Redis) is reachable.",
                   int(bool(backplane.get("connected"))))
            metric("livestream_backplane_lag_rows", "gauge",
                   "Rows of the shared log this node has not applied yet (most of any topic).",
                   backplane.get("lag") or 0)
            metric("livestream_backplane_rtt_seconds", "gauge",
                   "Round-trip time of the last request to the shared backplane.",
                   (backplane.get("rtt_ms") or 0.0) / 1000.0)
        for code, n in sorted(self.errors.items()):
            metric("livestream_errors_total", "counter", "Error frames sent, by code.", n,
                   f'{{code="{code}"}}')
        return "\n".join(lines) + "\n"
