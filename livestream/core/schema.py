"""Column schemas: the logical types livestream carries, and how batches are checked.

A topic's schema is fixed by its first batch. Later batches must have the same
columns; a column of another dtype is accepted only when it converts without
loss to the topic's type (int32 into int64, int into float64, object strings
into a string column, strings into a category column, tz conversion of an
aware datetime). Anything else raises :class:`~livestream.SchemaError` naming
the column, and nothing of that batch is applied.

Logical type names (they appear on the wire, see ``docs/protocol.md``)::

    bool  int8 int16 int32 int64  uint8 uint16 uint32 uint64  float32 float64
    boolean  Int8 Int16 Int32 Int64  UInt8 UInt16 UInt32 UInt64  Float32 Float64
    string  category  datetime64[<unit>]  datetime64[<unit>, <tz>]

with ``<unit>`` one of ``s ms us ns``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from ..errors import SchemaError

NUMPY_TYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float32", "float64"]
)
MASKED_TYPES = frozenset(
    ["boolean", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
     "Float32", "Float64"]
)
_DATETIME_RE = re.compile(r"^datetime64\[(s|ms|us|ns)(?:, (.+))?\]$")

#: Default pandas dtype for string columns (``str`` on pandas 3, ``object`` before).
STRING_DTYPE = pd.Series(["x"]).dtype


def is_datetime_type(t: str) -> bool:
    """True for ``datetime64[unit]`` and ``datetime64[unit, tz]``."""
    return _DATETIME_RE.match(t) is not None


def datetime_parts(t: str) -> tuple[str, str | None]:
    """``"datetime64[ns, UTC]"`` → ``("ns", "UTC")``."""
    m = _DATETIME_RE.match(t)
    if m is None:
        raise ValueError(f"not a datetime type: {t!r}")
    return m.group(1), m.group(2)


def is_supported_type(t: str) -> bool:
    """Whether ``t`` is one of livestream's logical type names (with a time zone pandas
    knows, for an aware datetime type)."""
    return t in NUMPY_TYPES or t in MASKED_TYPES or t in ("string", "category") or (
        is_datetime_type(t) and _known_time_zone(datetime_parts(t)[1])
    )


@functools.lru_cache(maxsize=256)
def _known_time_zone(tz: str | None) -> bool:
    if tz is None:
        return True
    if len(tz) > 64:  # IANA names are far shorter; do not hand long strings to tz lookups
        return False
    try:
        pd.DatetimeTZDtype(unit="ns", tz=tz)
    except Exception:  # pandas raises many kinds of exception for a bad time zone
        return False
    return True


def logical_type(series: pd.Series, name: str | None = None) -> str:
    """The logical type of a pandas Series, or :class:`SchemaError` if unsupported."""
    dtype = series.dtype
    col = name if name is not None else str(series.name)
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        if len(cats) and pdt.infer_dtype(cats, skipna=True) != "string":
            raise SchemaError(
                f"column {col!r}: categorical columns must have string categories", column=col
            )
        return "category"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return f"datetime64[{dtype.unit}, {dtype.tz}]"
    if isinstance(dtype, pd.StringDtype):
        return "string"
    if isinstance(dtype, pd.core.dtypes.dtypes.BaseMaskedDtype):  # Int64, boolean, Float64
        return str(dtype)
    if isinstance(dtype, np.dtype):
        if dtype.kind == "M":
            unit = np.datetime_data(dtype)[0]
            if unit not in ("s", "ms", "us", "ns"):
                raise SchemaError(f"column {col!r}: datetime unit {unit!r} unsupported", column=col)
            return f"datetime64[{unit}]"
        if dtype.kind == "O":
            kind = pdt.infer_dtype(series, skipna=True)
            if kind in ("string", "empty"):
                return "string"
            raise SchemaError(
                f"column {col!r} holds Python objects ({kind}); livestream carries "
                "numbers, bools, strings, categories and datetimes",
                column=col,
            )
        if str(dtype) in NUMPY_TYPES:
            return str(dtype)
    raise SchemaError(f"column {col!r} has unsupported dtype {dtype}", column=col)


def pandas_dtype(t: str):
    """The pandas/numpy dtype a logical type decodes to."""
    if t == "string":
        return STRING_DTYPE
    if t == "category":
        return "category"
    if is_datetime_type(t):
        unit, tz = datetime_parts(t)
        return pd.DatetimeTZDtype(unit=unit, tz=tz) if tz else np.dtype(f"M8[{unit}]")
    if t in MASKED_TYPES:
        return pd.api.types.pandas_dtype(t)
    return np.dtype(t)


@dataclass(frozen=True)
class Field:
    """One column: its name and logical type."""

    name: str
    type: str

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True)
class Schema:
    """The ordered columns of a topic."""

    fields: tuple[Field, ...]

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Schema:
        """Infer a schema from a DataFrame (its first batch)."""
        df = normalize_frame(df)
        fields = []
        for name in df.columns:
            fields.append(Field(name, logical_type(df[name], name)))
        if not fields:
            raise SchemaError("a topic needs at least one column")
        return cls(tuple(fields))

    @classmethod
    def from_json(cls, items: Iterable[dict]) -> Schema:
        """The schema of its JSON form (``to_json``): a non-empty array of
        ``{"name": str, "type": str}`` with distinct names and supported types.
        Anything else raises :class:`SchemaError` (naming the column when there is one)."""
        if not isinstance(items, list | tuple) or not items:
            raise SchemaError("a schema must be a non-empty array of {name, type} objects")
        fields = []
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                raise SchemaError(f"a schema field must be a {{name, type}} object, not "
                                  f"{type(item).__name__}")
            name, t = item.get("name"), item.get("type")
            if not isinstance(name, str) or not isinstance(t, str):
                raise SchemaError("a schema field needs a string 'name' and 'type'")
            if name in seen:
                raise SchemaError(f"column {name!r} appears twice in the schema", column=name)
            seen.add(name)
            if not is_supported_type(t):
                raise SchemaError(f"column {name!r} has unsupported type {t[:80]!r} (see "
                                  "docs/protocol.md §6.1; time zones are IANA names)",
                                  column=name)
            fields.append(Field(name, t))
        return cls(tuple(fields))

    def to_json(self) -> list[dict]:
        return [f.to_json() for f in self.fields]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def type_of(self, name: str) -> str:
        for f in self.fields:
            if f.name == name:
                return f.type
        raise KeyError(name)

    def conform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Return ``df`` with exactly this schema's columns and dtypes.

        Converts only where no information is lost; otherwise raises
        :class:`SchemaError` naming the column. The input is not modified.
        """
        if _fits(df, self):
            return df.copy(deep=False)  # shares the data; copy-on-write keeps it safe
        df = normalize_frame(df)
        names = self.names
        have = list(df.columns)
        for n in names:
            if n not in df.columns:
                raise SchemaError(f"column {n!r} is missing (topic columns: {names})", column=n)
        for n in have:
            if n not in names:
                raise SchemaError(f"column {n!r} is not in the topic's schema {names}", column=n)
        out = {}
        for f in self.fields:
            out[f.name] = _conform_series(df[f.name], f)
        return pd.DataFrame(out, index=pd.RangeIndex(len(df)), copy=False)

    def empty_frame(self) -> pd.DataFrame:
        """A zero-row DataFrame of this schema."""
        return pd.DataFrame(
            {f.name: pd.Series([], dtype=pandas_dtype(f.type)) for f in self.fields}
        )


def _fits(df: pd.DataFrame, schema: Schema) -> bool:
    """Whether ``df`` already is what ``schema.conform(df)`` returns: a plain DataFrame
    with a default index and exactly the schema's columns and dtypes (the publish hot
    path). Category columns always take the full check (their categories vary)."""
    if type(df) is not pd.DataFrame:
        return False
    idx = df.index
    if not (isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1):
        return False
    if df.columns.tolist() != schema.names:
        return False
    want = _plain_dtypes(schema)
    # the column arrays' dtypes: ``df.dtypes`` builds a Series per call (tens of µs)
    return want is not None and all(
        a.dtype == b for a, b in zip(column_arrays(df), want, strict=True))


def column_arrays(df: pd.DataFrame) -> list[Any]:
    """The arrays behind ``df``'s columns, in order: numpy arrays, or pandas extension
    arrays (Categorical, DatetimeArray, masked, string arrays). Shared, not copied.

    The hot paths (publish, encode, window append) read every column of every batch;
    ``df[name]`` builds a new Series each time, which costs more than the work on the
    rows of a small batch. This reads the column arrays directly (pandas'
    ``DataFrame._get_column_array``, present since pandas 1.5; a public fallback
    otherwise).
    """
    get = getattr(df, "_get_column_array", None)
    n = df.shape[1]
    if get is not None:
        return [get(i) for i in range(n)]
    return [df.iloc[:, i].array for i in range(n)]  # pragma: no cover - older pandas


@functools.lru_cache(maxsize=256)
def _plain_dtypes(schema: Schema) -> tuple | None:
    types = [f.type for f in schema.fields]
    if "category" in types:
        return None
    return tuple(pandas_dtype(t) for t in types)


def normalize_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Check column names and turn a meaningful index into columns.

    A named index (``DatetimeIndex`` named ``ts``, the result of a ``groupby``)
    becomes ordinary columns; an unnamed index is dropped: rows are identified by
    offsets, never by the index.
    """
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if any(n is not None for n in df.index.names) and not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    for c in df.columns:
        if not isinstance(c, str):
            raise SchemaError(f"column names must be strings, got {c!r}", column=str(c))
    if df.columns.has_duplicates:
        dup = df.columns[df.columns.duplicated()][0]
        raise SchemaError(f"column {dup!r} appears twice", column=dup)
    return df


def _bad(f: Field, got: str) -> SchemaError:
    return SchemaError(
        f"column {f.name!r} has type {got}; the topic expects {f.type}", column=f.name
    )


def _conform_series(s: pd.Series, f: Field) -> pd.Series:
    t = f.type
    try:
        got = logical_type(s, f.name)
    except SchemaError:
        raise
    if got == t:
        return s.reset_index(drop=True)
    values = s.reset_index(drop=True)
    if t == "string":
        if got == "category":
            return values.astype(STRING_DTYPE)
        raise _bad(f, got)
    if t == "category":
        if got == "string":
            return values.astype("category")
        raise _bad(f, got)
    if is_datetime_type(t):
        if not is_datetime_type(got):
            raise _bad(f, got)
        _, tz = datetime_parts(t)
        _, got_tz = datetime_parts(got)
        if (tz is None) != (got_tz is None):
            raise _bad(f, got)
        try:
            return values.astype(pandas_dtype(t))
        except (ValueError, OverflowError) as exc:  # OutOfBoundsDatetime in another unit
            raise SchemaError(f"column {f.name!r} has values outside the range of {t}: {exc}",
                              column=f.name) from None
    if t in NUMPY_TYPES or t in MASKED_TYPES:
        return _conform_numeric(values, f, got)
    raise _bad(f, got)


def _conform_numeric(values: pd.Series, f: Field, got: str) -> pd.Series:
    t = f.type
    target_kind = "b" if t.lower().startswith("bool") else np.dtype(t.lower()).kind
    src_is_numeric = got in NUMPY_TYPES or got in MASKED_TYPES
    if not src_is_numeric:
        raise _bad(f, got)
    src_kind = "b" if got.lower().startswith("bool") else np.dtype(got.lower()).kind
    if (target_kind == "b" or src_kind == "b") and target_kind != src_kind:
        raise _bad(f, got)
    if target_kind in "iu" and src_kind == "f":
        # floats holding whole numbers (e.g. parsed from JSON) are fine
        arr = values.to_numpy(dtype="float64", na_value=np.nan)
        finite = arr[~np.isnan(arr)]
        if len(finite) and not np.all(np.mod(finite, 1) == 0):
            raise _bad(f, got)
    has_na = bool(values.isna().any())
    if has_na and t in NUMPY_TYPES and target_kind != "f":
        raise SchemaError(
            f"column {f.name!r} has missing values but the topic's type {t} cannot hold them",
            column=f.name,
        )
    if target_kind in "iu":
        arr = values.to_numpy(dtype="float64", na_value=np.nan) if src_kind == "f" else None
        info = np.iinfo(t.lower())
        if arr is None:
            nonnull = values.dropna()
            lo = nonnull.min() if len(nonnull) else 0
            hi = nonnull.max() if len(nonnull) else 0
        else:
            finite = arr[~np.isnan(arr)]
            lo = finite.min() if len(finite) else 0
            hi = finite.max() if len(finite) else 0
        if lo < info.min or hi > info.max:
            raise SchemaError(
                f"column {f.name!r} has values outside the range of {t}", column=f.name
            )
    try:
        return values.astype(pandas_dtype(t))
    except (TypeError, ValueError) as exc:
        raise _bad(f, got) from exc
