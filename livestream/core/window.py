"""A columnar rolling window of rows with offsets.

:class:`ColumnWindow` keeps the last ``max_rows`` rows of a topic in one
preallocated numpy array per column. Appending a batch copies its columns into
the arrays (amortised O(rows): the arrays hold up to twice the window, and the
retained tail is moved to the front only when they are full); reading the window
builds a DataFrame from array slices. There is no ``pd.concat`` per batch.

It is used on both sides of the wire: the server keeps each topic's retained
history in one, and every client subscription keeps its live window in one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .schema import (
    MASKED_TYPES,
    STRING_DTYPE,
    Schema,
    datetime_parts,
    is_datetime_type,
)

_MIN_CAPACITY = 1024
_NAT = np.iinfo(np.int64).min

#: Whether pandas' string dtype keeps its values in Arrow (pandas 3 with pyarrow): then
#: a string column can stay Arrow from the wire to the DataFrame (:class:`_ArrowStrings`).
ARROW_STRINGS = getattr(STRING_DTYPE, "storage", None) == "pyarrow" and hasattr(
    STRING_DTYPE, "__from_arrow__")


class _Column:
    """Storage of one column in a growable numpy array."""

    def __init__(self, type_: str, capacity: int) -> None:
        self.type = type_
        self.mask: np.ndarray | None = None
        self.categories: list[str] | None = None
        self._cat_index: dict[str, int] | None = None
        self.ordered = False
        if type_ == "string":
            self.data = np.empty(capacity, dtype=object)
        elif type_ == "category":
            self.data = np.empty(capacity, dtype=np.int32)
            self.categories = []
            self._cat_index = {}
        elif is_datetime_type(type_):
            self.unit, self.tz = datetime_parts(type_)
            self.data = np.empty(capacity, dtype=np.int64)
        elif type_ in MASKED_TYPES:
            self.np_dtype = np.dtype("bool" if type_ == "boolean" else type_.lower())
            self.data = np.empty(capacity, dtype=self.np_dtype)
            self.mask = np.empty(capacity, dtype=bool)
        else:
            self.data = np.empty(capacity, dtype=np.dtype(type_))

    def resize(self, capacity: int, lo: int, hi: int) -> None:
        """Reallocate to ``capacity`` moving rows [lo, hi) to the front."""
        new = np.empty(capacity, dtype=self.data.dtype)
        new[: hi - lo] = self.data[lo:hi]
        self.data = new
        if self.mask is not None:
            m = np.empty(capacity, dtype=bool)
            m[: hi - lo] = self.mask[lo:hi]
            self.mask = m

    def move_to_front(self, lo: int, hi: int) -> None:
        n = hi - lo
        self.data[:n] = self.data[lo:hi]
        if self.mask is not None:
            self.mask[:n] = self.mask[lo:hi]
        if self.type == "string":  # release references held past the end
            self.data[n:hi] = None

    def write(self, pos: int | np.ndarray,
              s: pd.Series | pa.Array | pa.ChunkedArray | np.ndarray | Any) -> None:
        """Write a pandas Series, the array of one (a numpy array or a pandas extension
        array: Categorical, DatetimeArray, masked…) or an Arrow array at row ``pos``
        onwards, or at the row positions of an index array. Arrow input goes straight
        to numpy (no pandas)."""
        sel = slice(pos, pos + len(s)) if isinstance(pos, int) else pos
        if isinstance(s, pa.ChunkedArray | pa.Array):
            self._write_arrow(sel, s)
            return
        t = self.type
        if t == "category":
            cat = s.array if isinstance(s, pd.Series) else s  # not the (slow) .cat accessor
            self._write_codes(sel, cat.categories, cat.codes, cat.ordered)
        elif isinstance(s, np.ndarray) and self.mask is None and not is_datetime_type(t):
            self.data[sel] = s
        elif t == "string":
            self.data[sel] = s.to_numpy(dtype=object)
        elif is_datetime_type(t):
            self.data[sel] = (s.array if isinstance(s, pd.Series) else s).asi8
        elif self.mask is not None:
            self.data[sel] = s.to_numpy(dtype=self.np_dtype, na_value=0)
            na = s.isna()
            self.mask[sel] = na if isinstance(na, np.ndarray) else na.to_numpy()
        else:
            self.data[sel] = s.to_numpy()

    def _write_codes(self, sel: slice | np.ndarray, categories: Any, codes: np.ndarray,
                     ordered: bool) -> None:
        """Map a batch's own category codes onto this column's growing category list."""
        if not self.categories and ordered:
            self.ordered = True
        index = self._cat_index
        assert index is not None and self.categories is not None
        mapping = np.empty(len(categories) + 1, dtype=np.int32)
        for i, c in enumerate(categories):
            code = index.get(c)
            if code is None:
                code = index[c] = len(self.categories)
                self.categories.append(c)
            mapping[i] = code
        mapping[-1] = -1  # code -1 (missing) maps to itself
        self.data[sel] = mapping[codes]

    def _write_arrow(self, sel: slice | np.ndarray, arr: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
        t = self.type
        if t == "string":
            self.data[sel] = arr.to_numpy(zero_copy_only=False)
        elif t == "category":
            if not pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_encode()
            codes = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            self._write_codes(sel, arr.dictionary.to_pylist(), codes, arr.type.ordered)
        elif is_datetime_type(t):
            self.data[sel] = arr.view(pa.int64()).fill_null(_NAT).to_numpy(zero_copy_only=False)
        elif self.mask is not None:
            fill = False if t == "boolean" else 0
            self.data[sel] = arr.fill_null(fill).to_numpy(zero_copy_only=False)
            self.mask[sel] = arr.is_null().to_numpy(zero_copy_only=False)
        else:
            self.data[sel] = arr.to_numpy(zero_copy_only=False)

    def read(self, lo: int, hi: int) -> pd.api.extensions.ExtensionArray | np.ndarray:
        t = self.type
        data = self.data[lo:hi].copy()
        if t == "string":
            return pd.array(data, dtype=STRING_DTYPE)
        if t == "category":
            return pd.Categorical.from_codes(
                data, categories=pd.Index(self.categories, dtype=STRING_DTYPE),
                ordered=self.ordered)
        if is_datetime_type(t):
            idx = pd.DatetimeIndex(data.view(f"M8[{self.unit}]"))
            if self.tz is not None:
                idx = idx.tz_localize("UTC").tz_convert(self.tz)
            return idx.array
        if self.mask is not None:
            mask = self.mask[lo:hi].copy()
            if t == "boolean":
                return pd.arrays.BooleanArray(data, mask)
            if t.startswith("Float"):
                return pd.arrays.FloatingArray(data, mask)
            return pd.arrays.IntegerArray(data, mask)
        return data


class _ArrowStrings:
    """A string column kept as Arrow ``large_string`` chunks: rows [0, n) of the
    column, appended at the end. No Python ``str`` is made per row, on write or on
    read (pandas' Arrow-backed string dtype takes the chunks as they are); chunks
    are concatenated when the window moves its rows to the front. Appends only:
    no writes at row positions (keyed tables use :class:`_Column`)."""

    def __init__(self, type_: str) -> None:
        self.type = type_
        self.chunks: list[pa.Array] = []
        self.n = 0

    def _slice(self, lo: int, hi: int) -> list[pa.Array]:
        out = []
        start = 0
        for c in self.chunks:
            end = start + len(c)
            if end > lo and start < hi:
                a = max(lo, start)
                out.append(c.slice(a - start, min(hi, end) - a))
            start = end
            if start >= hi:
                break
        return out

    def resize(self, capacity: int, lo: int, hi: int) -> None:
        self.move_to_front(lo, hi)

    def move_to_front(self, lo: int, hi: int) -> None:
        kept = self._slice(lo, hi)
        self.chunks = [pa.concat_arrays(kept)] if len(kept) > 1 else kept
        self.n = hi - lo

    def write(self, pos: int | np.ndarray, s: Any) -> None:
        if not isinstance(pos, int):
            raise TypeError("an Arrow string column is written by appending only")
        if isinstance(s, pa.ChunkedArray):
            s = s.chunk(0) if s.num_chunks == 1 else s.combine_chunks()
        if isinstance(s, pa.Array):
            arr = s if s.type == pa.large_string() else s.cast(pa.large_string())
        else:
            arr = pa.array(s.array if isinstance(s, pd.Series) else s,
                           type=pa.large_string(), from_pandas=True)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
        if pos != self.n:  # rewritten from ``pos`` on (a reset window starts at 0)
            self.chunks = self._slice(0, pos)
            self.n = pos
        if len(arr):
            self.chunks.append(arr)
            self.n += len(arr)

    def read(self, lo: int, hi: int) -> Any:
        chunks = self._slice(lo, hi)
        return STRING_DTYPE.__from_arrow__(pa.chunked_array(chunks, type=pa.large_string()))


class ColumnWindow:
    """The last ``max_rows`` rows of a schema'd table, with their offsets.

    ``start_offset`` is the offset of the oldest retained row, ``end_offset`` the
    offset the next appended row will get. ``max_rows=None`` keeps everything.
    ``arrow_strings`` keeps string columns as Arrow arrays when pandas' string dtype
    is Arrow-backed (:data:`ARROW_STRINGS`): no Python object per row on append or
    read, but no :meth:`overwrite` either (a client's rolling window; not keyed
    tables).
    """

    def __init__(self, schema: Schema, max_rows: int | None = None, start_offset: int = 0,
                 *, arrow_strings: bool = False):
        if max_rows is not None and max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.schema = schema
        self.max_rows = max_rows
        cap = _MIN_CAPACITY if max_rows is None else min(_MIN_CAPACITY, 2 * max_rows)
        self._cap = cap
        arrow = arrow_strings and ARROW_STRINGS
        self._cols: dict[str, _Column | _ArrowStrings] = {
            f.name: _ArrowStrings(f.type) if arrow and f.type == "string"
            else _Column(f.type, cap) for f in schema}
        self._lo = 0
        self._hi = 0
        self.end_offset = start_offset

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def start_offset(self) -> int:
        return self.end_offset - len(self)

    def append(self, df: pd.DataFrame | pa.Table | pa.RecordBatch | dict[str, Any]) -> None:
        """Append a batch already conformed to the schema (see ``Schema.conform``).

        ``df`` may also be an Arrow table or record batch with the schema's columns
        (what a client decodes from a binary frame): its columns are copied without pandas; or a
        dict of column name → 1-D array of the column's pandas/numpy type (what a feed
        stream builds), copied without a Series per column.
        """
        n = (len(next(iter(df.values()))) if df else 0) if isinstance(df, dict) else len(df)
        if n == 0:
            return
        cols = self._cols
        max_rows = self.max_rows
        if max_rows is not None and n >= max_rows:
            if isinstance(df, dict):
                tail = {k: v[n - max_rows:] for k, v in df.items()}
            elif isinstance(df, pa.Table | pa.RecordBatch):
                tail = df.slice(n - max_rows)
            else:
                tail = df.iloc[n - max_rows :]
            if self._cap < max_rows:
                for c in cols.values():
                    c.resize(max_rows, 0, 0)
                self._cap = max_rows
            for name, c in cols.items():
                c.write(0, tail[name])
            self._lo, self._hi = 0, max_rows
            self.end_offset += n
            return
        if self._hi + n > self._cap:
            keep = len(self) if max_rows is None else min(len(self), max_rows - n)
            need = keep + n
            if need > self._cap:
                new_cap = max(need, 2 * self._cap)
                if max_rows is not None:
                    new_cap = min(new_cap, 2 * max_rows)
                for c in cols.values():
                    c.resize(new_cap, self._hi - keep, self._hi)
                self._cap = new_cap
            else:
                for c in cols.values():
                    c.move_to_front(self._hi - keep, self._hi)
            self._lo, self._hi = 0, keep
        pos = self._hi
        for name, c in cols.items():
            c.write(pos, df[name])
        self._hi += n
        self.end_offset += n
        if max_rows is not None and len(self) > max_rows:
            self._lo = self._hi - max_rows

    def overwrite(self, positions: np.ndarray, df: pd.DataFrame) -> None:
        """Overwrite rows at window-relative ``positions`` with the rows of ``df``."""
        idx = np.asarray(positions, dtype=np.intp) + self._lo
        for name, c in self._cols.items():
            c.write(idx, df[name])

    def set_max_rows(self, max_rows: int | None) -> None:
        """Change the window size; shrinking drops the oldest rows at once."""
        if max_rows is not None and max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.max_rows = max_rows
        if max_rows is not None and len(self) > max_rows:
            self.drop_before(self.end_offset - max_rows)

    def drop_before(self, offset: int) -> None:
        """Forget rows with offsets below ``offset``."""
        cut = min(max(offset - self.start_offset, 0), len(self))
        self._lo += cut

    def reset(self, start_offset: int) -> None:
        """Drop every row; the next appended row gets ``start_offset``."""
        self._lo = self._hi = 0
        self.end_offset = start_offset

    def to_frame(self, from_offset: int | None = None, to_offset: int | None = None) -> pd.DataFrame:
        """The retained rows in [from_offset, to_offset) as a new DataFrame."""
        lo, hi = self._lo, self._hi
        if from_offset is not None:
            lo = min(hi, lo + max(0, from_offset - self.start_offset))
        if to_offset is not None:
            hi = max(lo, min(hi, self._hi - (self.end_offset - to_offset)))
        data = {name: c.read(lo, hi) for name, c in self._cols.items()}
        return pd.DataFrame(data, index=pd.RangeIndex(hi - lo), copy=False)

    def column(self, name: str) -> pd.Series:
        """One retained column as a Series (a copy)."""
        return pd.Series(self._cols[name].read(self._lo, self._hi), name=name)

    def tail(self, n: int) -> pd.DataFrame:
        """The newest ``n`` rows."""
        return self.to_frame(from_offset=max(self.start_offset, self.end_offset - n))
