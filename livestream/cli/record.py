"""``livestream record``: subscribe to a topic and append its rows to Parquet.

::

    livestream record TOPIC --out trades.parquet [--url URL] [--duration S]
                      [--rotate 100MB] [--rotate-every S] [--flush-every S] [--new-only]

The recorder is a livestream :class:`~livestream.client.connection.Connection` on
livestream's background loop: it reconnects by itself and resumes by offset, so
an append topic is recorded with no row twice (:class:`RecordCursor` also trims
a snapshot that overlaps what is already written). The main thread turns what
arrived into one Parquet row group every ``--flush-every`` seconds.

Without ``--rotate``/``--rotate-every`` the recording is one file, written as a
hidden ``.NAME.inprogress`` next to it and renamed to ``--out`` when the
recording ends (a Parquet file is readable only once its footer is written).
With them, ``--out`` is a directory of parts (``part-00000.parquet`` …), each
complete once it is rotated; the part being written is hidden (``.part-…``), so
``pandas.read_parquet(out)`` reads every finished part while the recording goes
on, and ``livestream replay out --time-column ts --speed 10`` replays them.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ._common import CLIError, _positive

__all__ = ["ParquetRecorder", "RecordCursor", "parse_size", "record"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_size(text: str) -> int:
    """``"100MB"`` → 100,000,000 bytes (kB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)."""
    m = _SIZE.match(text or "")
    unit = (m.group(2) or "").lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 100MB, 512KiB, 1GB)")
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return n


# -- which rows to write (sans-I/O) -----------------------------------------------------------


@dataclass
class RecordCursor:
    """What has been written, as ``(epoch, next offset)``, and which rows of an update are new.

    The connection already drops appends it holds (protocol §10 rule 2); a
    snapshot, though, restarts the window — after a reconnect beyond retention
    it holds rows that were recorded before. :meth:`accept` says how many leading
    rows of an update to skip and how many rows were lost before it.
    """

    epoch: str | None = None
    next: int | None = None
    rows: int = 0  #: rows accepted
    skipped: int = 0  #: rows not written because they were written before
    lost: int = 0  #: rows the server no longer had (gaps)
    epochs: int = 0  #: epoch changes seen (a server restart without a backplane)

    def accept(self, kind: str, epoch: str | None, next_offset: int | None, n: int) -> int:
        """An update of ``n`` rows of ``kind`` ended at ``next_offset`` in ``epoch``;
        returns how many of its first rows to skip (0 to ``n``)."""
        if next_offset is None or kind not in ("snapshot", "append"):
            self.rows += n
            return 0
        start = next_offset - n
        skip = 0
        if epoch is not None and epoch == self.epoch and self.next is not None:
            if start < self.next:
                skip = min(n, self.next - start)
            elif start > self.next:
                self.lost += start - self.next
        elif self.epoch is not None and epoch != self.epoch:
            self.epochs += 1
        if self.next is None or epoch != self.epoch or next_offset > self.next:
            self.epoch, self.next = epoch, next_offset
        self.skipped += skip
        self.rows += n - skip
        return skip


# -- Parquet files ------------------------------------------------------------------------------


def _normalized(schema: Any) -> Any:
    """``schema`` without pandas metadata, dictionaries with int32 indices (a batch's
    categories may need more than int8), so every batch fits one file schema."""
    import pyarrow as pa

    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_dictionary(t):
            t = pa.dictionary(pa.int32(), t.value_type, t.ordered)
        fields.append(pa.field(f.name, t, f.nullable))
    return pa.schema(fields)


class ParquetRecorder:
    """Appends DataFrames to Parquet: one row group per :meth:`write`, one file, or parts
    rotated by size (``rotate_bytes``) or age (``rotate_seconds``) in a directory."""

    def __init__(self, out: str | os.PathLike, *, rotate_bytes: int | None = None,
                 rotate_seconds: float | None = None, overwrite: bool = False,
                 clock: Any = time.monotonic) -> None:
        self.out = Path(out)
        self.rotating = rotate_bytes is not None or rotate_seconds is not None
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.clock = clock
        if self.out.exists() and not overwrite:
            raise CLIError(f"{self.out} exists; pass --overwrite or another --out")
        if self.rotating:
            if self.out.exists() and not self.out.is_dir():
                raise CLIError(f"{self.out} is a file; with --rotate, --out is a directory")
            self.out.mkdir(parents=True, exist_ok=True)
            if overwrite:
                for old in self.out.glob("*part-*.parquet"):
                    old.unlink()
        else:
            if self.out.is_dir():
                raise CLIError(f"{self.out} is a directory; pass a file name or --rotate")
            self.out.parent.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []  #: finished files
        self.rows = 0
        self.row_groups = 0
        self._writer: Any = None
        self._schema: Any = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._opened_at = 0.0
        self._part = 0
        self._done_bytes = 0

    @property
    def bytes(self) -> int:
        """Bytes written so far (finished files and the one being written)."""
        cur = 0
        if self._tmp is not None and self._tmp.exists():
            cur = self._tmp.stat().st_size
        return self._done_bytes + cur

    def _open(self, schema: Any) -> None:
        import pyarrow.parquet as pq

        if self.rotating:
            name = f"part-{self._part:05d}.parquet"
            self._part += 1
            self._final = self.out / name
            self._tmp = self.out / f".{name}"
        else:
            self._final = self.out
            self._tmp = self.out.with_name(f".{self.out.name}.inprogress")
        self._schema = schema
        self._writer = pq.ParquetWriter(self._tmp, schema)
        self._opened_at = self.clock()

    def close_file(self) -> None:
        """Finish the file being written (footer, rename to its final name)."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        assert self._tmp is not None and self._final is not None
        os.replace(self._tmp, self._final)
        self._done_bytes += self._final.stat().st_size
        self.files.append(self._final)
        self._tmp = None

    def write(self, frames: list[Any]) -> None:
        """Append ``frames`` (DataFrames of one topic) as one row group."""
        import pandas as pd
        import pyarrow as pa

        frames = [f for f in frames if len(f)]
        if not frames:
            return
        df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        table = pa.Table.from_pandas(df, preserve_index=False)
        schema = _normalized(table.schema)
        if self._writer is not None and not schema.equals(self._schema):
            if not self.rotating:
                raise CLIError(
                    f"the topic's columns changed ({self._schema} → {schema}); a single "
                    "file holds one schema: record with --rotate to start a new part")
            self.close_file()
        if self._writer is None:
            self._open(schema)
        self._writer.write_table(table.replace_schema_metadata(None).cast(schema))
        self.rows += len(df)
        self.row_groups += 1
        self._maybe_rotate()

    def _maybe_rotate(self) -> None:
        if not self.rotating or self._writer is None:
            return
        too_big = self.rotate_bytes is not None and self.bytes - self._done_bytes >= self.rotate_bytes
        too_old = (self.rotate_seconds is not None
                   and self.clock() - self._opened_at >= self.rotate_seconds)
        if too_big or too_old:
            self.close_file()

    def tick(self) -> None:
        """Rotate a part that is old enough even when nothing arrives."""
        self._maybe_rotate()

    def close(self) -> None:
        self.close_file()


# -- the command ---------------------------------------------------------------------------


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@click.command()
@click.argument("topic")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=True),
              help="Parquet file to write (a directory of parts with --rotate).")
@click.option("--url", envvar="LIVESTREAM_URL", default="ws://127.0.0.1:8765/ws",
              show_default=True, help="The server's ws(s):// URL, or its http(s):// URL [env: LIVESTREAM_URL].")
@click.option("--token", envvar="LIVESTREAM_SUBSCRIBE_TOKEN", default=None,
              help="Subscribe token [env: LIVESTREAM_SUBSCRIBE_TOKEN].")
@click.option("--duration", type=float, default=None, callback=_positive,
              help="Stop after this many seconds (default: until Ctrl-C or SIGTERM).")
@click.option("--rotate", "rotate", default=None, metavar="SIZE",
              help="Start a new part when the current one reaches SIZE (e.g. 100MB); "
                   "--out is then a directory.")
@click.option("--rotate-every", type=float, default=None, callback=_positive, metavar="SECONDS",
              help="Start a new part every SECONDS (parts are readable once rotated); "
                   "--out is then a directory.")
@click.option("--flush-every", type=float, default=1.0, show_default=True, callback=_positive,
              metavar="SECONDS", help="Write what arrived as one row group this often.")
@click.option("--new-only", is_flag=True,
              help="Skip the rows the server holds when the recording starts.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--progress-every", type=float, default=2.0, show_default=True,
              callback=_positive, metavar="SECONDS",
              help="Seconds between progress lines when stdout is not a terminal.")
def record(topic: str, out: str, url: str, token: str | None, duration: float | None,
           rotate: str | None, rotate_every: float | None, flush_every: float,
           new_only: bool, overwrite: bool, progress_every: float) -> None:
    """Record TOPIC to Parquet: subscribe and append its rows as they arrive.

    Reconnects and resumes by offset (no row twice); one row group per
    --flush-every. Replay the recording with `livestream replay OUT --topic T
    --time-column C --speed N`.
    """
    from ..client.connection import Connection
    from ..core.topic import check_topic_name
    from ..errors import TopicError

    try:
        check_topic_name(topic)
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="'TOPIC'") from None
    if url.startswith(("http://", "https://")):  # LIVESTREAM_URL as the HTTP commands take it
        url = "ws" + url[4:].rstrip("/") + ("" if url.rstrip("/").endswith("/ws") else "/ws")
    if not url.startswith(("ws://", "wss://")):
        raise click.BadParameter(f"a ws:// or wss:// URL (or the server's http(s):// URL), "
                                 f"got {url!r}", param_hint="'--url'")
    try:
        rotate_bytes = parse_size(rotate) if rotate is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--rotate'") from None
    rec = ParquetRecorder(out, rotate_bytes=rotate_bytes, rotate_seconds=rotate_every,
                          overwrite=overwrite)
    cursor = RecordCursor()
    arrived: queue.Queue[tuple[Any, int]] = queue.Queue()
    first = [True]

    def on_update(sub: Any, frame: Any, kind: str) -> None:  # on the connection's loop
        skip = cursor.accept(kind, sub.epoch, sub.offset, len(frame))
        if first[0]:
            first[0] = False
            if new_only and kind == "snapshot":
                cursor.skipped += len(frame) - skip
                cursor.rows -= len(frame) - skip
                return
        if skip < len(frame):
            arrived.put((frame.iloc[skip:] if skip else frame, len(frame) - skip))

    conn = Connection(url, token=token)
    sub = conn.subscribe(topic, window=1000)
    sub.on_update(on_update)
    tty = sys.stdout.isatty()
    where = rec.out if not rec.rotating else f"{rec.out}/"
    click.echo(f"recording {topic!r} from {url} to {where} (Ctrl-C to stop)")
    t0 = time.monotonic()
    last_flush = last_progress = t0
    pending: list[Any] = []
    shown = None

    def progress(final: bool = False) -> None:
        nonlocal shown
        line = (f"recorded {rec.rows + sum(len(f) for f in pending):,} rows of {topic!r}, "
                f"{len(rec.files) + (1 if rec._writer is not None else 0)} file(s), "
                f"{_human(rec.bytes)}, {conn.state}"
                + (f", {cursor.lost:,} rows lost in gaps" if cursor.lost else "")
                + (f", {cursor.epochs} server restart(s)" if cursor.epochs else ""))
        if tty and not final:
            click.echo("\r" + line.ljust(100), nl=False)
        elif line != shown:
            click.echo(line)
        shown = line

    try:
        while duration is None or time.monotonic() - t0 < duration:
            try:
                frame, _n = arrived.get(timeout=0.05)
                pending.append(frame)
            except queue.Empty:
                pass
            now = time.monotonic()
            if now - last_flush >= flush_every:
                while True:
                    try:
                        pending.append(arrived.get_nowait()[0])
                    except queue.Empty:
                        break
                rec.write(pending)
                pending = []
                rec.tick()
                last_flush = now
            if now - last_progress >= (0.5 if tty else progress_every):
                progress()
                last_progress = now
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
        while True:
            try:
                pending.append(arrived.get_nowait()[0])
            except queue.Empty:
                break
        try:
            rec.write(pending)
            pending = []
        finally:
            rec.close()
        if tty:
            click.echo("")
    took = time.monotonic() - t0
    click.echo(f"recorded {rec.rows:,} rows of {topic!r} to {where} "
               f"({len(rec.files)} file(s), {_human(rec.bytes)}) in {took:.1f} s"
               + (f"; {cursor.lost:,} rows lost in gaps" if cursor.lost else ""))
