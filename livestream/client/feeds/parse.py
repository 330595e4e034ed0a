"""Messages to typed columns: the sans-I/O half of outside feeds.

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

Column types (``columns={"name": type}``):

========================================  ================================================
``float`` / ``"float64"`` / ``"float32"``  numbers and numeric strings; missing → NaN
``int`` / ``"Int64"`` (nullable)           whole numbers (also ``"42"``, ``42.0``); missing → <NA>
``"int64"`` … (numpy ints)                 as above, but a missing value dead-letters the row
``bool`` / ``"boolean"`` (nullable)        true/false, 1/0, "true"/"false"; ``"bool"`` strict
``str`` / ``"string"``                     text; numbers, objects become their JSON text
``"category"``                             text stored as a category
``"datetime"`` / ``"datetime64[ns, UTC]"`` epoch s/ms/µs/ns (numbers or numeric strings;
                                           the unit is read from the magnitude unless
                                           ``Column(unit=…)`` says) and ISO-8601 strings;
                                           ``"datetime64[ns]"`` gives naive UTC times
``"auto"``                                 the type of the first value seen (number → float64,
                                           bool → boolean, text → string)
========================================  ================================================
"""

from __future__ import annotations

import datetime as _dt
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ...core.schema import (
    MASKED_TYPES,
    NUMPY_TYPES,
    STRING_DTYPE,
    Field,
    Schema,
    datetime_parts,
    is_datetime_type,
)

TypeSpec = type | str | None
Selector = Callable[[Any], bool] | Mapping[str, Any] | None
PathSpec = str | Sequence[str | int] | Callable[[Any], Any] | None

_EPOCH_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "µs": 1_000, "ns": 1}
_NAT = np.iinfo(np.int64).min


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
    the column's own name. ``type`` is one of the types in this module's table.
    ``required=True`` dead-letters records where the value is missing or null.
    ``unit`` fixes the epoch unit (``"s"``, ``"ms"``, ``"us"``, ``"ns"``) of a
    datetime column instead of guessing it from the magnitude.
    """

    source: str | int | None = None
    type: TypeSpec = "auto"
    required: bool = False
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.unit is not None and self.unit not in _EPOCH_UNITS:
            raise ValueError(f"Column unit must be one of s, ms, us, ns; got {self.unit!r}")


# -- types -------------------------------------------------------------------------------

_PY_TYPES: dict[Any, str] = {
    float: "float64",
    int: "Int64",
    bool: "boolean",
    str: "string",
    _dt.datetime: "datetime64[ns, UTC]",
    pd.Timestamp: "datetime64[ns, UTC]",
}
_ALIASES = {
    "float": "float64",
    "double": "float64",
    "int": "Int64",
    "integer": "Int64",
    "str": "string",
    "text": "string",
    "datetime": "datetime64[ns, UTC]",
    "timestamp": "datetime64[ns, UTC]",
    "time": "datetime64[ns, UTC]",
    "auto": "auto",
}


def resolve_type(spec: TypeSpec, column: str = "?") -> str:
    """A column type spec (python type or name) → a livestream logical type or ``"auto"``."""
    if spec is None:
        return "auto"
    if isinstance(spec, type) or spec in _PY_TYPES:
        t = _PY_TYPES.get(spec)
        if t is None:
            raise TypeError(
                f"column {column!r}: unsupported type {spec!r}; use float, int, bool, str, "
                "'category', 'datetime' or a livestream type name such as 'float64'"
            )
        return t
    if not isinstance(spec, str):
        raise TypeError(f"column {column!r}: a type must be a python type or a name, got {spec!r}")
    t = _ALIASES.get(spec, spec)
    if t == "auto" or t in NUMPY_TYPES or t in MASKED_TYPES or t in ("string", "category"):
        return t
    if is_datetime_type(t):
        return t
    raise ValueError(
        f"column {column!r}: unknown type {spec!r}; use float, int, bool, str, 'category', "
        "'datetime', 'datetime64[ns]', 'datetime64[ns, UTC]' or a livestream type name"
    )


def infer_type(value: Any) -> str | None:
    """The type an ``"auto"`` column gets from its first non-null value (None: undecided)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "float64"
    return "string"


# -- selecting and walking ---------------------------------------------------------------


def compile_selector(select: Selector) -> Callable[[Any], bool] | None:
    """``None`` (every message), a predicate, or a field match such as ``{"type": "ticker"}``.

    Keys of a field match may be dotted (``{"arg.channel": "trades"}``); a value
    may be a set/tuple/list of accepted values.
    """
    if select is None:
        return None
    if callable(select):
        return select
    if not isinstance(select, Mapping) or not select:
        raise TypeError(
            "select must be a predicate (a function of the message) or a non-empty dict "
            f"of field values such as {{'type': 'ticker'}}, got {select!r}"
        )
    items = []
    for k, v in select.items():
        if not isinstance(k, str):
            raise TypeError(f"select keys must be strings, got {k!r}")
        getter = _compile_get(k)
        if isinstance(v, (set, frozenset, tuple, list)):
            items.append((getter, frozenset(v), True))
        else:
            items.append((getter, v, False))
    field = simple_field_match(select)
    if field is not None:
        key, want = field

        def match_one(m: Any) -> bool:
            return type(m) is dict and m.get(key, _MISSING) == want
        return match_one

    def match(m: Any) -> bool:
        for getter, want, many in items:
            v = getter(m)
            if many:
                try:
                    if v not in want:
                        return False
                except TypeError:  # unhashable
                    return False
            elif v is _MISSING or v != want:
                return False
        return True

    return match


def simple_field_match(select: Selector) -> tuple[str, Any] | None:
    """``(key, value)`` when ``select`` is a one-field match on a top-level key, else None.

    Such a selector is ``type(m) is dict and m.get(key, <missing>) == value``, which a
    feed stream inlines into its per-message handler.
    """
    if not isinstance(select, Mapping) or len(select) != 1:
        return None
    ((key, want),) = select.items()
    if not isinstance(key, str) or "." in key or isinstance(want, (set, frozenset, tuple, list)):
        return None
    return key, want


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _split_path(path: str | int | Sequence[str | int]) -> list[str | int]:
    if isinstance(path, int):
        return [path]
    if isinstance(path, str):
        if not path:
            raise ValueError("a path must not be empty")
        return [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]
    return list(path)


def _compile_get(path: str | int | Sequence[str | int]) -> Callable[[Any], Any]:
    """A function returning the value at ``path`` or ``_MISSING``."""
    parts = _split_path(path)

    def get(obj: Any) -> Any:
        for p in parts:
            if isinstance(p, int):
                if type(obj) is list and -len(obj) <= p < len(obj):
                    obj = obj[p]
                else:
                    return _MISSING
            elif type(obj) is dict:
                obj = obj.get(p, _MISSING)
                if obj is _MISSING:
                    return obj
            else:
                return _MISSING
        return obj

    return get


# -- the parser --------------------------------------------------------------------------


@dataclass
class _Col:
    name: str
    source: str | int
    type: str
    required: bool
    unit: str | None
    nested: bool
    slow: Callable[[Any], Any] | None = None
    #: category columns: the dtype of each recent set of labels (a batch's labels are
    #: sorted, so a feed with a steady set of symbols builds its dtype once)
    cat_dtypes: dict[tuple, pd.CategoricalDtype] = field(default_factory=dict)


class RowParser:
    """Turns decoded messages into rows and rows into typed frames for one stream.

    ``columns`` may be ``None`` (every top-level scalar field of the first record,
    types inferred), a list of field names (types inferred), or a dict of output
    name → type, ``(source, type)`` or :class:`Column`. ``required`` lists
    column names whose absence dead-letters a record.
    """

    def __init__(
        self,
        *,
        select: Selector = None,
        path: PathSpec = None,
        columns: Mapping[str, Any] | Sequence[str] | None = None,
        required: Sequence[str] = (),
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
        elif isinstance(path, (str, list, tuple)):
            self.path = _compile_get(path)
            self.path_text = path if isinstance(path, str) else ".".join(map(str, path))
        else:
            raise TypeError(
                f"path must be a dotted string such as 'data.trades', a list of keys, or a "
                f"function of the message; got {path!r}"
            )
        self.cols: list[_Col] | None = None
        self._columns: pd.Index | None = None  # the frames' columns, made once
        self.positional = False  # records are arrays, columns pick by index
        #: record → row tuple; raises (KeyError, TypeError, …) where a value is missing
        #: or the record has another shape: :meth:`row` then uses :attr:`extract_slow`
        self.extract: Callable[[Any], tuple] | None = None
        #: record → row tuple with None for each missing value (never raises)
        self.extract_slow: Callable[[Any], tuple] | None = None
        self._auto_all = columns is None
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

    def _set_columns(self, columns: Mapping[str, Any] | Sequence[str]) -> None:
        cols: list[_Col] = []
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
            if not isinstance(name, str) or not name:
                raise TypeError(f"column names must be non-empty strings, got {name!r}")
            if isinstance(spec, Column):
                c = spec
            elif isinstance(spec, tuple):
                if len(spec) != 2:
                    raise TypeError(
                        f"column {name!r}: a tuple must be (source, type), got {spec!r}"
                    )
                c = Column(source=spec[0], type=spec[1])
            else:
                c = Column(type=spec)
            source = name if c.source is None else c.source
            if not isinstance(source, (str, int)) or isinstance(source, bool):
                raise TypeError(f"column {name!r}: source must be a key or an index, got {source!r}")
            nested = isinstance(source, str) and "." in source
            cols.append(_Col(name, source, resolve_type(c.type, name), c.required, c.unit, nested))
        self.cols = cols
        self._columns = None
        self._build_getters()

    def _apply_required(self) -> None:
        assert self.cols is not None
        names = {c.name for c in self.cols}
        for r in self._required_names:
            if r not in names:
                raise ValueError(f"required column {r!r} is not one of the columns {sorted(names)}")
        for c in self.cols:
            if c.name in self._required_names:
                c.required = True

    def _build_getters(self) -> None:
        assert self.cols is not None
        self.positional = any(isinstance(c.source, int) for c in self.cols)
        for c in self.cols:
            c.slow = _compile_get(c.source) if c.nested else _plain_get(c.source)
        paths = [_split_path(c.source) if c.nested else [c.source] for c in self.cols]
        self._paths = paths
        self.extract = _compile_extract(paths)
        getters = tuple(c.slow for c in self.cols)  # type: ignore[misc]

        def extract_slow(rec: Any) -> tuple:
            return tuple([None if v is _MISSING else v for v in [g(rec) for g in getters]])

        self.extract_slow = extract_slow

    def value_exprs(self, var: str) -> list[str]:
        """Per column, a Python expression reading its value from the record named
        ``var`` (raising where the value is missing; see :func:`_value_exprs`)."""
        assert self.cols is not None
        return _value_exprs(self._paths, var)

    @property
    def names(self) -> list[str]:
        """Output column names (empty until inferred when ``columns`` was None)."""
        return [c.name for c in self.cols] if self.cols is not None else []

    def _infer_columns(self, record: Any) -> None:
        if type(record) is not dict:
            raise RowError(
                f"cannot infer columns from a record of type {type(record).__name__}; "
                "pass columns=", "bad_record",
            )
        names = [k for k, v in record.items() if not isinstance(v, (dict, list))]
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
        if recs is _MISSING or recs is None:
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
            raise RowError(f"a record must be {want}, got {t.__name__}: {_short(rec)}",
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
        # an "auto" column takes the type of its first non-null value; a column
        # that is null throughout the first batch becomes a string column
        for c, vals in zip(self.cols, cols_vals, strict=True):
            if c.type == "auto" and n:
                c.type = next((t for t in map(infer_type, vals) if t is not None), "string")
        converted = [_convert(vals, c, bad) for c, vals in zip(self.cols, cols_vals, strict=True)]
        if self._schema is None and all(c.type != "auto" for c in self.cols):
            self._schema = Schema(tuple(Field(c.name, c.type) for c in self.cols))
        if n == 0:
            return None, 0, bad
        if bad:
            keep = np.ones(n, dtype=bool)
            keep[list(bad)] = False
            if not keep.any():
                return None, 0, bad
            data = {c.name: _take(arr, keep) for c, arr in zip(self.cols, converted, strict=True)}
            m = int(keep.sum())
        else:
            data = {c.name: arr for c, arr in zip(self.cols, converted, strict=True)}
            m = n
        return data, m, bad


def _frame(data: dict[str, Any], n: int, columns: pd.Index) -> pd.DataFrame:
    """A DataFrame of ``n`` rows from 1-D arrays, without copying or re-checking them.

    ``DataFrame._from_arrays`` is ~4x cheaper than the public constructor (which
    sanitises every column again); the constructor is the fallback should a pandas
    version not have it.
    """
    try:
        return pd.DataFrame._from_arrays(  # type: ignore[attr-defined]
            list(data.values()), columns=columns, index=pd.RangeIndex(n),
            verify_integrity=False)
    except (AttributeError, TypeError):
        return pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)


def _idx(obj: Any, i: int) -> Any:
    """``obj[i]`` for a list (raises for anything else, as a missing value)."""
    if type(obj) is not list:
        raise TypeError("not a list")
    return obj[i]


def _value_exprs(paths: list[list[str | int]], var: str = "r") -> list[str]:
    """Python expressions reading each column's value out of the record named ``var``.

    Keys are subscripts (``r['p']``, ``r['k']['c']``), list indices go through
    :func:`_idx`: a missing value or another shape raises (KeyError, TypeError,
    IndexError), where the value-by-value getters give None.
    """
    exprs = []
    for parts in paths:
        e = var
        for part in parts:
            e = f"_idx({e}, {part!r})" if isinstance(part, int) else f"{e}[{part!r}]"
        exprs.append(e)
    return exprs


def _compile_extract(paths: list[list[str | int]]) -> Callable[[Any], tuple]:
    """A record → row-tuple function reading :func:`_value_exprs` (raises where a value
    is missing). Plain keys use one ``operator.itemgetter`` call."""
    if len(paths) > 1 and all(len(p) == 1 and isinstance(p[0], str) for p in paths):
        return operator.itemgetter(*(p[0] for p in paths))
    src = f"def extract(r):\n    return ({', '.join(_value_exprs(paths))},)\n"
    ns: dict[str, Any] = {"_idx": _idx}
    exec(compile(src, "<livestream feed columns>", "exec"), ns)  # keys and indices are repr()s
    return ns["extract"]


def _plain_get(source: str | int) -> Callable[[Any], Any]:
    if isinstance(source, int):
        def get_index(r: Any) -> Any:
            if type(r) is list and -len(r) <= source < len(r):
                return r[source]
            return _MISSING
        return get_index

    def get_key(r: Any) -> Any:
        return r.get(source, _MISSING) if type(r) is dict else _MISSING

    return get_key


def _short(v: Any, n: int = 80) -> str:
    try:
        s = orjson.dumps(v).decode()
    except TypeError:
        s = repr(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def _take(arr: Any, keep: np.ndarray) -> Any:
    if isinstance(arr, pd.Series):
        return arr[keep].reset_index(drop=True)
    return arr[keep]


# -- coercion ----------------------------------------------------------------------------


def _convert(vals: Sequence[Any], c: _Col, bad: dict[int, str]) -> Any:
    """Convert one column of a batch; rows that fail are added to ``bad``."""
    t = c.type
    if c.required:
        for i, v in enumerate(vals):
            if v is None and i not in bad:
                bad[i] = f"missing required field {c.source!r} (column {c.name!r})"
    if t == "float64" or t == "float32" or t == "Float64" or t == "Float32":
        return _to_float(vals, c, bad)
    if t in ("Int64", "Int32", "Int16", "Int8", "UInt64", "UInt32", "UInt16", "UInt8") or (
        t in NUMPY_TYPES and t[0] in "iu"
    ):
        return _to_int(vals, c, bad)
    if t == "boolean" or t == "bool":
        return _to_bool(vals, c, bad)
    if t == "string" or t == "category":
        return _to_str(vals, c, bad)
    if is_datetime_type(t):
        return _to_datetime(vals, c, bad)
    if t == "auto":  # only for an empty batch
        return np.empty(0, dtype=np.float64)
    raise ValueError(f"column {c.name!r}: type {t!r} is not supported by feed streams")


def _fallback(vals: Sequence[Any], c: _Col, bad: dict[int, str], one: Callable[[Any], Any],
              fill: Any) -> list:
    out = []
    for i, v in enumerate(vals):
        if v is None:
            out.append(fill)
            continue
        try:
            out.append(one(v))
        except (ValueError, TypeError, OverflowError) as exc:
            if i not in bad:
                bad[i] = f"column {c.name!r}: cannot convert {_short(v)} to {c.type} ({exc})"
            out.append(fill)
    return out


def _float_one(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError(f"a {type(v).__name__} is not a number")
    return float(v)


def _to_float(vals: Sequence[Any], c: _Col, bad: dict[int, str]) -> np.ndarray:
    dtype = np.float32 if c.type.lower() == "float32" else np.float64
    try:
        arr = np.array(vals, dtype=np.float64)
        # a bool (not a number here) would have become 1.0 or 0.0: look for one only then
        if arr.ndim != 1 or (((arr == 1.0) | (arr == 0.0)).any()
                             and bool in set(map(type, vals))):
            raise TypeError("bool")
    except (ValueError, TypeError):
        arr = np.array(_fallback(vals, c, bad, _float_one, math.nan), dtype=np.float64)
    arr = arr.astype(dtype, copy=False)
    if c.type[0] == "F":
        return pd.array(arr, dtype=c.type)  # type: ignore[return-value]
    return arr


def _int_one(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError("a bool is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("not a whole number")
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s)
        except ValueError:
            f = float(s)
            if not f.is_integer():
                raise ValueError("not a whole number") from None
            return int(f)
    raise TypeError(f"a {type(v).__name__} is not an integer")


def _to_int(vals: Sequence[Any], c: _Col, bad: dict[int, str]) -> Any:
    t = c.type
    np_t = np.dtype(t.lower())
    info = np.iinfo(np_t)
    nullable = t in MASKED_TYPES
    kinds = set(map(type, vals))
    if kinds == {int}:
        try:
            data = np.array(vals, dtype=np_t)
            return pd.array(data, dtype=t) if nullable else data
        except OverflowError:
            pass

    def one(v: Any) -> int:
        x = _int_one(v)
        if x < info.min or x > info.max:
            raise OverflowError(f"outside the range of {t}")
        return x

    out = _fallback(vals, c, bad, one, None)
    mask = np.array([v is None for v in out], dtype=bool)
    if mask.any() and not nullable:
        for i in np.flatnonzero(mask):
            if int(i) not in bad:
                bad[int(i)] = (
                    f"column {c.name!r}: missing value, and {t} cannot hold nulls "
                    f"(use int or 'Int64' for a nullable column)"
                )
    data = np.array([0 if v is None else v for v in out], dtype=np_t)
    if nullable:
        return pd.arrays.IntegerArray(data, mask)
    return data


_TRUE = frozenset(["true", "1", "yes", "t", "y"])
_FALSE = frozenset(["false", "0", "no", "f", "n"])


def _bool_one(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise ValueError("not a boolean")


def _to_bool(vals: Sequence[Any], c: _Col, bad: dict[int, str]) -> Any:
    out = _fallback(vals, c, bad, _bool_one, None)
    mask = np.array([v is None for v in out], dtype=bool)
    data = np.array([bool(v) for v in out], dtype=bool)
    if c.type == "bool":
        for i in np.flatnonzero(mask):
            if int(i) not in bad:
                bad[int(i)] = f"column {c.name!r}: missing value, and bool cannot hold nulls"
        return data
    return pd.arrays.BooleanArray(data, mask)


def _str_one(v: Any) -> str:
    if isinstance(v, str):
        return v
    return orjson.dumps(v).decode()


def _to_str(vals: Sequence[Any], c: _Col, bad: dict[int, str]) -> Any:
    arr = np.empty(len(vals), dtype=object)
    if c.type == "category":
        # factorize first and check the few distinct values, not every value
        arr[:] = vals
        try:
            return _categorical(arr, c)
        except TypeError:  # a value that is not text (a number, an object, an array)
            pass
    if set(map(type, vals)) == {str}:
        arr[:] = vals
    else:
        arr[:] = _fallback(vals, c, bad, _str_one, None)
    if c.type == "category":
        return _categorical(arr, c)
    return pd.array(arr, dtype=STRING_DTYPE, copy=False)


_CAT_CACHE_LABELS = 256  # label sets up to this size have their dtype cached


def _categorical(arr: np.ndarray, c: _Col) -> pd.Categorical:
    """An object array of text (None: missing) → Categorical; TypeError if a value is
    not text. ``pd.factorize`` is 3-4x faster than ``pd.Categorical(arr)``, and a
    cached dtype saves building one per batch."""
    codes, uniques = pd.factorize(arr, sort=True)
    if not all(type(u) is str for u in uniques):
        raise TypeError("not text")
    if len(uniques) > _CAT_CACHE_LABELS:
        return pd.Categorical.from_codes(codes, pd.Index(uniques, dtype=object), validate=False)
    key = tuple(uniques)
    dtype = c.cat_dtypes.get(key)
    if dtype is None:
        if len(c.cat_dtypes) >= 64:
            c.cat_dtypes.clear()
        dtype = c.cat_dtypes[key] = pd.CategoricalDtype(pd.Index(uniques, dtype=object))
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


def _floats_to_ns(x: np.ndarray, unit: str | None) -> np.ndarray:
    """Epoch numbers as float64 (NaN = null) → int64 ns (NaT for null).

    The unit comes from the magnitude when ``unit`` is None. Seconds and
    milliseconds are rounded to whole microseconds (a float64 holds no more), so
    ``1534614057.321`` s is exactly ``…57.321``. Raises OverflowError out of range.
    """
    nan = np.isnan(x)
    xs = np.where(nan, 0.0, x)
    if unit is not None:
        per_us = np.full(xs.shape, 1e6 / (_EPOCH_UNITS[unit] / 1e3))
    else:
        a = np.abs(xs)
        per_us = np.where(a < 1e11, 1e6, np.where(a < 1e14, 1e3, np.where(a < 1e17, 1.0, 1e-3)))
    is_ns = per_us < 1.0
    us = np.round(xs * np.where(is_ns, 1.0, per_us))
    if np.any(np.abs(np.where(is_ns, us / 1000.0, us)) >= 9.2e15) or not np.isfinite(us).all():
        raise OverflowError("epoch value out of range")
    out = np.where(is_ns, us.astype(np.int64), us.astype(np.int64) * 1000)
    out[nan] = _NAT
    return out


def _bucket(a: int) -> int:
    """The epoch unit guessed from a magnitude ``a >= 0``, as nanoseconds per unit."""
    return 10**9 if a < 10**11 else 10**6 if a < 10**14 else 10**3 if a < 10**17 else 1


def _ints_to_ns(x: np.ndarray, unit: str | None) -> np.ndarray:
    if len(x):  # the common batch: one unit throughout, checked from its bounds
        lo, hi = int(x.min()), int(x.max())
        if unit is not None:
            m = _EPOCH_UNITS[unit]
        elif lo >= 0 and _bucket(lo) == _bucket(hi):
            m = _bucket(hi)
        else:
            m = 0
        if m and lo * m >= -(2**63) and hi * m < 2**63:
            return x * m
    if unit is not None:
        mult = np.full(x.shape, _EPOCH_UNITS[unit], dtype=np.int64)
    else:
        a = np.abs(x)
        mult = np.where(
            a < 10**11, 10**9, np.where(a < 10**14, 10**6, np.where(a < 10**17, 10**3, 1))
        ).astype(np.int64)
    with np.errstate(over="ignore"):
        out = x * mult
    # overflow check: dividing back must give the input
    ok = (out // mult) == x
    if not ok.all():
        raise OverflowError("epoch value out of range")
    return out


def _dt_one(v: Any, unit: str | None) -> int:
    if isinstance(v, bool):
        raise TypeError("a bool is not a time")
    if isinstance(v, int):
        return int(_ints_to_ns(np.array([v], dtype=np.int64), unit)[0])
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("not a finite number")
        return int(_floats_to_ns(np.array([v]), unit)[0])
    if isinstance(v, str):
        s = v.strip()
        try:
            num: int | float = int(s)
        except ValueError:
            try:
                num = float(s)
            except ValueError:
                num = None  # type: ignore[assignment]
        if num is not None and not (isinstance(num, float) and not math.isfinite(num)):
            return _dt_one(num, unit)
        ts = pd.Timestamp(s)
        if ts is pd.NaT:
            raise ValueError("not a time")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(ts.as_unit("ns")._value)
    raise TypeError(f"a {type(v).__name__} is not a time")


def _strings_to_ns(vals: Sequence[Any], unit: str | None, has_null: bool) -> np.ndarray:
    """Vectorized: ISO-8601 strings, else numeric epoch strings; raises if neither fits all."""
    try:
        idx = pd.to_datetime(pd.Index(vals, dtype=object), utc=True, format="ISO8601")
        return idx.as_unit("ns").asi8
    except (ValueError, TypeError):
        pass
    if not has_null:
        try:
            return _ints_to_ns(np.array(vals, dtype=np.int64), unit)
        except (ValueError, TypeError):
            pass
    return _floats_to_ns(np.array(vals, dtype=np.float64), unit)


def _to_datetime(vals: Sequence[Any], c: _Col, bad: dict[int, str]) -> Any:
    unit, tz = datetime_parts(c.type)
    ns: np.ndarray | None = None
    kinds = set(map(type, vals))
    try:
        if kinds <= {int}:
            ns = _ints_to_ns(np.array(vals, dtype=np.int64), c.unit)
        elif kinds <= {int, float, type(None)}:
            ns = _floats_to_ns(np.array(vals, dtype=np.float64), c.unit)
        elif kinds <= {str, type(None)}:
            ns = _strings_to_ns(vals, c.unit, None in kinds)
    except (ValueError, TypeError, OverflowError):
        ns = None
    if ns is None:
        out = _fallback(vals, c, bad, lambda v: _dt_one(v, c.unit), _NAT)
        ns = np.array(out, dtype=np.int64)
    idx = pd.DatetimeIndex(ns.view("M8[ns]"))  # ~8x cheaper than Series.dt.tz_localize
    if tz is not None:
        idx = idx.tz_localize("UTC")
        if tz != "UTC":
            idx = idx.tz_convert(tz)
    if unit != "ns":
        idx = idx.as_unit(unit)
    return idx.array
