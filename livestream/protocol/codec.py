"""Encoding and decoding of livestream frames. Pure: bytes in, bytes out.

Two encodings, chosen per connection (``docs/protocol.md``):

``json``
    every message is one JSON text frame. Rows travel column-wise in
    ``"columns": {name: [values...]}``; see :func:`encode_columns_json` for the
    per-type value rules.
``arrow``
    control messages stay JSON text frames; messages that carry rows are binary
    frames: a 4-byte big-endian header length, that many bytes of UTF-8 JSON
    header (the same fields as the JSON message, without ``columns``), then one
    Arrow IPC stream holding the rows.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from pandas.api import types as pdt

from ..core.schema import (
    MASKED_TYPES,
    NUMPY_TYPES,
    STRING_DTYPE,
    Schema,
    datetime_parts,
    is_datetime_type,
    is_supported_type,
    pandas_dtype,
)
from ..errors import LimitError, ProtocolError, SchemaError
from .ipc import Limits, check_stream

PROTOCOL_VERSION = 1
ENCODINGS = ("json", "arrow")
_HEADER = struct.Struct(">I")
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


# -- JSON ----------------------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    """Serialise a message to JSON bytes (numpy arrays allowed)."""
    return orjson.dumps(obj, option=_JSON_OPTS)


def loads(data: str | bytes) -> Any:
    """Parse JSON, raising :class:`ProtocolError` ``bad_json`` on failure."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}") from None


def _float_values(arr: np.ndarray) -> Any:
    if arr.dtype.kind == "f" and np.isinf(arr).any():
        out: list = arr.astype(object).tolist()
        for i, v in enumerate(out):
            if isinstance(v, float) and math.isinf(v):
                out[i] = "Infinity" if v > 0 else "-Infinity"
            elif isinstance(v, float) and math.isnan(v):
                out[i] = None
        return out
    return arr


def encode_columns_json(frame: pd.DataFrame, schema: Schema) -> tuple[dict, dict]:
    """Column-wise JSON values of ``frame``, and the categories of category columns.

    Rules: numbers as JSON numbers (NaN → ``null``, ±inf → ``"Infinity"`` /
    ``"-Infinity"``); bools as booleans; strings and category values as strings;
    missing values as ``null``; datetimes as integers counting the column's unit
    (``s``/``ms``/``us``/``ns``) since 1970-01-01T00:00:00Z.
    """
    cols: dict[str, Any] = {}
    cats: dict[str, list] = {}
    for f in schema:
        s = frame[f.name]
        t = f.type
        if t in NUMPY_TYPES:
            cols[f.name] = _float_values(s.to_numpy())
        elif t in MASKED_TYPES:
            vals = s.to_numpy(dtype=object, na_value=None)
            if t.startswith("Float"):
                vals = np.array(
                    [
                        v if v is None or math.isfinite(v)
                        else ("Infinity" if v > 0 else "-Infinity") if math.isinf(v)
                        else None
                        for v in vals
                    ],
                    dtype=object,
                )
            cols[f.name] = vals.tolist()
        elif t == "string":
            cols[f.name] = s.to_numpy(dtype=object, na_value=None).tolist()
        elif t == "category":
            cats[f.name] = s.cat.categories.tolist()
            cols[f.name] = s.astype(object).where(s.notna(), None).tolist()
        elif is_datetime_type(t):
            ints = s.array.asi8
            na = s.isna().to_numpy()
            if na.any():
                vals = ints.astype(object)
                vals[na] = None
                cols[f.name] = vals.tolist()
            else:
                cols[f.name] = ints
        else:  # pragma: no cover - schema guarantees the type is known
            raise SchemaError(f"cannot encode type {t}", column=f.name)
    return cols, cats


def decode_columns_json(
    columns: Any,
    schema: Schema,
    categories: Mapping[str, list] | None = None,
    *,
    trusted: bool = False,
) -> pd.DataFrame:
    """Build a DataFrame of ``schema`` from column-wise JSON values.

    Raises :class:`SchemaError` naming the column when a column is missing,
    extra, of another length, or holds values its type cannot take. ``trusted``
    (a client decoding its server's frames) skips the per-value checks that guard
    the server against bad publishes.
    """
    if not isinstance(columns, dict):
        raise ProtocolError("bad_message", "'columns' must be an object of column arrays")
    names = schema.names
    for n in columns:
        if n not in names:
            raise SchemaError(f"column {n!r} is not in the topic's schema {names}", column=n)
    out: dict[str, Any] = {}
    length = None
    for f in schema:
        if f.name not in columns:
            raise SchemaError(f"column {f.name!r} is missing", column=f.name)
        vals = columns[f.name]
        if not isinstance(vals, list):
            raise SchemaError(f"column {f.name!r} must be an array", column=f.name)
        if length is None:
            length = len(vals)
        elif len(vals) != length:
            raise SchemaError(
                f"column {f.name!r} has {len(vals)} values, others have {length}", column=f.name
            )
        try:
            if trusted and f.type in NUMPY_TYPES:
                out[f.name] = np.array(vals, dtype=f.type)  # null→NaN, "Infinity"→inf
            else:
                out[f.name] = _decode_json_column(vals, f.type, (categories or {}).get(f.name))
        except SchemaError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise SchemaError(
                f"column {f.name!r} has values that are not {f.type}: {exc}", column=f.name
            ) from None
    return pd.DataFrame(out, index=pd.RangeIndex(length or 0), copy=False)


_SPECIAL_FLOATS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def _unjson_floats(vals: list) -> list:
    """Float values of a JSON column: numbers, null, and the three special strings."""
    if any(isinstance(v, str) for v in vals):
        try:
            vals = [_SPECIAL_FLOATS[v] if isinstance(v, str) else v for v in vals]
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]!r} is not a number (strings may only be "
                             "'NaN', 'Infinity' and '-Infinity')") from None
    return vals


def _decode_json_column(vals: list, t: str, cats: list | None):
    if t in NUMPY_TYPES:
        if t.startswith("float"):
            return np.array(_unjson_floats(vals), dtype=t)
        if any(v is None for v in vals):
            raise SchemaError("null in a column whose type has no missing values")
        if t == "bool":
            if not all(isinstance(v, bool) for v in vals):
                raise ValueError("expected true/false")
            return np.array(vals, dtype=bool)
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in vals):
            raise ValueError("expected integers")
        arr = np.array(vals)
        if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise ValueError("expected integers")
        info = np.iinfo(t)
        if len(arr) and (arr.min() < info.min or arr.max() > info.max):
            raise ValueError(f"out of range for {t}")
        return arr.astype(t)
    if t in MASKED_TYPES:
        if t.startswith("Float"):
            vals = _unjson_floats(vals)
        elif t == "boolean":
            if not all(v is None or isinstance(v, bool) for v in vals):
                raise ValueError("expected true/false/null")
        elif any(isinstance(v, bool) or not (v is None or isinstance(v, int | float)) for v in vals):
            raise ValueError("expected integers or null")
        return pd.array(vals, dtype=t)
    if t == "string":
        if pdt.infer_dtype(vals, skipna=True) not in ("string", "empty"):
            raise ValueError("expected strings or null")
        return pd.array(vals, dtype=STRING_DTYPE)
    if t == "category":
        if pdt.infer_dtype(vals, skipna=True) not in ("string", "empty"):
            raise ValueError("expected strings or null")
        if cats is not None:
            cat = pd.Categorical(vals, categories=pd.Index(cats, dtype=STRING_DTYPE))
            if len(vals) and cat.isna().sum() != sum(v is None for v in vals):
                raise ValueError("value not among the message's categories")
            return cat
        return pd.Categorical(vals)
    if is_datetime_type(t):
        unit, tz = datetime_parts(t)
        if any(isinstance(v, str) for v in vals):  # ISO-8601 strings, accepted on publish
            if not all(v is None or isinstance(v, str) for v in vals):  # §6.2: not mixed
                raise ValueError("expected ISO-8601 strings (or null) throughout, not mixed "
                                 "with numbers")
            idx = pd.to_datetime(vals, utc=tz is not None, format="ISO8601")
            if tz is not None:
                idx = idx.tz_convert(tz)
            return pd.array(idx.as_unit(unit))
        if any(isinstance(v, bool) or not (v is None or isinstance(v, int)) for v in vals):
            raise ValueError("expected integer timestamps, ISO-8601 strings or null")
        ints = np.array([np.iinfo(np.int64).min if v is None else v for v in vals], dtype=np.int64)
        idx = pd.DatetimeIndex(ints.view(f"M8[{unit}]"))
        if tz is not None:
            idx = idx.tz_localize("UTC").tz_convert(tz)
        return idx.array
    raise SchemaError(f"unsupported type {t}")


# -- Arrow ---------------------------------------------------------------------------------


def frame_to_arrow(frame: pd.DataFrame) -> bytes:
    """One Arrow IPC stream holding ``frame`` (with pandas metadata for exact dtypes)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


_ARROW_TYPES = {
    "bool": pa.bool_(), "boolean": pa.bool_(),
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float32": pa.float32(), "float64": pa.float64(),
    "string": pa.large_string(),
    "category": pa.dictionary(pa.int32(), pa.large_string()),
}


@functools.lru_cache(maxsize=256)
def arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of a livestream schema's binary frames (no pandas metadata)."""
    fields = []
    for f in schema:
        t = f.type
        if is_datetime_type(t):
            unit, tz = datetime_parts(t)
            at = pa.timestamp(unit, tz=tz)
        else:
            at = _ARROW_TYPES.get(t) or _ARROW_TYPES[t.lower()]
        fields.append(pa.field(f.name, at, nullable=True))
    return pa.schema(fields)


def _series_to_arrow(s: Any, t: str, at: pa.DataType) -> pa.Array:
    """One column (a Series, or the array behind one: see
    :func:`~livestream.core.schema.column_arrays`) as an Arrow array of type ``at``."""
    a = s.array if isinstance(s, pd.Series) else s
    if t in NUMPY_TYPES:
        return pa.array(np.asarray(a), type=at)
    if t == "category":
        codes = np.asarray(a.codes).astype(np.int32, copy=False)
        indices = pa.array(codes, mask=codes < 0, type=pa.int32())
        dictionary = pa.array(a.categories.to_numpy(dtype=object), type=pa.large_string())
        return pa.DictionaryArray.from_arrays(indices, dictionary)
    if is_datetime_type(t):
        return pa.array(a.asi8, type=pa.int64(), mask=np.asarray(a.isna())).view(at)
    arr = pa.array(a, type=at, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr


#: The end-of-stream marker of an Arrow IPC stream.
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


@functools.lru_cache(maxsize=256)
def _schema_message(schema: Schema) -> bytes | None:
    """The encapsulated IPC schema message of ``arrow_schema(schema)`` (the first
    bytes of every stream of it), or None when the schema has dictionary columns
    (their streams hold dictionary batches: written by pyarrow's stream writer)."""
    aschema = arrow_schema(schema)
    if any(pa.types.is_dictionary(f.type) for f in aschema):
        return None
    return aschema.serialize().to_pybytes()


def encode_arrow(frame: pd.DataFrame, schema: Schema,
                 arrays: Mapping[str, Any] | None = None) -> bytes:
    """The rows of ``frame`` as one Arrow IPC stream of ``arrow_schema(schema)``.

    Built column by column from numpy (no pandas metadata): this is the hot path of
    every binary update. ``arrays``, column name → the frame's column array (an
    update's :attr:`~livestream.core.topic.Update.arrays`), saves reading the columns
    from the frame again. The schema message is serialised once per schema: a stream is
    that message, one record batch message and the end-of-stream marker, the same
    bytes pyarrow's stream writer produces. Decode it with :func:`table_to_frame`
    and the schema.
    """
    aschema = arrow_schema(schema)
    cols = arrays if arrays is not None else frame
    batch = pa.RecordBatch.from_arrays(
        [_series_to_arrow(cols[f.name], f.type, af.type)
         for f, af in zip(schema, aschema, strict=True)], schema=aschema)
    head = _schema_message(schema)
    if head is not None:
        return b"".join((head, batch.serialize().to_pybytes(), _EOS))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, aschema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def stream_head(schema: Schema) -> bytes | None:
    """The bytes every data stream of ``schema`` that :func:`encode_arrow` writes starts
    with (its encapsulated schema message), or None when its streams also carry
    dictionary batches (category columns). A stream of such a schema is
    ``stream_head(schema)``, one record batch message and :data:`STREAM_END`."""
    return _schema_message(schema)


#: The end-of-stream marker every Arrow IPC stream ends with.
STREAM_END = _EOS


def stream_batches(frame: bytes, head: bytes) -> memoryview | None:
    """The record batch messages of a binary data frame (:func:`pack_binary` of a header
    and a stream that starts with ``head`` and ends with :data:`STREAM_END`): the stream
    without its schema message and end marker, a view of ``frame``. None if the frame
    is not laid out so. Streams of one schema merge by concatenating these
    (docs/protocol.md §3.3, merged appends)."""
    if len(frame) < 4:
        return None
    (n,) = _HEADER.unpack_from(frame, 0)
    start = 4 + n + len(head)
    if len(frame) < start + 8 or not frame.startswith(head, 4 + n) \
            or not frame.endswith(_EOS):
        return None
    return memoryview(frame)[start:len(frame) - 8]


def read_arrow(data: bytes | memoryview) -> pa.Table:
    """Read an Arrow IPC stream into an Arrow table, **trusting** it (a client reading
    its server's frames). Bytes from untrusted peers go through
    :func:`read_untrusted_arrow`: pyarrow does not validate what it reads here."""
    try:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise ProtocolError("bad_frame", f"not an Arrow IPC stream: {exc}") from None


class ArrowStreamReader:
    """Reads the Arrow IPC streams of one trusted server's data messages, parsing each
    schema once.

    Every stream of a topic starts with the same schema message (the same bytes:
    :func:`encode_arrow`). The reader keeps the last schema message it parsed. A
    stream that starts with exactly those bytes is read with the kept schema
    (``pyarrow.ipc.read_record_batch``, no schema parse) when its record batches hold
    the message header's ``rows``: one record batch is returned as it is, several (a
    merged append, docs/protocol.md §3.3) as a table of them; ``hits`` counts these.
    Anything else (another schema: the topic changed; dictionary batches; no ``rows``
    given) is read in full (``misses``), and its schema kept when streams of it can be
    read this way. :meth:`reset` forgets the kept schema (a gap, a new epoch). Like
    :func:`read_arrow` it **trusts** the bytes.
    """

    __slots__ = ("_head", "_schema", "hits", "misses")

    def __init__(self) -> None:
        self._head: bytes | None = None
        self._schema: pa.Schema | None = None
        #: streams read with the kept schema / read in full (for tests and profiling)
        self.hits = 0
        self.misses = 0

    @property
    def cached(self) -> bool:
        """Whether a schema is kept."""
        return self._head is not None

    def reset(self) -> None:
        """Forget the kept schema: the next stream is read in full."""
        self._head = self._schema = None

    def read(self, data: bytes | memoryview, rows: int | None = None
             ) -> pa.RecordBatch | pa.Table:
        """The rows of one stream (``rows``: the row count its message header states):
        a record batch when read with the kept schema, else a table."""
        head = self._head
        if head is not None and rows is not None and bytes(data[:len(head)]) == head:
            body = pa.py_buffer(data).slice(len(head))
            try:
                batch = pa.ipc.read_record_batch(body, self._schema)
                if batch.num_rows == rows:
                    self.hits += 1
                    return batch
                if batch.num_rows < rows:  # several record batches (merged appends)
                    table = self._batches(body, batch, rows)
                    if table is not None:
                        self.hits += 1
                        return table
            except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
                raise ProtocolError("bad_frame", f"not an Arrow IPC stream: {exc}") from None
        self.misses += 1
        table = read_arrow(data)
        self._keep(data, table.schema)
        return table

    def _batches(self, body: pa.Buffer, first: pa.RecordBatch, rows: int) -> pa.Table | None:
        """The record batches after the kept schema message (``first``: the first of them,
        already read), read with the kept schema (a merged append: docs/protocol.md §3.3),
        as one table of ``rows`` rows; None if the stream holds anything else (the caller
        reads it in full)."""
        reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(body))
        reader.read_next_message()  # the first batch's message
        batches = [first]
        n = first.num_rows
        for message in reader:
            if message.type != "record batch":
                return None
            batch = pa.ipc.read_record_batch(message, self._schema)
            batches.append(batch)
            n += batch.num_rows
        if n != rows:
            return None
        return pa.Table.from_batches(batches, schema=self._schema)

    def _keep(self, data: bytes | memoryview, schema: pa.Schema) -> None:
        self._head = self._schema = None
        if any(pa.types.is_dictionary(f.type) for f in schema):
            return  # its streams carry dictionary batches
        head = bytes(data[:8])
        if len(head) < 8 or head[:4] != b"\xff\xff\xff\xff":
            return  # not the encapsulation livestream writes
        size = 8 + int.from_bytes(head[4:8], "little")
        if size < len(data):
            self._head, self._schema = bytes(data[:size]), schema


def table_to_frame(table: pa.Table, schema: Schema | None = None) -> pd.DataFrame:
    """An Arrow table as a DataFrame with livestream's dtypes.

    With the livestream ``schema`` (binary frames carry no pandas metadata) the
    columns go through a :class:`~livestream.core.window.ColumnWindow`, the same
    conversion a subscription's window uses; without it, pandas metadata in the
    stream (HTTP snapshots, publishes) is honoured.
    """
    if schema is not None:
        from ..core.window import ColumnWindow

        window = ColumnWindow(schema, max_rows=None, arrow_strings=True)
        window.append(table)
        return window.to_frame()
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(len(frame))
    for name in frame.columns:  # category labels are strings, even with no labels at all
        dtype = frame[name].dtype
        if isinstance(dtype, pd.CategoricalDtype) and dtype.categories.dtype != STRING_DTYPE:
            frame[name] = frame[name].cat.set_categories(
                pd.Index(dtype.categories, dtype=STRING_DTYPE), ordered=dtype.ordered)
    return frame


def arrow_to_frame(data: bytes | memoryview) -> pd.DataFrame:
    """Read a trusted Arrow IPC stream back into a DataFrame (see :func:`read_arrow`;
    for untrusted bytes use :func:`untrusted_arrow_to_frame`)."""
    return table_to_frame(read_arrow(data))


# -- Arrow from untrusted publishers -------------------------------------------------------

_UNTRUSTED_READ = pa.ipc.IpcReadOptions(use_threads=False)

#: The nullable logical type of each non-nullable numeric one.
_MASKED_OF = {"bool": "boolean", "float32": "Float32", "float64": "Float64",
              **{f"{s}int{b}": f"{s.upper()}Int{b}" for s in ("", "u") for b in (8, 16, 32, 64)}}


def _arrow_logical_type(t: pa.DataType) -> str | None:
    """The logical type an Arrow column of type ``t`` publishes as (before nulls), or
    None if livestream does not carry it."""
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return str(t)  # int8 … uint64
    if pa.types.is_float32(t):
        return "float32"
    if pa.types.is_float64(t):
        return "float64"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "string"  # an all-null column (pyarrow's type for all-None objects) too
    if pa.types.is_dictionary(t):
        v = t.value_type
        if pa.types.is_integer(t.index_type) and (pa.types.is_string(v)
                                                   or pa.types.is_large_string(v)):
            return "category"
        return None
    if pa.types.is_timestamp(t):
        name = f"datetime64[{t.unit}, {t.tz}]" if t.tz else f"datetime64[{t.unit}]"
        return name if is_supported_type(name) else None
    return None


def _check_arrow_schema(schema: pa.Schema, max_columns: int) -> None:
    """Every column of an untrusted stream has a type livestream carries, and a name of
    its own. Raises :class:`SchemaError` naming the column."""
    if len(schema) > max_columns:
        raise LimitError(f"{len(schema)} columns in one publish; the limit is {max_columns}",
                         code="too_many_columns")
    seen: set[str] = set()
    for field in schema:
        name = field.name
        if name in seen:
            raise SchemaError(f"column {name!r} appears twice", column=name)
        seen.add(name)
        if _arrow_logical_type(field.type) is None:
            raise SchemaError(
                f"column {name!r} has Arrow type {field.type}, which livestream does not "
                "carry (see docs/protocol.md §6.3)", column=name)


def _bad_metadata(message: str) -> ProtocolError:
    return ProtocolError("bad_frame", f"bad pandas metadata in the Arrow schema: {message}")


def _pandas_hints(schema: pa.Schema) -> tuple[dict[str, str], set[str]]:
    """From pyarrow's ``pandas`` schema metadata, strictly checked: each column's
    ``numpy_type`` (only nullable dtypes are used, as hints) and the index columns
    (dropped). Nothing else of it is used."""
    raw = (schema.metadata or {}).get(b"pandas")
    if raw is None:
        return {}, set()
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad_metadata(f"not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _bad_metadata("not a JSON object")
    columns = meta.get("columns", [])
    index = meta.get("index_columns", [])
    if not isinstance(columns, list) or not isinstance(index, list):
        raise _bad_metadata("'columns' and 'index_columns' must be arrays")
    hints: dict[str, str] = {}
    for c in columns:
        if not isinstance(c, dict):
            raise _bad_metadata("each of 'columns' must be an object")
        name = c.get("field_name", c.get("name"))
        dtype = c.get("numpy_type")
        if not (name is None or isinstance(name, str)) or not (
                dtype is None or isinstance(dtype, str)):
            raise _bad_metadata("a column's 'name' and 'numpy_type' must be strings")
        if name is not None and dtype is not None:
            hints[name] = dtype
    names = set(schema.names)
    drop: set[str] = set()
    for i in index:
        if isinstance(i, str):
            if i not in names:
                raise _bad_metadata(f"index column {i!r} is not in the stream")
            drop.add(i)
        elif not isinstance(i, dict):  # a dict describes a RangeIndex: nothing to drop
            raise _bad_metadata("'index_columns' must hold names or objects")
    return hints, drop


def read_untrusted_arrow(data: bytes | memoryview, limits: Limits) -> pa.Table:
    """Read an Arrow IPC stream from an untrusted publisher, fully validated.

    The stream's structure and declared sizes are checked before pyarrow reads it
    (:func:`livestream.protocol.ipc.check_stream`), its column types before its
    batches are read, and every buffer, offset, dictionary index and UTF-8 string
    (``Table.validate(full=True)``) before anything computes on it. Raises
    :class:`ProtocolError` ``bad_frame``, :class:`SchemaError` naming a column of
    an unsupported type, or :class:`LimitError` (``too_many_rows`` /
    ``too_many_columns``).
    """
    check_stream(data, limits)
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data), options=_UNTRUSTED_READ)
        _check_arrow_schema(reader.schema, limits.max_columns)
        table = reader.read_all()
        table.validate(full=True)
    except (SchemaError, LimitError):
        raise
    except (pa.ArrowException, OSError, ValueError, UnicodeError) as exc:
        raise ProtocolError("bad_frame", f"not a valid Arrow IPC stream: {exc}") from None
    return table


def _column_to_pandas(col: pa.ChunkedArray, t: str) -> Any:
    """One validated Arrow column as the pandas array of logical type ``t``."""
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if pa.types.is_null(arr.type):
        return pd.array([None] * len(arr), dtype=STRING_DTYPE)
    if t == "string":
        from_arrow = getattr(STRING_DTYPE, "__from_arrow__", None)  # pandas' own conversion
        if from_arrow is not None:
            return from_arrow(arr)
        return pd.array(arr.to_numpy(zero_copy_only=False), dtype=STRING_DTYPE)
    if t == "category":
        # dictionary values in order of first appearance; a null value is a missing one
        index: dict[str, int] = {}
        values = arr.dictionary.to_pylist()
        mapping = np.empty(len(values) + 1, dtype=np.int32)
        for i, v in enumerate(values):
            mapping[i] = -1 if v is None else index.setdefault(v, len(index))
        mapping[-1] = -1
        codes = arr.indices.cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
        return pd.Categorical.from_codes(mapping[codes],
                                         categories=pd.Index(list(index), dtype=STRING_DTYPE),
                                         ordered=arr.type.ordered)
    if is_datetime_type(t):
        unit, tz = datetime_parts(t)
        ints = arr.view(pa.int64()).fill_null(np.iinfo(np.int64).min)
        idx = pd.DatetimeIndex(ints.to_numpy(zero_copy_only=False).view(f"M8[{unit}]"))
        return (idx.tz_localize("UTC").tz_convert(tz) if tz is not None else idx).array
    if t in MASKED_TYPES:  # pandas' own conversion of a column of exactly this type
        return pandas_dtype(t).__from_arrow__(arr)
    # numpy types: a copy, never a view of the received frame
    return np.array(arr.to_numpy(zero_copy_only=False), dtype=t, copy=True)


def _publish_type(at: pa.DataType, nulls: int, hint: str | None) -> str:
    """The logical type of a checked Arrow column in a publish: its Arrow type's, made
    nullable when an int or bool column has nulls, or when the pandas ``numpy_type``
    hint is a nullable dtype of the same kind (``Int*``, ``UInt*``, ``Float*``,
    ``boolean``)."""
    t = _arrow_logical_type(at)
    assert t is not None  # _check_arrow_schema passed
    masked = _MASKED_OF.get(t)
    if masked is None:
        return t
    kind = masked.rstrip("0123456789")
    if (nulls and not t.startswith("float")) or (
            hint in MASKED_TYPES and hint.rstrip("0123456789") == kind):
        return masked
    return t


def untrusted_arrow_to_frame(data: bytes | memoryview, limits: Limits) -> pd.DataFrame:
    """The rows of an untrusted Arrow publish as a DataFrame (see :func:`read_untrusted_arrow`).

    Types come from the Arrow types (docs/protocol.md §6.3), not from the pandas
    metadata: integer and bool columns with nulls become the nullable types, and a
    ``numpy_type`` of a nullable dtype in the pandas metadata makes a column of the
    same kind nullable; index columns the metadata names are dropped.
    """
    table = read_untrusted_arrow(data, limits)
    hints, drop = _pandas_hints(table.schema)
    out: dict[str, Any] = {}
    for field, col in zip(table.schema, table.columns, strict=True):
        name = field.name
        if name in drop:
            continue
        t = _publish_type(field.type, col.null_count, hints.get(name))
        try:
            out[name] = _column_to_pandas(col, t)
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            raise SchemaError(f"column {name!r} cannot be read as {t}: {exc}",
                              column=name) from None
    return pd.DataFrame(out, index=pd.RangeIndex(table.num_rows), copy=False)


def pack_binary(header: dict, payload: bytes = b"") -> bytes:
    """A binary frame: header length, JSON header, Arrow IPC payload."""
    h = dumps(header)
    return _HEADER.pack(len(h)) + h + payload


def unpack_binary(data: bytes) -> tuple[dict, memoryview]:
    """Split a binary frame into its header (a dict) and the Arrow payload."""
    if len(data) < 4:
        raise ProtocolError("bad_frame", "binary frame shorter than its 4-byte header length")
    (n,) = _HEADER.unpack_from(data, 0)
    if n > len(data) - 4:
        raise ProtocolError("bad_frame", "binary frame header length exceeds the frame")
    try:  # orjson reads the view: no copy
        header = orjson.loads(memoryview(data)[4 : 4 + n])
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_frame", "binary frame header must be a JSON object")
    return header, memoryview(data)[4 + n :]


# -- data messages -------------------------------------------------------------------------


def data_header(
    kind: str,
    topic: str,
    epoch: str,
    offset: int,
    next_: int,
    rows: int,
    ts: float,
    schema: Schema | None = None,
) -> dict:
    """The fields every row-carrying message has (see ``docs/protocol.md``)."""
    h = {
        "type": kind,
        "topic": topic,
        "epoch": epoch,
        "offset": offset,
        "next": next_,
        "rows": rows,
        "ts": round(ts * 1000.0, 3),
    }
    if schema is not None:
        h["schema"] = schema.to_json()
    return h


def encode_data(header: dict, frame: pd.DataFrame, schema: Schema, encoding: str,
                arrays: Mapping[str, Any] | None = None) -> bytes:
    """Encode a row-carrying message. JSON returns the text frame's UTF-8 bytes.
    ``arrays``: the frame's column arrays, if known (see :func:`encode_arrow`)."""
    if encoding == "json":
        cols, cats = encode_columns_json(frame, schema)
        msg = dict(header)
        if cats:
            msg["categories"] = cats
        msg["columns"] = cols
        return dumps(msg)
    if encoding == "arrow":
        return pack_binary(header, encode_arrow(frame, schema, arrays))
    raise ValueError(f"unknown encoding {encoding!r}")


def decode_data(
    header: dict, schema: Schema | None, payload: memoryview | None = None, *,
    as_table: bool = False, trusted: bool = False,
) -> pd.DataFrame | pa.Table:
    """The rows of a decoded message (JSON: from ``header['columns']``; Arrow: payload).

    ``as_table`` returns Arrow payloads as an Arrow table, which a client's window
    copies from without building a DataFrame.
    """
    if payload is not None:
        if len(payload) == 0:
            return schema.empty_frame() if schema is not None else pd.DataFrame()
        table = read_arrow(payload)
        return table if as_table else table_to_frame(table, schema)
    if schema is None:
        raise ProtocolError("bad_message", "rows arrived before the topic's schema")
    return decode_columns_json(header.get("columns", {}), schema, header.get("categories"),
                               trusted=trusted)
