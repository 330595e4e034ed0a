"""``livestream publish`` and ``livestream replay``: CSV or Parquet files to a topic over HTTP."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import click

from ..client.http import HttpPublisher
from ._common import CLIError, _console, _open_http, _positive, tls_options


def read_table(path: str, fmt: str | None = None, parse_dates: tuple[str, ...] = ()) -> Any:
    """Read a CSV or Parquet file into a DataFrame (format from the extension by default).

    A directory is read as Parquet parts (what ``livestream record --rotate`` writes;
    hidden files, such as the part still being written, are left out)."""
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        if fmt not in (None, "parquet"):
            raise click.BadParameter(f"{p.name!r} is a directory: only Parquet parts are read",
                                     param_hint="'FILE'")
        fmt = "parquet"
    if fmt is None:
        suffixes = [s.lower() for s in p.suffixes]
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            fmt = "parquet"
        elif suffixes and (suffixes[-1] in (".csv", ".txt")
                           or suffixes[-2:-1] == [".csv"]):
            fmt = "csv"
        else:
            raise click.BadParameter(f"cannot tell the format of {p.name!r}; pass --format",
                                     param_hint="'FILE'")
    try:
        df = pd.read_parquet(p) if fmt == "parquet" else pd.read_csv(p)
    except (OSError, ValueError, ImportError) as exc:
        raise CLIError(f"cannot read {p.name} as {fmt}: {exc}") from None
    except Exception as exc:  # pyarrow / parser errors
        raise CLIError(f"cannot read {p.name} as {fmt}: {type(exc).__name__}: {exc}") from None
    for c in parse_dates:
        if c not in df.columns:
            raise click.BadParameter(f"no column {c!r} in {p.name}", param_hint="'--parse-dates'")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df[c] = pd.to_datetime(df[c])
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(f"column {c!r} does not hold dates: {exc}",
                                     param_hint="'--parse-dates'") from None
    df.index = pd.RangeIndex(len(df))
    return df


def _client_options(fn: Any) -> Any:
    opts = [
        click.argument("file", type=click.Path(exists=True, dir_okay=True)),
        click.option("--topic", "-t", required=True, help="Topic to publish to."),
        click.option("--url", envvar="LIVESTREAM_URL", default="http://127.0.0.1:8765",
                     show_default=True,
                     help="The server (http(s):// or its ws(s):// URL) [env: LIVESTREAM_URL]."),
        click.option("--token", envvar="LIVESTREAM_PUBLISH_TOKEN", default=None,
                     help="Publish token [env: LIVESTREAM_PUBLISH_TOKEN]."),
        click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default=None,
                     help="File format (default: from the extension)."),
        click.option("--parse-dates", multiple=True, metavar="COLUMN",
                     help="CSV column to parse as datetimes (repeatable)."),
        click.option("--batch-rows", type=click.IntRange(min=1), default=50_000,
                     show_default=True, help="Largest number of rows per request."),
        *tls_options(),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@click.command()
@_client_options
def publish(file: str, topic: str, url: str, token: str | None, fmt: str | None,
            parse_dates: tuple[str, ...], batch_rows: int, insecure: bool,
            ca: str | None) -> None:
    """Publish a CSV or Parquet FILE to a topic, once (HTTP POST, Arrow body)."""
    from ..core.topic import check_topic_name
    from ..errors import TopicError

    try:
        check_topic_name(topic)
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="'--topic'") from None
    df = read_table(file, fmt, parse_dates)
    pub = _open_http(HttpPublisher, url, topic, token, insecure=insecure, ca=ca)
    first = last = None
    try:
        for start in range(0, max(len(df), 1), batch_rows):
            ack = pub.publish(df.iloc[start:start + batch_rows])
            first = ack.get("offset") if first is None else first
            last = ack.get("next")
    finally:
        pub.close()
    click.echo(f"published {len(df):,} rows to {topic!r} at {pub.base.geturl()} "
               f"(offsets {first}..{last})")


def _retimed(col: Any, times: Any, unit: str) -> Any:
    """``col`` shifted so its first time is now, in ``col``'s own type (datetime or number)."""
    import pandas as pd

    shifted = times + (pd.Timestamp.now(tz="UTC") - times.iloc[0])
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return shifted.dt.tz_convert(col.dtype.tz)
    if pd.api.types.is_datetime64_dtype(col):
        return shifted.dt.tz_localize(None)
    if pd.api.types.is_numeric_dtype(col):
        per = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[unit]
        vals = shifted.dt.as_unit("ns").astype("int64") / per
        return vals.astype(col.dtype) if pd.api.types.is_integer_dtype(col) else vals
    return shifted


@click.command()
@_client_options
@click.option("--time-column", "-c", required=True, metavar="COLUMN",
              help="Column holding each row's time; sets the pace.")
@click.option("--speed", type=float, default=1.0, show_default=True, callback=_positive,
              help="Replay at N× real time (10 = ten times faster).")
@click.option("--time-unit", type=click.Choice(["s", "ms", "us", "ns"]), default="s",
              show_default=True, help="Unit of a numeric time column.")
@click.option("--tick", type=float, default=0.05, show_default=True, callback=_positive,
              help="Seconds between publishes; rows due in the same tick go together.")
@click.option("--retime", is_flag=True,
              help="Shift the time column so the replay looks live (first row = now).")
def replay(file: str, topic: str, url: str, token: str | None, fmt: str | None,
           parse_dates: tuple[str, ...], batch_rows: int, insecure: bool, ca: str | None,
           time_column: str, speed: float, time_unit: str, tick: float, retime: bool) -> None:
    """Replay a recorded CSV or Parquet FILE as a live stream at --speed× real time.

    Rows are sorted by --time-column and published when their time comes
    (HTTP POST, Arrow body), so subscribers see the recording unfold as it
    happened, --speed times faster.
    """
    import numpy as np
    import pandas as pd
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ..core.topic import check_topic_name
    from ..errors import TopicError

    try:
        check_topic_name(topic)
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="'--topic'") from None
    df = read_table(file, fmt, parse_dates)
    if time_column not in df.columns:
        raise click.BadParameter(
            f"no column {time_column!r} in {Path(file).name} (columns: {', '.join(map(str, df.columns))})",
            param_hint="'--time-column'")
    col = df[time_column]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not infer format": we report errors
            if pd.api.types.is_numeric_dtype(col):
                times = pd.to_datetime(col, unit=time_unit, utc=True)
            else:
                times = pd.to_datetime(col, utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise click.BadParameter(f"column {time_column!r} does not hold times: {exc}",
                                 param_hint="'--time-column'") from None
    if times.isna().any():
        raise click.BadParameter(f"column {time_column!r} has empty times",
                                 param_hint="'--time-column'")
    order = np.argsort(times.to_numpy(), kind="stable")
    df = df.iloc[order].reset_index(drop=True)
    times = times.iloc[order].reset_index(drop=True)
    # seconds after the first row, at replay speed
    rel = ((times - times.iloc[0]).dt.total_seconds().to_numpy() / speed if len(times)
           else np.zeros(0))
    if retime and len(df):
        df[time_column] = _retimed(col.iloc[order].reset_index(drop=True), times, time_unit)
    pub = _open_http(HttpPublisher, url, topic, token, insecure=insecure, ca=ca)
    console = _console(stderr=True)
    sent, n = 0, len(df)
    last_pub = -tick
    t0 = time.monotonic()
    try:
        with Progress(
            TextColumn(f"replay → {topic}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("rows"), TimeRemainingColumn(), console=console,
        ) as progress:
            task = progress.add_task("replay", total=n)
            while sent < n:
                now = time.monotonic() - t0
                if rel[sent] > now:  # nothing due yet: wait for the next row
                    time.sleep(rel[sent] - now)
                    continue
                if now - last_pub < tick:  # rows due within one tick travel together
                    time.sleep(tick - (now - last_pub))
                    now = time.monotonic() - t0
                due = int(np.searchsorted(rel, now, side="right"))
                end = min(due, sent + batch_rows)
                pub.publish(df.iloc[sent:end])
                last_pub = now
                progress.update(task, advance=end - sent)
                sent = end
    except KeyboardInterrupt:
        click.echo(f"interrupted after {sent:,} of {n:,} rows", err=True)
        raise SystemExit(130) from None
    finally:
        pub.close()
    took = time.monotonic() - t0
    click.echo(f"replayed {sent:,} rows to {topic!r} in {took:.1f} s "
               f"(recording spans {rel[-1] * speed if len(rel) else 0:.1f} s, speed {speed:g}×)")
