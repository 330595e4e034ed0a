"""Messages to typed rows, without sockets (livestream.client.feeds.parse)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from livestream.client.feeds.parse import Column, RowError, RowParser, compile_selector


def parse(parser: RowParser, *messages):
    records: list = []
    errors = []
    for m in messages:
        if parser.select is not None and not parser.select(m):
            continue
        try:
            parser.collect(parser.records(m), records)
        except RowError as e:
            errors.append(str(e))
    df, bad = parser.to_frame(records)
    return df, bad, errors


def test_numbers_as_strings_epochs_iso_and_missing_become_typed_columns():
    p = RowParser(
        path="data",
        columns={
            "price": ("px", float),
            "qty": int,
            "ts": ("T", "datetime"),
            "iso": ("t", "datetime64[ns]"),
            "sym": ("s", "category"),
            "note": str,
            "ok": bool,
        },
    )
    df, bad, errors = parse(
        p,
        {"data": [
            {"px": "1.5", "qty": "3", "T": 1_700_000_000_123, "t": "2024-01-01T01:00:00+01:00",
             "s": "BTC", "note": "hi", "ok": True},
            {"px": 2, "T": 1_700_000_000, "t": "2024-01-01T00:00:00Z", "s": "ETH", "ok": "false"},
        ]},
    )
    assert not bad and not errors
    assert list(df.columns) == ["price", "qty", "ts", "iso", "sym", "note", "ok"]
    assert df.dtypes.astype(str).tolist() == [
        "float64", "Int64", "datetime64[ns, UTC]", "datetime64[ns]", "category", "str",
        "boolean",
    ]
    assert df.price.tolist() == [1.5, 2.0]
    assert df.qty.tolist() == [3, pd.NA]
    assert df.ts.tolist() == [pd.Timestamp("2023-11-14 22:13:20.123", tz="UTC"),
                              pd.Timestamp("2023-11-14 22:13:20", tz="UTC")]
    assert df.iso.tolist() == [pd.Timestamp("2024-01-01")] * 2
    assert df.note.isna().tolist() == [False, True]
    assert df.ok.tolist() == [True, False]
    assert str(p.schema.type_of("ts")) == "datetime64[ns, UTC]"


@pytest.mark.parametrize("value", [1_700_000_000, 1_700_000_000_000, 1_700_000_000_000_000,
                                   1_700_000_000_000_000_000, "1700000000000", 1_700_000_000.0,
                                   "2023-11-14T22:13:20Z", "2023-11-14 23:13:20+01:00"])
def test_epoch_units_are_read_from_the_magnitude_and_iso_strings_parse(value):
    p = RowParser(columns={"t": "datetime"})
    df, bad, _ = parse(p, {"t": value})
    assert not bad
    assert df.t[0] == pd.Timestamp("2023-11-14 22:13:20", tz="UTC")


def test_explicit_epoch_unit_overrides_the_guess():
    p = RowParser(columns={"t": Column(type="datetime", unit="ms")})
    df, _, _ = parse(p, {"t": 5})
    assert df.t[0] == pd.Timestamp(5, unit="ms", tz="UTC")


@given(st.integers(min_value=0, max_value=2**62 // 10**9).map(lambda s: s * 10**9))
def test_ns_epochs_roundtrip_exactly(ns):
    p = RowParser(columns={"t": "datetime"})
    df, bad, _ = parse(p, {"t": ns} if ns >= 10**17 else {"t": ns // 10**9})
    assert not bad
    assert df.t[0].value == ns


def test_uncoercible_values_and_missing_required_fields_are_reported_per_row():
    p = RowParser(columns={"a": float, "b": ("x.y", "int64"), "c": Column("c", str, required=True)})
    df, bad, _ = parse(
        p,
        {"a": "1", "x": {"y": 1}, "c": "ok"},
        {"a": "one", "x": {"y": 2}, "c": "ok"},
        {"a": 3, "x": {"y": "2.5"}, "c": "ok"},
        {"a": 4, "x": {}, "c": "ok"},
        {"a": 5, "x": {"y": 5}},
        {"a": 6, "x": {"y": 6}, "c": 7},
    )
    assert df.a.tolist() == [1.0, 6.0]
    assert df.b.tolist() == [1, 6] and df.b.dtype == np.int64
    assert df.c.tolist() == ["ok", "7"]
    assert set(bad) == {1, 2, 3, 4}
    assert "column 'a'" in bad[1] and '"one"' in bad[1]
    assert "column 'b'" in bad[2] and "2.5" in bad[2]
    assert "int64 cannot hold nulls" in bad[3]
    assert "missing required field 'c'" in bad[4]


def test_select_by_field_match_nested_match_and_predicate():
    assert compile_selector({"type": "ticker"})({"type": "ticker"})
    assert not compile_selector({"type": "ticker"})({"type": "heartbeat"})
    assert not compile_selector({"type": "ticker"})([1, 2])
    nested = compile_selector({"arg.channel": "trades", "action": {"snapshot", "update"}})
    assert nested({"arg": {"channel": "trades"}, "action": "update"})
    assert not nested({"arg": {"channel": "books"}, "action": "update"})
    assert not nested({"action": "update"})
    assert compile_selector(lambda m: m[0] == 1)([1])
    with pytest.raises(TypeError, match="select must be a predicate"):
        compile_selector("ticker")  # type: ignore[arg-type]


def test_paths_into_nested_lists_and_array_records():
    p = RowParser(path="data.trades", columns={"px": float})
    df, _, _ = parse(p, {"data": {"trades": [{"px": "1"}, {"px": "2"}]}})
    assert df.px.tolist() == [1.0, 2.0]
    # Kraken-style: [channel_id, [[price, volume, time], ...], "trade", "XBT/USD"]
    k = RowParser(path="1", columns={"price": (0, float), "volume": (1, float),
                                     "time": (2, "datetime")})
    df, _, _ = parse(k, [42, [["5541.2", "0.15", "1534614057.321"],
                              ["6060.0", "0.02", "1534614057.324"]], "trade", "XBT/USD"])
    assert df.price.tolist() == [5541.2, 6060.0]
    assert df.time[0] == pd.Timestamp("2018-08-18 17:40:57.321", tz="UTC")
    _, _, errors = parse(p, {"data": {}})
    assert errors == ["path 'data.trades' not found in the message"]


def test_columns_inferred_from_the_first_record():
    p = RowParser()
    df, _, _ = parse(p, {"a": 1, "b": "x", "c": True, "nested": {"no": 1}}, {"a": 2.5, "b": "y", "c": False})
    assert list(df.columns) == ["a", "b", "c"]
    assert df.dtypes.astype(str).tolist() == ["float64", "str", "boolean"]
    assert df.a.tolist() == [1.0, 2.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": {"a": "complex"}}, "unknown type 'complex'"),
        ({"columns": {"a": list}}, "unsupported type"),
        ({"columns": {"a": ("x", float, 1, 2)}}, "must be \\(source, type\\)"),
        ({"columns": {"a": ("x", float, 1)}}, "column 'a': convert must be a function or a name"),
        ({"columns": {"a": ("x", int, "digits")}}, "column 'a': unknown converter 'digits'"),
        ({"columns": ["a"], "envelope": {"pair": -1}}, "envelope= .* needs path="),
        ({"columns": {}}, "at least one column"),
        ({"columns": {"a": float}, "required": ["b"]}, "required column 'b'"),
        ({"path": 3.5}, "path must be"),
    ],
)
def test_bad_stream_options_get_clear_errors(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        RowParser(**kwargs)


def test_bad_epoch_unit_is_refused():
    with pytest.raises(ValueError, match="unit must be one of"):
        Column(type=float, unit="h")


def test_generated_extractor_reads_keys_paths_and_indices_and_raises_where_missing():
    p = RowParser(columns={"a": float, "b": ("k.c", float), "i": ("l.1", int), "d": ("0", str)})
    assert p.extract({"a": 1, "k": {"c": 2}, "l": [0, 3], "0": "x"}) == (1, 2, 3, "x")
    for rec in ({"k": {"c": 2}, "l": [0, 3], "0": "x"},  # a missing key
                {"a": 1, "k": "c", "l": [0, 3], "0": "x"},  # a string is not an object
                {"a": 1, "k": {"c": 2}, "l": "ab", "0": "x"},  # a string is not a list
                {"a": 1, "k": {"c": 2}, "l": [0], "0": "x"}):  # index past the end
        with pytest.raises((KeyError, TypeError, IndexError)):
            p.extract(rec)
    # the record-by-record route gives None where the fast one raised
    assert p.row({"a": 1, "k": "c", "l": "ab", "0": "x"}) == (1, None, None, "x")
    arrays = RowParser(columns={"px": (0, float), "qty": (-1, float)})
    assert arrays.row(["1.5", 7, 2]) == ("1.5", 2)
    with pytest.raises(TypeError):
        arrays.extract({0: "1.5", -1: 2})  # only lists are read by index
    assert arrays.row({0: "1.5"}) == (None, None)


def test_epoch_batches_of_one_unit_mixed_units_and_out_of_range():
    p = RowParser(columns={"t": "datetime"})
    df, bad, _ = parse(p, {"t": 1_700_000_000}, {"t": 1_700_000_000_000})  # s and ms
    assert not bad and df.t.tolist() == [pd.Timestamp(1_700_000_000, unit="s", tz="UTC"),
                                         pd.Timestamp(1_700_000_000_000, unit="ms", tz="UTC")]
    df, bad, _ = parse(p, {"t": -1_000}, {"t": 1_000})  # before 1970
    assert not bad and df.t[0] == pd.Timestamp(-1_000, unit="s", tz="UTC")
    u = RowParser(columns={"t": Column(type="datetime", unit="s")})
    df, bad, _ = parse(u, {"t": 2**62}, {"t": 5})
    assert list(bad) == [0] and "datetime" in bad[0] and df.t[0] == pd.Timestamp(5, unit="s",
                                                                                  tz="UTC")


def test_category_batches_share_a_dtype_and_non_text_labels_become_text():
    p = RowParser(columns={"s": "category"})
    a, _, _ = parse(p, {"s": "b"}, {"s": "a"}, {"s": None})
    b, _, _ = parse(p, {"s": "a"}, {"s": "b"}, {"s": "a"})
    assert a.s.tolist()[:2] == ["b", "a"] and pd.isna(a.s[2])
    assert b.s.tolist() == ["a", "b", "a"] and a.s.dtype is b.s.dtype
    c, bad, _ = parse(p, {"s": 5}, {"s": {"k": 1}}, {"s": "a"})
    assert not bad and c.s.tolist() == ["5", '{"k":1}', "a"]


def test_float_columns_refuse_bools_and_arrays_but_take_zero_one_and_nulls():
    p = RowParser(columns={"x": float})
    df, bad, _ = parse(p, {"x": True}, {"x": 1}, {"x": "0"}, {"x": [1, 2]}, {"x": None})
    assert set(bad) == {0, 3} and "bool" in bad[0]
    assert df.x.tolist()[:2] == [1.0, 0.0] and pd.isna(df.x[2])
    df, bad, _ = parse(p, {"x": [1, 2]}, {"x": [3, 4]})  # same-length arrays: not a 2-D column
    assert df is None and set(bad) == {0, 1}
