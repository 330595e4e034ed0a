"""Both wire encodings round-trip every supported dtype exactly; client messages are validated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livestream import ProtocolError, SchemaError
from livestream.core import Schema
from livestream.core.schema import STRING_DTYPE
from livestream.protocol import (
    Hello,
    Subscribe,
    data_header,
    decode_columns_json,
    decode_data,
    encode_data,
    loads,
    parse_client_message,
    unpack_binary,
)

INT_RANGE = {"int8": 7, "int16": 15, "int32": 31, "int64": 63}

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
anyfloat = st.floats(allow_nan=True, allow_infinity=True, width=64)
text = st.text(max_size=8)


def _column(kind: str, n: int):
    if kind in INT_RANGE:
        b = INT_RANGE[kind]
        return st.lists(st.integers(-(2**b), 2**b - 1), min_size=n, max_size=n).map(
            lambda v: pd.Series(v, dtype=kind))
    if kind == "uint8":
        return st.lists(st.integers(0, 255), min_size=n, max_size=n).map(
            lambda v: pd.Series(v, dtype="uint8"))
    if kind == "float64":
        return st.lists(anyfloat, min_size=n, max_size=n).map(lambda v: pd.Series(v, dtype="float64"))
    if kind == "float32":
        return st.lists(st.floats(width=32), min_size=n, max_size=n).map(
            lambda v: pd.Series(v, dtype="float32"))
    if kind == "bool":
        return st.lists(st.booleans(), min_size=n, max_size=n).map(lambda v: pd.Series(v, dtype=bool))
    if kind == "string":
        # strings arrive as pandas' default string dtype (``str`` on pandas 3)
        return st.lists(st.none() | text, min_size=n, max_size=n).map(
            lambda v: pd.Series(v, dtype=STRING_DTYPE))
    if kind == "category":
        return st.lists(st.none() | st.sampled_from(["AAPL", "MSFT", "é", "x y"]), min_size=n,
                        max_size=n).map(lambda v: pd.Series(pd.Categorical(
                            v, categories=pd.Index(sorted({x for x in v if x is not None}),
                                                   dtype=STRING_DTYPE))))
    if kind in ("Int64", "Int32", "boolean"):
        elem = st.booleans() if kind == "boolean" else st.integers(-(2**31), 2**31 - 1)
        return st.lists(st.none() | elem, min_size=n, max_size=n).map(
            lambda v: pd.Series(pd.array(v, dtype=kind)))
    if kind == "Float64":
        return st.lists(st.none() | finite, min_size=n, max_size=n).map(
            lambda v: pd.Series(pd.array(v, dtype="Float64")))
    ints = st.integers(-(2**62), 2**62)
    if kind == "datetime64[ns]":
        return st.lists(st.none() | ints, min_size=n, max_size=n).map(
            lambda v: pd.Series(pd.to_datetime([pd.NaT if x is None else x for x in v], unit="ns")))
    if kind == "datetime64[us, UTC]":
        return st.lists(st.none() | st.integers(-(2**50), 2**50), min_size=n, max_size=n).map(
            lambda v: pd.Series(pd.to_datetime([pd.NaT if x is None else x for x in v], unit="us",
                                               utc=True).as_unit("us")))
    if kind == "datetime64[ms, America/New_York]":
        return st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n).map(
            lambda v: pd.Series(pd.to_datetime(v, unit="ms", utc=True).as_unit("ms")
                                .tz_convert("America/New_York")))
    raise AssertionError(kind)


KINDS = ["int8", "int16", "int32", "int64", "uint8", "float32", "float64", "bool", "string",
         "category", "Int64", "Int32", "boolean", "Float64", "datetime64[ns]",
         "datetime64[us, UTC]", "datetime64[ms, America/New_York]"]


@st.composite
def frames(draw):
    n = draw(st.integers(0, 12))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
    return pd.DataFrame({f"c{i}_{k}": draw(_column(k, n)) for i, k in enumerate(kinds)},
                        index=pd.RangeIndex(n))


def _roundtrip(df: pd.DataFrame, encoding: str) -> pd.DataFrame:
    schema = Schema.from_frame(df)
    header = data_header("append", "t", "e", 0, len(df), len(df), 0.0)
    data = encode_data(header, df, schema, encoding)
    if encoding == "json":
        return decode_data(loads(data), schema)
    h, payload = unpack_binary(data)
    assert h["rows"] == len(df)
    return decode_data(h, schema, payload)


@pytest.mark.parametrize("encoding", ["json", "arrow"])
@settings(max_examples=150, deadline=None)
@given(df=frames())
def test_any_supported_frame_round_trips_exactly(encoding, df):
    out = _roundtrip(df, encoding)
    pd.testing.assert_frame_equal(out, df, check_exact=True, check_categorical=True)


def test_json_rules_for_special_values():
    df = pd.DataFrame({"f": [np.nan, np.inf, -np.inf, 1.5],
                       "t": pd.to_datetime([0, None, 2, 3], unit="ms").as_unit("ms")})
    schema = Schema.from_frame(df)
    msg = loads(encode_data(data_header("append", "t", "e", 0, 4, 4, 0.0), df, schema, "json"))
    assert msg["columns"]["f"] == [None, "Infinity", "-Infinity", 1.5]
    assert msg["columns"]["t"] == [0, None, 2, 3]


def test_json_decode_names_the_bad_column():
    schema = Schema.from_frame(pd.DataFrame({"a": [1], "b": ["x"]}))
    with pytest.raises(SchemaError) as e:
        decode_columns_json({"a": [1, "two"], "b": ["x", "y"]}, schema)
    assert e.value.column == "a"
    with pytest.raises(SchemaError) as e:
        decode_columns_json({"a": [1], "b": ["x", "y"]}, schema)
    assert e.value.column == "b"
    with pytest.raises(SchemaError) as e:
        decode_columns_json({"a": [1]}, schema)
    assert e.value.column == "b"


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ([1, 2], "bad_message"),
        ({"no": "type"}, "bad_message"),
        ({"type": "explode"}, "unknown_type"),
        ({"type": "subscribe"}, "bad_message"),
        ({"type": "subscribe", "topic": "t", "offset": -1, "epoch": "e"}, "bad_message"),
        ({"type": "subscribe", "topic": "t", "epoch": "e"}, "bad_resume"),
        ({"type": "hello", "encoding": "xml"}, "unsupported_encoding"),
        ({"type": "ping", "id": [1]}, "bad_message"),
    ],
)
def test_malformed_client_messages_get_their_error_code(msg, code):
    with pytest.raises(ProtocolError) as e:
        parse_client_message(msg)
    assert e.value.code == code


def test_well_formed_client_messages_parse():
    assert parse_client_message({"type": "hello", "encoding": "arrow"}) == Hello(1, "arrow", None,
                                                                                 None)
    s = parse_client_message({"type": "subscribe", "topic": "t", "epoch": "e", "offset": 5, "id": 1})
    assert s == Subscribe("t", 1, "e", 5, None)
    with pytest.raises(ProtocolError) as e:
        loads(b"{nope")
    assert e.value.code == "bad_json"
