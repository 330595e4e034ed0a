"""What a live view counts, whatever carries it (a notebook widget, a Bokeh server session)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ViewStats"]


@dataclass
class ViewStats:
    """Counters of one live view.

    ``rows``: rows the view took from its subscription; ``frames``: frames that
    sent an update; ``comm_messages``: comm messages it sent to the browser;
    ``last_frame_ms``: time the last frame took in the kernel.
    """

    frames: int = 0
    idle_frames: int = 0
    rows: int = 0
    comm_messages: int = 0
    last_frame_ms: float = 0.0
    errors: int = 0
    last_error: str | None = None
