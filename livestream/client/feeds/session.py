"""The decisions of an outside-feed connection, without I/O: :class:`FeedSession`.

What a feed connection decides — which state it is in, when a subscription is
acknowledged or refused, which messages are heartbeats and what answers them,
when a silent feed counts as dropped, how long to wait before the next attempt
and when to give up — is plain code here, fed events and the time, and tested
without a socket (``tests/client/test_feed_session.py``). The transport adapter
(:class:`~livestream.client.feed.FeedConnection`, on Tornado) opens sockets,
writes, runs timers and calls these methods.

A connection goes through ``connecting`` → (``subscribing`` while it waits for
acknowledgements) → ``live``; a session that fails or ends goes to
``reconnecting`` and, after :meth:`FeedSession.next_attempt`'s delay, tries again,
until ``max_retries`` consecutive failures (``failed``) or the user closes it
(``closed``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ...errors import LivestreamError
from .options import FeedOptions, encode_message

__all__ = ["FeedError", "FeedSession", "FeedStats"]


class FeedError(LivestreamError):
    """An outside feed refused or broke the session (no ack, an error ack, bad options)."""

    code = "feed_error"


@dataclass
class FeedStats:
    """Counters of a feed connection (``feed.stats``)."""

    url: str
    state: str = "connecting"
    attempts: int = 0  #: connection attempts made, successful or not
    connects: int = 0  #: handshakes that succeeded
    reconnects: int = 0  #: successful handshakes after the first
    failures: int = 0  #: consecutive failed attempts and sessions without data (0 once data flows)
    last_failure: str | None = None  #: why the last attempt failed or the last session ended
    last_failure_at: float | None = None  #: ``time.time()`` of ``last_failure``
    next_retry_in: float | None = None  #: the backoff delay chosen after the last failure
    messages: int = 0  #: messages received, all sessions
    last_message_age: float | None = None  #: seconds since a message last arrived
    rows: int = 0  #: rows appended, all streams
    rows_per_s: float = 0.0
    stale: int = 0  #: sessions dropped because the feed went silent
    subscribes: int = 0  #: times the on_open messages were sent
    acks: int = 0  #: acknowledgements received
    pings_answered: int = 0
    pings_sent: int = 0
    not_json: int = 0
    dead_letters: int = 0  #: all streams
    errors: int = 0  #: dead letters, failed callbacks, failed sends
    last_error: str | None = None
    #: error messages the feed sent (those matching ``ack_error``), all sessions
    feed_errors: int = 0
    #: the text of the last error message the feed sent (cut to 300 characters)
    last_feed_error: str | None = None
    subscriptions: int = 0  #: open streams
    #: per stream name: its errors (dead letters, failed callbacks); ``errors`` is their sum
    #: plus the connection's own
    stream_errors: dict[str, int] = field(default_factory=dict)


AckResult = Literal["ack", "acked", "refused"]


class FeedSession:
    """The state and decisions of one feed connection, across its sockets.

    ``clock`` (monotonic seconds), ``wall`` (epoch seconds) and ``rng`` (the
    backoff's jitter) are injectable for tests.
    """

    def __init__(self, options: FeedOptions, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random) -> None:
        self.options = options
        self.stats = FeedStats(options.url)
        self.clock = clock
        self.wall = wall
        self.rng = rng
        #: ``clock()`` when a message last arrived (None before the first session)
        self.last_message: float | None = None
        #: acknowledgements still expected before the session is live (0: none awaited)
        self.acks_left = 0
        self.closing = False
        #: whether the current session has had a data message (one a stream selected)
        self.had_data = False
        #: the error message the feed sent in the current session (None: none)
        self.session_error: str | None = None

    @property
    def state(self) -> str:
        return self.stats.state

    def set_state(self, state: str) -> bool:
        """Enter ``state``; whether it changed."""
        if self.stats.state == state:
            return False
        self.stats.state = state
        return True

    # -- attempts -------------------------------------------------------------------------

    def attempt(self) -> str:
        """A connection attempt starts; returns the state to show (``connecting`` before
        the first success, then ``reconnecting``)."""
        self.stats.attempts += 1
        self.had_data = False
        self.session_error = None
        return "connecting" if self.stats.connects == 0 else "reconnecting"

    def connected(self) -> bool:
        """The handshake succeeded; whether it is a reconnect."""
        s = self.stats
        s.connects += 1
        self.last_message = self.clock()
        if s.connects > 1:
            s.reconnects += 1
            return True
        return False

    def subscribing(self, messages: int) -> bool:
        """``messages`` on_open messages are being sent; whether to wait for
        acknowledgements (``ack=``) before the session is live."""
        self.stats.subscribes += 1
        if self.options.ack is None:
            self.acks_left = 0
            return False
        self.acks_left = self.options.ack_count or max(1, messages)
        return True

    def check_ack(self, msg: Any) -> AckResult | None:
        """While waiting for acknowledgements: ``"refused"`` (an ``ack_error`` message),
        ``"ack"`` (one more, others expected), ``"acked"`` (the last one), or None (not an
        acknowledgement: the message goes to the streams)."""
        o = self.options
        if self.acks_left <= 0:
            return None
        if o.ack_error is not None and o.ack_error(msg):
            self.acks_left = 0
            return "refused"
        assert o.ack is not None
        if o.ack(msg):
            self.stats.acks += 1
            self.acks_left -= 1
            return "acked" if self.acks_left <= 0 else "ack"
        return None

    def refusal(self, msg: Any) -> FeedError:
        """The error of a session whose subscription was refused by ``msg`` (recorded as the
        feed's last error message)."""
        text = self.feed_error(msg)
        self.session_error = None  # already in the reason
        return FeedError(f"subscription refused: {text}")

    def live(self) -> None:
        """The session is live (subscribed and acknowledged). The failures are not reset
        yet: that takes a data message (:meth:`data`)."""
        self.stats.next_retry_in = None
        self.acks_left = 0

    def feed_error(self, msg: Any) -> str:
        """The feed sent an error message (one matching ``ack_error``) outside the wait for
        acknowledgements; returns its text (recorded in the stats and added to the reason
        the session ends with)."""
        text = orjson.dumps(msg).decode() if not isinstance(msg, str) else msg
        text = text[:300]
        s = self.stats
        s.feed_errors += 1
        s.last_feed_error = text
        self.session_error = text
        return text

    def data(self) -> None:
        """A data message arrived in this session (one a stream selected): the series of
        failures ends."""
        if not self.had_data:
            self.had_data = True
            self.stats.failures = 0

    def failed(self, reason: str) -> None:
        """An attempt failed or a session ended, for ``reason`` (with the feed's error
        message of this session, if it sent one)."""
        s = self.stats
        s.failures += 1
        if self.session_error is not None and self.session_error not in reason:
            reason = f"{reason}; the feed said: {self.session_error}"
        s.last_failure = reason
        s.last_failure_at = self.wall()

    def next_attempt(self, was_live: bool) -> float | Literal["closed", "failed"]:
        """After a session: the delay before the next attempt, or the final state
        (``closed``: ``reconnect=False``; ``failed``: ``max_retries`` exceeded).

        A session that was live and received data counts as the first failure of a new
        series; one that ended before its first data message (a feed that accepts the
        connection, then refuses or stays silent) is one more consecutive failure, for
        ``max_retries`` and for the backoff.
        """
        s, o = self.stats, self.options
        if was_live and self.had_data:
            s.failures = 1
        if not o.reconnect:
            return "closed"
        if o.max_retries is not None and s.failures > o.max_retries:
            return "failed"
        delay = o.backoff.delay(s.failures, self.rng)
        s.next_retry_in = delay
        return delay

    # -- liveness -------------------------------------------------------------------------

    def seen(self) -> None:
        """Messages arrived (called once per batch, not per message)."""
        self.last_message = self.clock()

    def is_stale(self) -> bool:
        """Whether the feed has been silent longer than ``stale_after`` (counted)."""
        after = self.options.stale_after
        if after is None or self.clock() - (self.last_message or 0.0) <= after:
            return False
        self.stats.stale += 1
        return True

    def stale_reason(self) -> str:
        return f"stale: no message for {self.options.stale_after:g}s"

    # -- heartbeats -------------------------------------------------------------------------

    def pong(self, ping: Any) -> str | bytes | None:
        """The reply to a ping (None: nothing to send). Raises what the ``pong``
        function raises."""
        pong = self.options.pong
        reply = pong(ping) if callable(pong) else pong
        return None if reply is None else encode_message(reply)

    def app_ping(self, conn: Any) -> str | bytes | None:
        """The application-level ping to send now (None: none). Raises what the
        ``app_ping`` function raises."""
        ping = self.options.app_ping
        msg = ping(conn) if callable(ping) else ping
        return None if msg is None else encode_message(msg)
