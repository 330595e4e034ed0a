"""Messages to typed rows: the row parser of outside feeds (sans-I/O).

Nothing here touches a socket or an event loop. A :class:`RowParser` is built
from a stream's ``select=``, ``path=`` and ``columns=``; it finds the record(s)
of a decoded JSON message (:meth:`RowParser.records`), reads each into a row of
raw values (:meth:`RowParser.row`: a generated extractor, value-by-value getters
where a value is missing), and turns a batch of those, one list per column, into
typed arrays and a pandas DataFrame (:meth:`RowParser.columns_to_arrays`,
:meth:`RowParser.to_frame` for records), reporting every row that does not fit
with a reason instead of raising.

Per message the work is a selector test, a path walk and the column reads (a
feed stream inlines them into one generated handler, see
:mod:`livestream.client.feeds.stream`); type coercion happens once per batch
with numpy (a fallback loop over single values runs only for a batch that holds
a bad value, to find which rows to dead-letter).

The column types and their coercions are listed in :mod:`.convert`; selectors and
paths are :mod:`.select`'s.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..._compat.pandas_internals import frame_from_arrays
from ...core.schema import Field, Schema
from .convert import (
    EPOCH_UNITS,
    Col,
    Converter,
    TypeSpec,
    apply_converter,
    convert_column,
    infer_type,
    named_converter,
    resolve_type,
    short,
)
from .select import (
    MISSING,
    PathSpec,
    Selector,
    compile_extract,
    compile_get,
    compile_selector,
    plain_get,
    simple_field_match,
    split_path,
    value_exprs,
)

__all__ = ["Column", "RowError", "RowParser"]


class RowError(ValueError):
    """A value or record that cannot become a row; the message is the dead-letter reason."""

    def __init__(self, reason: str, kind: str = "bad_value") -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class Column:
    """One output column of a feed stream.

    ``source`` is where the value sits in a record: a key, a dotted path
    (``"k.c"``) or a list index for records that are arrays (``0``); by default
    the column's own name. ``type`` is one of the types in :mod:`.convert`'s table.
    ``required=True`` dead-letters records where the value is missing or null.
    ``unit`` fixes the epoch unit (``"s"``, ``"ms"``, ``"us"``, ``"ns"``) of a
    datetime column instead of guessing it from the magnitude. ``convert`` is applied
    to each present value before the type: a function, or a name from
    :mod:`.convert`'s converters (``"number"`` turns ``"seq:42"`` into ``"42"``,
    which an ``int`` column then holds as 42).
    """

    source: str | int | None = None
    type: TypeSpec = "auto"
    required: bool = False
    unit: str | None = None
    convert: Converter = None

    def __post_init__(self) -> None:
        if self.unit is not None and self.unit not in EPOCH_UNITS:
            raise ValueError(f"Column unit must be one of s, ms, us, ns; got {self.unit!r}")


class RowParser:
    """Turns decoded messages into rows and rows into typed frames for one stream.

    ``columns`` may be ``None`` (every top-level scalar field of the first record,
    types inferred), a list of field names (types inferred), or a dict of output
    name → type, ``(source, type)``, ``(source, type, convert)`` or
    :class:`Column`. ``required`` lists column names whose absence dead-letters a
    record. ``envelope``: columns copied from the *message* onto every record that
    ``path`` selects (output name → a path in the message, ``(path, type)`` or
    :class:`Column`), e.g. ``{"pair": -1}`` for ``[42, [[...], ...], "trade", "XBT/USD"]``.
    """

    def __init__(
        self,
        *,
        select: Selector = None,
        path: PathSpec = None,
        columns: Mapping[str, Any] | Sequence[str] | None = None,
        required: Sequence[str] = (),
        envelope: Mapping[str, Any] | None = None,
    ) -> None:
        self.select = compile_selector(select)
        #: ``(key, value)`` when the selector is a one-field match (inlined by streams)
        self.select_field = simple_field_match(select)
        if path is None:
            self.path: Callable[[Any], Any] | None = None
            self.path_text = None
        elif callable(path):
            self.path = path
            self.path_text = getattr(path, "__name__", "path function")
        elif isinstance(path, (str, list, tuple)) or (
            isinstance(path, int) and not isinstance(path, bool)
        ):
            self.path = compile_get(path)
            self.path_text = (path if isinstance(path, str) else str(path) if isinstance(path, int)
                              else ".".join(map(str, path)))
        else:
            raise TypeError(
                f"path must be a dotted string such as 'data.trades', an array position, a "
                f"list of keys, or a "
                f"function of the message; got {path!r}"
            )
        self.cols: list[Col] | None = None
        self._columns: pd.Index | None = None  # the frames' columns, made once
        self.positional = False  # records are arrays, columns pick by index
        #: record → row tuple; raises (KeyError, TypeError, …) where a value is missing
        #: or the record has another shape: :meth:`row` then uses :attr:`extract_slow`
        self.extract: Callable[[Any], tuple] | None = None
        #: record → row tuple with None for each missing value (never raises)
        self.extract_slow: Callable[[Any], tuple] | None = None
        self._auto_all = columns is None
        #: columns read from the message and copied onto each of its records
        self.env_cols: list[Col] = []
        self._env_getters: tuple[Callable[[Any], Any], ...] = ()
        if envelope is not None:
            if path is None:
                raise ValueError("envelope= copies message fields onto the records path= "
                                 "selects: it needs path=")
            self._set_envelope(envelope)
        if columns is not None:
            self._set_columns(columns)
        if required:
            names = set(self.names) if self.cols is not None else None
            for r in required:
                if names is not None and r not in names:
                    raise ValueError(f"required column {r!r} is not one of the columns {sorted(names)}")
        self._required_names = tuple(required)
        if self.cols is not None:
            self._apply_required()
        self._schema: Schema | None = None

    # -- column setup --------------------------------------------------------------------

    @staticmethod
    def _col(name: Any, spec: Any) -> Col:
        if not isinstance(name, str) or not name:
            raise TypeError(f"column names must be non-empty strings, got {name!r}")
        if isinstance(spec, Column):
            c = spec
        elif isinstance(spec, tuple):
            if len(spec) not in (2, 3):
                raise TypeError(
                    f"column {name!r}: a tuple must be (source, type) or (source, type, "
                    f"convert), got {spec!r}"
                )
            c = Column(source=spec[0], type=spec[1], convert=spec[2] if len(spec) == 3 else None)
        else:
            c = Column(type=spec)
        source = name if c.source is None else c.source
        if not isinstance(source, (str, int)) or isinstance(source, bool):
            raise TypeError(f"column {name!r}: source must be a key or an index, got {source!r}")
        nested = isinstance(source, str) and "." in source
        conv, conv_name = named_converter(c.convert, name)
        return Col(name, source, resolve_type(c.type, name), c.required, c.unit, nested,
                   convert=conv, convert_name=conv_name)

    def _set_envelope(self, envelope: Mapping[str, Any]) -> None:
        if not isinstance(envelope, Mapping) or not envelope:
            raise TypeError("envelope must be a non-empty dict of column name → path in the "
                            f"message (or (path, type), or Column); got {envelope!r}")
        cols = []
        for name, spec in envelope.items():
            if isinstance(spec, (str, int)) and not isinstance(spec, bool):
                spec = Column(source=spec)
            elif isinstance(spec, tuple) and len(spec) == 2:
                spec = Column(source=spec[0], type=spec[1])
            if not isinstance(spec, Column) or spec.source is None:
                raise TypeError(f"envelope column {name!r}: give a path in the message, "
                                f"(path, type) or Column(source=...), got {spec!r}")
            cols.append(self._col(name, spec))
        self.env_cols = cols
        self._env_getters = tuple(compile_get(c.source) for c in cols)

    def envelope(self, msg: Any) -> tuple:
        """The envelope columns' raw values in ``msg`` (None where missing)."""
        return tuple([None if v is MISSING else v for v in [g(msg) for g in self._env_getters]])

    @property
    def all_cols(self) -> list[Col]:
        """The record columns then the envelope columns (the frame's columns)."""
        return [*(self.cols or ()), *self.env_cols]

    def _set_columns(self, columns: Mapping[str, Any] | Sequence[str]) -> None:
        cols: list[Col] = []
        if isinstance(columns, Mapping):
            items = list(columns.items())
        elif isinstance(columns, (list, tuple)):
            items = [(c, "auto") for c in columns]
        else:
            raise TypeError(
                "columns must be a dict of name → type (or Column), a list of field names, "
                f"or None; got {type(columns).__name__}"
            )
        if not items:
            raise ValueError("columns must name at least one column")
        for name, spec in items:
            cols.append(self._col(name, spec))
        clash = {c.name for c in cols} & {c.name for c in self.env_cols}
        if clash:
            raise ValueError(f"column {sorted(clash)[0]!r} is both a record and an envelope column")
        self.cols = cols
        self._columns = None
        self._build_getters()

    def _apply_required(self) -> None:
        assert self.cols is not None
        names = {c.name for c in self.all_cols}
        for r in self._required_names:
            if r not in names:
                raise ValueError(f"required column {r!r} is not one of the columns {sorted(names)}")
        for c in self.all_cols:
            if c.name in self._required_names:
                c.required = True

    def _build_getters(self) -> None:
        assert self.cols is not None
        self.positional = any(isinstance(c.source, int) for c in self.cols)
        for c in self.cols:
            c.slow = compile_get(c.source) if c.nested else plain_get(c.source)
        paths = [split_path(c.source) if c.nested else [c.source] for c in self.cols]
        self._paths = paths
        self.extract = compile_extract(paths)
        getters = tuple(c.slow for c in self.cols)  # type: ignore[misc]

        def extract_slow(rec: Any) -> tuple:
            return tuple([None if v is MISSING else v for v in [g(rec) for g in getters]])

        self.extract_slow = extract_slow

    def value_exprs(self, var: str) -> list[str]:
        """Per column, a Python expression reading its value from the record named
        ``var`` (raising where the value is missing; see :func:`value_exprs`)."""
        assert self.cols is not None
        return value_exprs(self._paths, var)

    @property
    def names(self) -> list[str]:
        """Output column names (empty until inferred when ``columns`` was None)."""
        return [c.name for c in self.all_cols] if self.cols is not None else []

    def _infer_columns(self, record: Any) -> None:
        if type(record) is not dict:
            raise RowError(
                f"cannot infer columns from a record of type {type(record).__name__}; "
                "pass columns=", "bad_record",
            )
        env = {c.name for c in self.env_cols}
        names = [k for k, v in record.items() if not isinstance(v, (dict, list)) and k not in env]
        if not names:
            raise RowError("cannot infer columns: the record has no scalar fields", "bad_record")
        self._set_columns(names)
        self._apply_required()

    # -- per message ---------------------------------------------------------------------

    def records(self, msg: Any) -> Any:
        """The record(s) a selected message holds: a dict, a list of them, or raise RowError."""
        if self.path is None:
            return msg
        try:
            recs = self.path(msg)
        except Exception as exc:
            raise RowError(f"path {self.path_text!r} raised {exc!r}", "bad_path") from exc
        if recs is MISSING or recs is None:
            raise RowError(f"path {self.path_text!r} not found in the message", "bad_path")
        return recs

    def collect(self, recs: Any, out: list) -> None:
        """Add the record(s) found at the path of one message to ``out`` (checked later)."""
        if type(recs) is list:
            if self.positional and recs and type(recs[0]) not in (dict, list):
                out.append(recs)  # one array record such as [price, qty, time]
            else:
                out.extend(recs)
        else:
            out.append(recs)

    def row(self, rec: Any) -> tuple:
        """One record → its row tuple (raw values, None where missing), or raise RowError.

        The first record of a stream without ``columns`` decides the columns.
        """
        t = type(rec)
        if t is not dict and not (t is list and self.positional):
            want = "an object or an array" if self.positional else "an object"
            raise RowError(f"a record must be {want}, got {t.__name__}: {short(rec)}",
                           "bad_record")
        if self.cols is None:
            self._infer_columns(rec)
        assert self.extract is not None and self.extract_slow is not None
        try:
            return self.extract(rec)
        except Exception:  # a missing key or another shape: look value by value
            return self.extract_slow(rec)

    # -- per batch -----------------------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        """The stream's schema once every column's type is known."""
        return self._schema

    def to_frame(self, records: list) -> tuple[pd.DataFrame | None, dict[int, str]]:
        """Typed DataFrame of ``records`` and ``{record index: reason}`` for those left out."""
        rows: list[tuple] = []
        at: list[int] = []
        bad: dict[int, str] = {}
        for i, rec in enumerate(records):
            try:
                rows.append(self.row(rec))
            except RowError as exc:
                bad[i] = str(exc)
            else:
                at.append(i)
        if self.cols is None:
            return None, bad
        # one pass per column: zip(*rows) would make an iterator per row, thousands of
        # short-lived GC-tracked objects that get promoted and trigger full collections
        cols_vals = [list(map(operator.itemgetter(i), rows)) for i in range(len(self.cols))]
        cols_vals += [[None] * len(rows) for _ in self.env_cols]
        frame, row_bad = self.columns_to_frame(cols_vals, len(rows))
        for j, reason in row_bad.items():
            bad[at[j]] = reason
        return frame, bad

    def columns_to_frame(self, cols_vals: list[list[Any]], n: int,
                         ) -> tuple[pd.DataFrame | None, dict[int, str]]:
        """Typed DataFrame of ``n`` rows given as one list of raw values per column (None
        where missing), and ``{row index: reason}`` for the rows left out (a value that
        does not convert, a missing required value)."""
        data, m, bad = self.columns_to_arrays(cols_vals, n)
        return (None if data is None else self.frame(data, m)), bad

    def frame(self, data: dict[str, Any], n: int) -> pd.DataFrame:
        """The DataFrame of ``n`` rows of :meth:`columns_to_arrays` (no copy)."""
        if self._columns is None:
            # one columns Index for every batch: its lookup table is built once
            self._columns = pd.Index(list(data))
        return _frame(data, n, self._columns)

    def columns_to_arrays(self, cols_vals: list[list[Any]], n: int,
                          ) -> tuple[dict[str, Any] | None, int, dict[int, str]]:
        """Typed column arrays (name → numpy or pandas array) of ``n`` rows given as one
        list of raw values per column (None where missing), how many rows they hold,
        and ``{row index: reason}`` for the rows left out (a value that does not
        convert, a missing required value).

        Columns are converted once per batch with numpy; only a batch holding a
        bad value goes value by value, to find the rows to leave out.
        """
        bad: dict[int, str] = {}
        if self.cols is None:
            return None, 0, bad
        all_cols = self.all_cols
        cols_vals = [apply_converter(vals, c, bad) if c.convert is not None else vals
                     for c, vals in zip(all_cols, cols_vals, strict=True)]
        # an "auto" column takes the type of its first non-null value; a column
        # that is null throughout the first batch becomes a string column
        for c, vals in zip(all_cols, cols_vals, strict=True):
            if c.type == "auto" and n:
                c.type = next((t for t in map(infer_type, vals) if t is not None), "string")
        converted = [convert_column(vals, c, bad) for c, vals in zip(all_cols, cols_vals, strict=True)]
        if self._schema is None and all(c.type != "auto" for c in all_cols):
            self._schema = Schema(tuple(Field(c.name, c.type) for c in all_cols))
        if n == 0:
            return None, 0, bad
        if bad:
            keep = np.ones(n, dtype=bool)
            keep[list(bad)] = False
            if not keep.any():
                return None, 0, bad
            data = {c.name: _take(arr, keep) for c, arr in zip(all_cols, converted, strict=True)}
            m = int(keep.sum())
        else:
            data = {c.name: arr for c, arr in zip(all_cols, converted, strict=True)}
            m = n
        return data, m, bad


def _frame(data: dict[str, Any], n: int, columns: pd.Index) -> pd.DataFrame:
    """A DataFrame of ``n`` rows from 1-D arrays, without copying or re-checking them
    (pandas' ``DataFrame._from_arrays``, through :mod:`livestream._compat`)."""
    return frame_from_arrays(list(data.values()), columns, n)


def _take(arr: Any, keep: np.ndarray) -> Any:
    if isinstance(arr, pd.Series):
        return arr[keep].reset_index(drop=True)
    return arr[keep]
