"""A feed stream: a :class:`~livestream.client.subscription.Subscription` fed by an outside feed.

The connection hands every decoded message to each of its streams
(``FeedStream._feed``, a handler generated for the stream, on the loop); the
stream picks its messages, appends their values to one list per column, and
every ``batch_interval`` turns them into typed columns (:meth:`FeedStream._flush`)
appended to the window as one update.
Anything that does not fit is counted and kept in :attr:`FeedStream.dead_letters`;
nothing stops the stream.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from ...loop import call_in_loop, on_loop_thread, run_in_loop
from ..subscription import DEFAULT_WINDOW, Subscription
from . import fastpath
from .parse import RowError, RowParser
from .select import MISSING, idx

if TYPE_CHECKING:
    from ..feed import FeedConnection

log = logging.getLogger("livestream.feeds")

#: Longest message text kept in a dead letter (characters).
DEAD_LETTER_TEXT = 4096

#: Counters of ``stream.stats.extra``: one per dead-letter kind, plus paused drops.
DEAD_LETTER_KINDS = ("not_json", "select_error", "bad_path", "bad_record", "missing_field",
                     "bad_value", "internal")


@dataclass(frozen=True)
class DeadLetter:
    """A message (or one record of it) that could not become a row."""

    time: float  #: ``time.time()`` when it was rejected
    kind: str  #: one of :data:`DEAD_LETTER_KINDS`
    reason: str  #: what was wrong, naming the field or column
    #: the raw message text, or for a record that failed its column types the
    #: record as JSON (cut to :data:`DEAD_LETTER_TEXT` characters)
    message: str


#: A stream's struct batch handler: ``(texts, start) -> (messages not selected, how many
#: it took from start)`` (see :meth:`FeedStream._make_fast_batch`).
FastBatch = Callable[[list[bytes], int], tuple[Sequence[bytes], int]]

#: Records after which a column whose field never appeared is warned about (once).
MISSING_FIELD_WARN_AFTER = 10


def _fields_of(src: Any) -> list | None:
    """The field names of a record or raw message (for a hint), or None."""
    if isinstance(src, (str, bytes, bytearray)):
        try:
            src = orjson.loads(src)
        except orjson.JSONDecodeError:
            return None
    if isinstance(src, dict):
        return list(src)[:20]
    return None


def _ignore(msg: Any) -> None:
    return None


def _text(rec: Any) -> str:
    try:
        return orjson.dumps(rec).decode()
    except TypeError:
        return repr(rec)


@dataclass
class RelayStats:
    """Counters of one :meth:`FeedStream.publish_to` relay."""

    batches: int = 0
    rows: int = 0
    errors: int = 0
    last_error: str | None = None
    held: int = 0  #: rows waiting for the target connection to be live


class Relay:
    """Publishes every update of a stream into a livestream topic. Stop with :meth:`stop`."""

    def __init__(self, stream: FeedStream, target: Any, topic: str, owns_target: bool,
                 max_held_rows: int) -> None:
        self.stream = stream
        self.target = target
        self.topic = topic
        self.stats = RelayStats()
        self._owns = owns_target
        self._held: list[pd.DataFrame] = []
        self._max_held = max_held_rows
        self._stopped = False
        on_state = getattr(target, "on_state", None)
        if callable(on_state):  # send what waited as soon as the target is live again
            on_state(self._on_target_state)

    def _on_target_state(self, _target: Any, state: str) -> None:
        if state == "live" and self._held and not self._stopped:
            call_in_loop(self.stream.feed.loop, self._flush_held)

    def _flush_held(self) -> None:
        if self._held and self._target_live() and not self._stopped:
            frames, self._held = self._held, []
            self.stats.held = 0
            self._publish(pd.concat(frames, ignore_index=True))

    def __repr__(self) -> str:
        s = self.stats
        return f"<Relay {self.stream.name!r} → {self.topic!r} rows={s.rows} errors={s.errors}>"

    def _target_live(self) -> bool:
        state = getattr(self.target, "state", None)
        return state is None or state == "live"

    def _on_update(self, sub: Subscription, frame: pd.DataFrame, kind: str) -> None:
        if self._stopped or len(frame) == 0:
            return
        if not self._target_live():
            self._held.append(frame)
            self.stats.held += len(frame)
            while self.stats.held > self._max_held and self._held:
                dropped = self._held.pop(0)
                self.stats.held -= len(dropped)
                self.stats.errors += 1
                self.stats.last_error = (
                    f"target not live: dropped {len(dropped)} held rows (limit {self._max_held})"
                )
            return
        if self._held:
            frames, self._held = [*self._held, frame], []
            self.stats.held = 0
            frame = pd.concat(frames, ignore_index=True)
        self._publish(frame)

    def _publish(self, frame: pd.DataFrame) -> None:
        try:
            result = self.target.publish(self.topic, frame)
        except Exception as exc:
            self._failed(exc)
            return
        self.stats.batches += 1
        self.stats.rows += len(frame)
        add_done = getattr(result, "add_done_callback", None)
        if add_done is not None:
            def done(fut: Any) -> None:
                try:
                    exc = fut.exception()
                except BaseException as e:  # cancelled
                    exc = e
                if exc is not None:
                    self._failed(exc)
            add_done(done)

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("livestream: relay of %r to topic %r failed: %s",
                    self.stream.name, self.topic, exc)

    def stop(self) -> None:
        """Stop relaying (closing the target connection if the relay opened it)."""
        if self._stopped:
            return
        self._stopped = True
        self.stream.remove_callback(self._on_update)
        if self._owns:
            close = getattr(self.target, "close", None)
            if close is not None:
                close()


class FeedStream(Subscription):
    """The live window of messages from an outside feed. Create with :meth:`FeedConnection.stream`.

    Everything a :class:`Subscription` has (``.df``, ``.on_update``, ``.chart()``,
    ``.table()``, ``.stats``, ``.pause()``, ``.close()``), plus
    :attr:`dead_letters` and :meth:`publish_to`. ``stats.extra`` counts dead
    letters by kind (see :data:`DEAD_LETTER_KINDS`); ``stats.errors`` counts every
    dead letter and every failed callback, ``stats.last_error`` names the latest;
    ``stats.dropped`` counts records received while paused; ``stats.messages``
    counts the messages this stream selected.

    While paused, the stream ignores its messages (an outside feed cannot replay
    them): :meth:`resume` continues with what arrives from then on.
    """

    #: Whether the struct fast path (:mod:`.fastpath`) may take this stream's messages;
    #: the rows are the same either way (set False and call ``_refresh_feed()`` to
    #: compare, as the tests do)
    use_fast_path: bool = True

    def __init__(
        self,
        feed: FeedConnection,
        parser: RowParser,
        *,
        name: str,
        window: int | None = DEFAULT_WINDOW,
        dead_letter_limit: int = 1000,
        stale_after: float | None = None,
    ) -> None:
        super().__init__(name, window=window, source=feed, loop=feed.loop)
        if dead_letter_limit < 0:
            raise ValueError("dead_letter_limit must be >= 0")
        if stale_after is not None and not (
            isinstance(stale_after, (int, float)) and not isinstance(stale_after, bool)
            and stale_after > 0
        ):
            raise ValueError(f"stale_after must be a positive number of seconds, got {stale_after!r}")
        #: seconds without a selected message, while live, after which the feed is
        #: reconnected (None: no check); judged by this stream's data only
        self.stale_after = stale_after
        self._last_data = self._live_since = time.monotonic()
        self.feed = feed
        self.parser = parser
        #: The newest rejected messages, oldest first (bounded: ``dead_letter_limit``).
        self.dead_letters: deque[DeadLetter] = deque(maxlen=dead_letter_limit)
        # since the last flush: one list of raw values per column (made when the
        # columns are known), and per row where it came from (the raw message when the
        # record is the whole message, else the record) for the text of a dead letter.
        # The lists are kept (cleared, not replaced) so the per-message handler can
        # hold their bound ``append``.
        self._batch_cols: list[list[Any]] = []
        self._batch_srcs: list[Any] = []
        self._slow_rows = 0  # rows added by _take (the fast handler adds one per message)
        # the struct fast path (see .fastpath): made once the columns are known
        self._plan: fastpath.FastPlan | None = None
        #: raw text → True when the struct fast path took the message (None: no fast path)
        self._fast: Callable[[Any], bool] | None = None
        #: the same for a list of text messages (UTF-8 checked ``bytes``) from a position
        #: on: see :meth:`_make_fast_batch`
        self._fast_batch: FastBatch | None = None
        self._selected = 0
        self._flushed_selected = 0  # _selected at the last flush
        self._select = parser.select
        self._has_path = parser.path is not None
        self._relays: list[Relay] = []
        #: per column: records whose field was absent or null (see :meth:`_check_missing`)
        self.missing_counts: dict[str, int] = {}
        self._seen_columns: set[str] = set()
        self._warned_columns: set[str] = set()
        self._checked_records = 0
        self.stats_data.extra.update({k: 0 for k in DEAD_LETTER_KINDS})
        self.stats_data.extra["dead_letters"] = 0
        #: called with each message the stream's selector leaves out (the feed checks it
        #: for an error message when this is the only stream)
        self._unselected: Callable[[Any], Any] = _ignore
        self._feed = self._make_feed()
        if stale_after is not None:
            self.stats_data.extra["stale"] = 0
            call_in_loop(feed.loop, self._stale_check)

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<FeedStream {self.name!r} of {self.feed.url} {s.state} rows={len(self)} "
            f"dead_letters={s.extra.get('dead_letters', 0)}>"
        )

    # -- hot path (on the loop) -----------------------------------------------------------
    #
    # The connection calls ``stream._feed(msg, raw)`` for every decoded message. That
    # attribute is a handler generated for this stream by _make_feed: for the common
    # shape (no path, an object per message, columns known, not paused) it inlines a
    # one-field selector and the column reads, and appends the values to per-column
    # lists, so the decoded message is freed at once and no per-row object is kept.
    # Anything else (a missing field, another shape, a path) goes through _take.

    def _make_feed(self) -> Callable[[Any, str | bytes], None]:
        parser = self.parser
        self._fast = self._fast_batch = None
        if self.paused or self._has_path or parser.cols is None:
            return self._feed_any
        if len(self._batch_cols) != len(parser.cols):
            self._batch_cols = [[] for _ in parser.cols]
        self._fast = self._make_fast()
        if self._fast is not None:
            self._fast_batch = self._make_fast_batch()
        k = len(parser.cols)
        args = ", ".join(f"_a{i}" for i in range(k))
        reads = "; ".join(f"v{i} = {e}" for i, e in enumerate(parser.value_exprs("msg")))
        appends = "; ".join(f"_a{i}(v{i})" for i in range(k))
        if parser.select_field is not None:
            check = ("if type(msg) is not dict or msg.get(_key, _missing) != _want:\n"
                     "            _other(msg)\n"
                     "            return")
        else:
            check = (
                "if _select is not None:\n"
                "            try:\n"
                "                if not _select(msg):\n"
                "                    _other(msg)\n"
                "                    return\n"
                "            except Exception as exc:\n"
                "                _dead(raw, f'select raised {exc!r}', 'select_error')\n"
                "                return\n"
                "        if type(msg) is not dict:\n"
                "            _take(msg, raw)\n"
                "            return"
            )
        src = (
            f"def make(_key, _want, _missing, _select, _dead, _take, _other, idx, _s, {args}):\n"
            f"    def feed(msg, raw):\n"
            f"        {check}\n"
            f"        try:\n"
            f"            {reads}\n"
            f"        except Exception:\n"
            f"            _take(msg, raw)\n"
            f"            return\n"
            f"        {appends}; _s(raw)\n"
            f"    return feed\n"
        )
        ns: dict[str, Any] = {}
        exec(compile(src, f"<livestream feed stream {self.name!r}>", "exec"), ns)
        key, want = parser.select_field or (None, None)
        return ns["make"](key, want, MISSING, self._select, self._dead, self._take,
                          self._on_unselected, idx,
                          self._batch_srcs.append, *(c.append for c in self._batch_cols))

    def _make_fast(self) -> Callable[[Any], bool] | None:
        """The struct fast path's per-message handler (see :mod:`.fastpath`): decodes the
        raw text into the stream's Struct and appends its values to the per-column lists;
        returns False, having done nothing, for a message the general path must take
        (not text, another shape, not selected)."""
        if not self.use_fast_path:
            return None
        if self._plan is None:
            self._plan = fastpath.plan(self.parser)
        plan = self._plan
        if plan is None or len(plan.reads) != len(self._batch_cols):
            return None
        k = len(plan.reads)
        args = ", ".join(f"_a{i}" for i in range(k))
        appends = "; ".join(f"_a{i}({e})" for i, e in enumerate(plan.reads))
        check = ("" if plan.select_attr is None else
                 f"        if m.{plan.select_attr} != _want:\n"
                 f"            return False\n")
        src = (
            f"def make(_decode, _want, _s, {args}):\n"
            "    def fast(raw):\n"
            "        if raw.__class__ is not str:\n"
            "            return False\n"
            "        try:\n"
            "            m = _decode(raw)\n"
            "        except Exception:\n"
            "            return False\n"
            f"{check}"
            f"        {appends}; _s(raw)\n"
            "        return True\n"
            "    return fast\n"
        )
        ns: dict[str, Any] = {}
        exec(compile(src, f"<livestream feed stream {self.name!r} (structs)>", "exec"), ns)
        return ns["make"](plan.decode, plan.want, self._batch_srcs.append,
                          *(c.append for c in self._batch_cols))

    def _make_fast_batch(self) -> FastBatch:
        """The struct fast path for a list of text messages: ``fast_batch(texts, start)``
        decodes ``texts[start:]`` as :meth:`_make_fast`'s handler decodes each message
        (one ``map`` of the decoder, not a Python call per message) up to the first one
        the Struct refuses, and takes that run: its values read a column at a time, the
        messages it does not select returned, in order, for the general path. Returns
        ``(not selected, how many it took)``; the message after the run, if any, is one
        the Struct refused (the per-message way decides it)."""
        plan = self._plan
        assert plan is not None
        k = len(plan.reads)
        args = ", ".join(f"_a{i}" for i in range(k))
        extends = "; ".join(f"_a{i}([{e} for m in ms])" for i, e in enumerate(plan.reads))
        select = ("" if plan.select_attr is None else
                  f"        keep = [m.{plan.select_attr} == _want for m in ms]\n"
                  "        if not all(keep):\n"
                  "            others = [t for t, y in zip(texts, keep) if not y]\n"
                  "            ms = [m for m, y in zip(ms, keep) if y]\n"
                  "            texts = [t for t, y in zip(texts, keep) if y]\n")
        src = (
            f"def make(_decode, _want, _s, _islice, {args}):\n"
            "    def fast_batch(texts, start):\n"
            "        ms = []\n"
            "        try:  # extend keeps what was decoded before a refusal\n"
            "            ms.extend(map(_decode, _islice(texts, start, None)))\n"
            "        except Exception:\n"
            "            pass\n"
            "        taken = len(ms)\n"
            "        if not taken:\n"
            "            return (), 0\n"
            "        if start or taken < len(texts):\n"
            "            texts = texts[start:start + taken]\n"
            "        others = ()\n"
            f"{select}"
            f"        {extends}; _s(texts)\n"
            "        return others, taken\n"
            "    return fast_batch\n"
        )
        ns: dict[str, Any] = {}
        exec(compile(src, f"<livestream feed stream {self.name!r} (struct batches)>", "exec"),
             ns)
        return ns["make"](plan.decode, plan.want, self._batch_srcs.extend, itertools.islice,
                          *(c.extend for c in self._batch_cols))

    def _on_unselected(self, msg: Any) -> None:
        self._unselected(msg)

    def _refresh_feed(self) -> None:
        self._feed = self._make_feed()
        reroute = getattr(self.feed, "_reroute", None)
        if reroute is not None:  # the connection may call this handler directly
            reroute()

    def _feed_any(self, msg: Any, raw: str | bytes) -> None:
        """Take one decoded message: select it, collect its rows, or dead-letter it."""
        select = self._select
        if select is not None:
            try:
                if not select(msg):
                    self._on_unselected(msg)
                    return
            except Exception as exc:
                self._dead(raw, f"select raised {exc!r}", "select_error")
                return
        self._take(msg, raw)

    def _take(self, msg: Any, raw: str | bytes) -> None:
        """A selected message, any shape: its records become rows or dead letters."""
        self._selected += 1
        if self.paused:
            self.stats_data.dropped += 1
            return
        parser = self.parser
        try:
            recs = parser.records(msg) if self._has_path else msg
        except RowError as exc:
            self._dead(raw, str(exc), exc.kind)
            return
        env = parser.envelope(msg) if parser.env_cols else None
        if type(recs) is list and not (
            parser.positional and recs and type(recs[0]) not in (dict, list)
        ):
            for rec in recs:
                self._add(rec, rec, env)
        else:  # one record (an object, or an array such as [price, qty, time])
            self._add(recs, raw if recs is msg else recs, env)

    def _add(self, rec: Any, src: Any, env: tuple | None = None) -> None:
        had_columns = self.parser.cols is not None
        try:
            row = self.parser.row(rec)
        except RowError as exc:
            self._dead(_text(rec), str(exc), exc.kind)
            return
        if env is not None:
            row = (*row, *env)
        if len(self._batch_cols) != len(row):
            self._batch_cols = [[] for _ in row]
        for col, v in zip(self._batch_cols, row, strict=True):
            col.append(v)
        self._batch_srcs.append(src)
        self._slow_rows += 1
        if not had_columns:  # the first record decided the columns: a faster handler
            self._refresh_feed()

    # -- staleness (on the loop) -------------------------------------------------------------

    def set_state(self, state: str) -> None:
        if state == "live" and self.stats_data.state != "live":
            self._live_since = time.monotonic()  # silence is counted from here
        super().set_state(state)

    def _stale_check(self) -> None:
        """Every ``stale_after / 4`` s: a live, unpaused stream without data for
        ``stale_after`` s is stale; the feed drops the session and resubscribes."""
        after = self.stale_after
        if self.closed or after is None:
            return
        now = time.monotonic()
        if (not self.paused and self.feed.state == "live"
                and now - max(self._last_data, self._live_since) > after):
            reason = f"stale: stream {self.name!r} got no data for {after:g}s"
            self.stats_data.extra["stale"] += 1
            self.report_error(reason)
            log.warning("livestream: feed %s: %s", self.feed.url, reason)
            self._live_since = now  # once per silence
            self.feed._stream_stale(self, reason)
        self.feed.loop.call_later(after / 4, self._stale_check)

    def pause(self) -> None:
        if not self.paused and not self.closed:
            self._flush_from_any_thread()  # what arrived before the pause is kept
        super().pause()
        self._refresh_feed()

    def resume(self) -> None:
        super().resume()
        self._refresh_feed()

    def _not_json(self, raw: str | bytes, exc: Exception) -> None:
        self._dead(raw, f"not JSON: {exc}", "not_json")

    def _dead(self, raw: str | bytes, reason: str, kind: str) -> None:
        if not isinstance(raw, (str, bytes, bytearray, memoryview)):  # a record
            raw = _text(raw)
        if isinstance(raw, (bytes, bytearray, memoryview)):
            # characters, as for text (a character is at most 4 bytes of UTF-8)
            text = bytes(raw[:4 * DEAD_LETTER_TEXT]).decode("utf-8", "replace")[:DEAD_LETTER_TEXT]
        else:
            text = raw[:DEAD_LETTER_TEXT]
        self.dead_letters.append(DeadLetter(time.time(), kind, reason, text))
        extra = self.stats_data.extra
        extra[kind] = extra.get(kind, 0) + 1
        extra["dead_letters"] += 1
        self.report_error(reason)

    def _flush(self) -> int:
        """Turn the rows collected since the last flush into one typed frame and append it
        (end of a batch); returns how many messages the stream selected since the last
        flush (data, for staleness and for the feed's retry count)."""
        srcs = self._batch_srcs
        if srcs:
            n = len(srcs)
            cols = [c[:] for c in self._batch_cols]
            srcs = srcs[:]
            for c in self._batch_cols:
                c.clear()
            self._batch_srcs.clear()
            self._selected += n - self._slow_rows  # one per fast-path message
            self._slow_rows = 0
            if not self.closed:
                self._append_rows(cols, srcs)
        self.stats_data.messages = self._selected
        new = self._selected - self._flushed_selected
        if new:
            self._flushed_selected = self._selected
            self._last_data = time.monotonic()
        return new

    def _flush_from_any_thread(self) -> None:
        """:meth:`_flush` on the feed's loop (now when on it, else handed over and waited for)."""
        loop = self.feed.loop
        if on_loop_thread(loop):
            self._flush()
        elif loop.is_running() and not loop.is_closed():
            with contextlib.suppress(Exception):  # the loop is stuck or gone: nothing to flush to
                run_in_loop(loop, self._flush, timeout=5.0)

    def _check_missing(self, cols: list[list[Any]], srcs: list[Any]) -> None:
        """Count, per column, the records where its field was absent or null; warn once
        for a column whose field has not appeared in the first
        :data:`MISSING_FIELD_WARN_AFTER` records (a typo such as ``"prise"``)."""
        parser = self.parser
        all_cols = parser.all_cols
        if len(all_cols) != len(cols):
            return
        self._checked_records += len(srcs)
        missing = self.missing_counts
        for c, vals in zip(all_cols, cols, strict=True):
            k = vals.count(None)
            if k:
                missing[c.name] = missing.get(c.name, 0) + k
            if k < len(vals):
                self._seen_columns.add(c.name)
        if self._checked_records < MISSING_FIELD_WARN_AFTER:
            return
        for c in all_cols:
            if c.name in self._seen_columns or c.name in self._warned_columns:
                continue
            self._warned_columns.add(c.name)
            fields = _fields_of(srcs[0]) if srcs else None
            where = "message" if c in parser.env_cols else "record"
            msg = (f"column {c.name!r}: field {c.source!r} was absent or null in all "
                   f"{self._checked_records} records so far; check its name"
                   + (f" (a {where} has: {', '.join(map(str, fields))})" if fields else ""))
            self.stats_data.extra["never_seen_columns"] = len(self._warned_columns)
            self.report_error(msg)
            log.warning("livestream: feed stream %r of %s: %s", self.name, self.feed.url, msg)

    def _count_missing(self, cols: list[list[Any]], converted: bool) -> None:
        """Add each column's None values to :attr:`missing_counts` (``converted``: skip
        the columns whose conversion showed there were none)."""
        missing = self.missing_counts
        for c, vals in zip(self.parser.all_cols, cols, strict=False):
            if converted and c.no_nulls:
                continue
            k = vals.count(None)
            if k:
                missing[c.name] = missing.get(c.name, 0) + k

    def _append_rows(self, cols: list[list[Any]], srcs: list[Any]) -> None:
        checked = len(self._seen_columns) < len(cols)
        if checked:
            self._check_missing(cols, srcs)
        try:
            data, m, bad = self.parser.columns_to_arrays(cols, len(srcs))
            frame = None if data is None else self.parser.frame(data, m)
        except Exception as exc:  # a bug must not stop the stream
            log.exception("livestream: feed stream %r could not build a batch", self.name)
            if not checked:
                self._count_missing(cols, converted=False)
            for src in srcs:
                self._dead(src, f"internal error building the batch: {exc!r}", "internal")
            return
        if not checked:  # every field seen: only the counts
            self._count_missing(cols, converted=True)
        for i, reason in sorted(bad.items()):  # in message order, whatever column failed
            if reason.startswith(("a record must", "cannot infer")):
                kind = "bad_record"
            elif "missing" in reason:
                kind = "missing_field"
            else:
                kind = "bad_value"
            self._dead(srcs[i], reason, kind)
        if frame is not None:
            self.apply("append", frame, schema=self.parser.schema, columns=data)

    # -- relay ----------------------------------------------------------------------------

    def publish_to(self, target: Any, topic: str, *, max_held_rows: int = 100_000) -> Relay:
        """Publish this stream's rows into ``topic`` of a livestream server.

        ``target`` is a server handle from :func:`livestream.serve` or a livestream
        :class:`~livestream.client.connection.Connection` (anything with
        ``publish(topic, df)``), or a ``ws://``/``wss://`` URL of a livestream server,
        which is connected to for the relay (and closed with it). The rows already in
        the window are published first, then every update. While a target
        connection is not live, up to ``max_held_rows`` rows wait for it (older
        ones are dropped and counted in ``relay.stats.errors``).
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        owns = False
        if isinstance(target, str):
            if not target.startswith(("ws://", "wss://")):
                raise ValueError(f"a livestream server URL starts with ws:// or wss://, got {target!r}")
            from ..connection import Connection

            target = Connection(target)  # registered, and closed with the relay
            owns = True
        if not callable(getattr(target, "publish", None)):
            raise TypeError(
                "publish_to needs a livestream server (livestream.serve()), a livestream "
                f"Connection or a ws:// URL; got {type(target).__name__}"
            )
        relay = Relay(self, target, topic, owns, max_held_rows)
        self._relays.append(relay)

        def start() -> None:
            if len(self):
                relay._on_update(self, self.df, "append")
            self.on_update(relay._on_update)

        if on_loop_thread(self.feed.loop):
            start()
        else:
            call_in_loop(self.feed.loop, start)
        return relay

    @property
    def relays(self) -> list[Relay]:
        """The relays started with :meth:`publish_to`."""
        return list(self._relays)

    def mark_closed(self) -> None:
        """The feed ends this stream: the rows received so far are appended, then it is
        closed, and its relays stop."""
        if not self.closed:
            self._flush_from_any_thread()
        super().mark_closed()
        for r in self._relays:
            r.stop()
