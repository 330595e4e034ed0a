"""A bounds-checked walk over an untrusted Arrow IPC stream, before pyarrow reads it. Pure.

pyarrow's IPC reader takes the lengths in a stream's metadata as given: a body
that declares a compressed buffer of a terabyte is allocated, a big-endian
schema is byte-swapped, and the arrays it builds are only valid if the offsets
in them are (checking that is ``validate(full=True)``, which needs the arrays
built first). :func:`check_stream` reads every message of the stream with
explicit bounds checks — the encapsulation (continuation marker, metadata
length, flatbuffer ``Message``, body), and in the flatbuffers the fields that
size things: record batch lengths, field nodes, buffer offsets and lengths,
compression, dictionary ids and deltas — and refuses what a livestream publish
never needs, before a byte of it is copied or allocated for:

- columns of other than flat types (no lists, structs, unions, maps, views...);
- compressed bodies, big-endian data, tensors;
- dictionary deltas and replacements (one dictionary batch per id, before the
  first record batch);
- a buffer or message that runs past the bytes present;
- more rows, columns, record batches or cells (rows × columns) than the limits.

The format is Arrow's ``format/Message.fbs`` and ``format/Schema.fbs``; only the
fields named above are read. What passes is then read by pyarrow and validated
in full (:func:`livestream.protocol.codec.read_untrusted_arrow`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..errors import LimitError, ProtocolError, SchemaError

#: Record batches one publish stream may hold.
MAX_BATCHES = 1000
#: Column chunks (record batches × columns) one publish stream may hold.
MAX_CHUNKS = 100_000

_CONTINUATION = 0xFFFFFFFF
_HEADER_SCHEMA, _HEADER_DICTIONARY, _HEADER_RECORD_BATCH = 1, 2, 3
_HEADER_NAMES = {4: "Tensor", 5: "SparseTensor"}
#: Schema.fbs ``Type`` values a column may have: Null, Int, FloatingPoint, Utf8, Bool,
#: Timestamp, LargeUtf8 (a dictionary-encoded column has its values' type).
_FLAT_TYPES = {1, 2, 3, 5, 6, 10, 20}
_TYPE_NAMES = {4: "Binary", 7: "Decimal", 8: "Date", 9: "Time", 11: "Interval", 12: "List",
               13: "Struct", 14: "Union", 15: "FixedSizeBinary", 16: "FixedSizeList",
               17: "Map", 18: "Duration", 19: "LargeBinary", 21: "LargeList",
               22: "RunEndEncoded", 23: "BinaryView", 24: "Utf8View", 25: "ListView",
               26: "LargeListView"}


@dataclass(frozen=True)
class Limits:
    """What one untrusted stream may hold."""

    max_rows: int
    max_columns: int
    max_cells: int
    max_batches: int = MAX_BATCHES
    max_chunks: int = MAX_CHUNKS


@dataclass(frozen=True)
class StreamInfo:
    """What :func:`check_stream` found: columns, rows and record batches."""

    columns: int
    rows: int
    batches: int


def _bad(message: str) -> ProtocolError:
    return ProtocolError("bad_frame", f"bad Arrow IPC stream: {message}")


class _Table:
    """One flatbuffer table in ``buf``, every read bounds-checked."""

    __slots__ = ("buf", "pos", "vt", "vt_len")

    def __init__(self, buf: memoryview, pos: int) -> None:
        n = len(buf)
        if not 0 <= pos <= n - 4:
            raise _bad("flatbuffer table out of bounds")
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        if not 0 <= vt <= n - 4:
            raise _bad("flatbuffer vtable out of bounds")
        vt_len = struct.unpack_from("<H", buf, vt)[0]
        if vt_len < 4 or vt_len % 2 or vt + vt_len > n:
            raise _bad("flatbuffer vtable out of bounds")
        self.buf, self.pos, self.vt, self.vt_len = buf, pos, vt, vt_len

    @classmethod
    def root(cls, buf: memoryview) -> _Table:
        if len(buf) < 4:
            raise _bad("message metadata too short")
        return cls(buf, struct.unpack_from("<I", buf, 0)[0])

    def _field(self, index: int, size: int) -> int | None:
        """Absolute position of field ``index`` (``size`` bytes), or None if absent."""
        slot = 4 + 2 * index
        if slot + 2 > self.vt_len:
            return None
        off = struct.unpack_from("<H", self.buf, self.vt + slot)[0]
        if off == 0:
            return None
        at = self.pos + off
        if at + size > len(self.buf):
            raise _bad("flatbuffer field out of bounds")
        return at

    def scalar(self, index: int, fmt: str, default: int) -> int:
        at = self._field(index, struct.calcsize(fmt))
        return default if at is None else struct.unpack_from(fmt, self.buf, at)[0]

    def _target(self, index: int) -> int | None:
        at = self._field(index, 4)
        if at is None:
            return None
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, index: int) -> _Table | None:
        at = self._target(index)
        return None if at is None else _Table(self.buf, at)

    def string(self, index: int) -> str:
        vec = self.vector(index, 1)
        if vec is None:
            return ""
        start, count = vec
        return bytes(self.buf[start:start + count]).decode("utf-8", "replace")

    def tables(self, index: int) -> list[_Table]:
        vec = self.vector(index, 4)
        if vec is None:
            return []
        start, count = vec
        return [_Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0])
                for at in range(start, start + 4 * count, 4)]

    def vector(self, index: int, item_size: int) -> tuple[int, int] | None:
        """(position of the first item, item count) of a vector field, or None."""
        at = self._target(index)
        if at is None:
            return None
        if at + 4 > len(self.buf):
            raise _bad("flatbuffer vector out of bounds")
        count = struct.unpack_from("<I", self.buf, at)[0]
        if at + 4 + count * item_size > len(self.buf):
            raise _bad("flatbuffer vector out of bounds")
        return at + 4, count


def _check_field(field: _Table) -> None:
    """A schema field must be of a flat type: no children."""
    name = field.string(0)
    kind = field.scalar(2, "<B", 0)
    children = field.vector(5, 4)
    if kind not in _FLAT_TYPES or (children is not None and children[1]):
        what = _TYPE_NAMES.get(kind, f"type {kind}") if kind not in _FLAT_TYPES else "nested"
        raise SchemaError(f"column {name!r} has Arrow type {what}; livestream carries bools, "
                          "integers, floats, strings, dictionary-encoded strings and "
                          "timestamps", column=name)


def _record_batch(rb: _Table, body_length: int, columns: int) -> int:
    """Check one RecordBatch table (of a record batch, or the data of a dictionary
    batch) of ``columns`` flat columns; returns its length."""
    length = rb.scalar(0, "<q", 0)
    if length < 0:
        raise _bad(f"negative record batch length {length}")
    if rb.table(3) is not None:
        raise _bad("compressed bodies are not accepted")
    variadic = rb.vector(4, 8)
    if variadic is not None and variadic[1]:
        raise _bad("view types (variadic buffers) are not accepted")
    start, count = rb.vector(1, 16) or (0, 0)
    if count != columns:
        raise _bad(f"a record batch of {count} field nodes for {columns} columns")
    nodes = _pairs(rb.buf, start, count)  # FieldNode {length, null_count}
    bad = (nodes[:, 0] < 0) | (nodes[:, 0] > length) | (nodes[:, 1] < 0) | (
        nodes[:, 1] > nodes[:, 0])
    if bad.any():
        k = int(bad.argmax())
        raise _bad(f"field node {k} declares {nodes[k, 0]} values and {nodes[k, 1]} nulls in "
                   f"a batch of {length} rows")
    start, count = rb.vector(2, 16) or (0, 0)
    if count > 3 * columns:
        raise _bad(f"{count} buffers for {columns} columns")
    buffers = _pairs(rb.buf, start, count)  # Buffer {offset, length}
    # offset + length cannot overflow: both are checked against the body first
    bad = (buffers[:, 0] < 0) | (buffers[:, 1] < 0) | (buffers[:, 0] > body_length) | (
        buffers[:, 1] > body_length - buffers[:, 0])
    if bad.any():
        k = int(bad.argmax())
        raise _bad(f"buffer {k} ({buffers[k, 1]} bytes at {buffers[k, 0]}) lies outside the "
                   f"message body of {body_length} bytes")
    return length


def _pairs(buf: memoryview, start: int, count: int) -> np.ndarray:
    """``count`` structs of two little-endian int64 at ``start`` (bounds already checked)."""
    return np.frombuffer(buf, dtype="<i8", count=2 * count, offset=start).reshape(count, 2)


def check_stream(data: bytes | memoryview, limits: Limits) -> StreamInfo:
    """Walk an untrusted Arrow IPC stream; raise ``bad_frame`` (:class:`ProtocolError`)
    or :class:`LimitError` (``too_many_rows`` / ``too_many_columns``) if it is not one
    a server should hand to pyarrow."""
    buf = memoryview(data).cast("B")
    end = len(buf)
    pos = 0
    columns = rows = batches = 0
    dictionary_ids: set[int] = set()
    seen_schema = False
    while True:
        if pos + 4 > end:
            if pos == end and seen_schema:
                break  # no end-of-stream marker: the stream simply ends
            raise _bad("truncated message header")
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if n == _CONTINUATION:
            if pos + 4 > end:
                raise _bad("truncated message header")
            (n,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        if n == 0:
            break  # end-of-stream marker
        if n > end - pos:
            raise _bad(f"message metadata of {n} bytes runs past the {end - pos} bytes left")
        message = _Table.root(buf[pos:pos + n])
        pos += n
        body_length = message.scalar(3, "<q", 0)
        if not 0 <= body_length <= end - pos:
            raise _bad(f"message body of {body_length} bytes runs past the {end - pos} "
                       "bytes left")
        kind = message.scalar(1, "<B", 0)
        header = message.table(2)
        if header is None:
            raise _bad("message without a header")
        if kind == _HEADER_SCHEMA:
            if seen_schema:
                raise _bad("a second schema message")
            seen_schema = True
            if header.scalar(0, "<h", 0) != 0:
                raise _bad("big-endian data is not accepted")
            fields = header.vector(1, 4)
            columns = fields[1] if fields is not None else 0
            if columns > limits.max_columns:
                raise LimitError(f"{columns} columns in one publish; the limit is "
                                 f"{limits.max_columns}", code="too_many_columns")
            for field in header.tables(1):
                _check_field(field)
        elif not seen_schema:
            raise _bad("the stream does not start with a schema message")
        elif kind == _HEADER_DICTIONARY:
            if batches:
                raise _bad("a dictionary batch after the first record batch (replacement)")
            if header.scalar(2, "<B", 0):
                raise _bad("dictionary deltas are not accepted")
            did = header.scalar(0, "<q", 0)
            if did in dictionary_ids:
                raise _bad(f"dictionary {did} sent twice (replacement)")
            if len(dictionary_ids) >= columns:
                raise _bad("more dictionary batches than columns")
            dictionary_ids.add(did)
            data_table = header.table(1)
            if data_table is None:
                raise _bad("dictionary batch without data")
            _record_batch(data_table, body_length, 1)
        elif kind == _HEADER_RECORD_BATCH:
            batches += 1
            if batches > limits.max_batches:
                raise _bad(f"more than {limits.max_batches} record batches")
            if batches * max(columns, 1) > limits.max_chunks:
                raise _bad(f"more than {limits.max_chunks} column chunks (record batches x "
                           "columns)")
            rows += _record_batch(header, body_length, columns)
            if rows > limits.max_rows:
                raise LimitError(f"more than {limits.max_rows} rows in one publish",
                                 code="too_many_rows")
            if rows * columns > limits.max_cells:
                raise LimitError(
                    f"{rows} rows x {columns} columns is more than {limits.max_cells} cells "
                    "(max_message_size) in one publish", code="too_many_rows")
        else:
            raise _bad(f"{_HEADER_NAMES.get(kind, f'unknown ({kind})')} messages are not "
                       "accepted")
        pos += body_length
    if not seen_schema:
        raise _bad("no schema message")
    if pos < end:
        raise _bad(f"{end - pos} bytes after the end-of-stream marker")
    return StreamInfo(columns, rows, batches)
