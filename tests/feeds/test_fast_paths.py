"""The feed ingest fast paths give exactly what the general paths give, and step aside
where they do not apply."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livestream.client.feeds import convert
from livestream.client.feeds.parse import RowParser

# numbers as exchanges send them in text, and text that only looks like a number
_number_text = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:.6f}"),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.sampled_from(["43012.50", "-0.0", "0", "1e5", "1E-7", " 2.5", "3.5\n", "\t4"]),
)
_odd_text = st.one_of(
    st.sampled_from(["", " ", "nan", "inf", "-Infinity", "NaN", "1_000", "+1", "01", ".5",
                     "5.", "1,2", "[1", "2]", "true", "null", "1e400", "0x10", "١٢",
                     "\u00a01", "1 2", "{}", '"1"']),
    st.text(max_size=6),
)
_value = st.one_of(_number_text, _odd_text, st.none(), st.booleans(), st.integers(),
                   st.floats(), st.lists(st.integers(), max_size=2))


def _general(vals: list, col: convert.Col, monkeypatch: pytest.MonkeyPatch) -> tuple:
    with monkeypatch.context() as m:
        m.setattr(convert, "_floats_from_text", lambda v: None)
        bad: dict[int, str] = {}
        return convert.convert_column(vals, col, bad), bad


def _col(type_: str) -> convert.Col:
    p = RowParser(columns={"x": type_})
    assert p.cols is not None
    return p.cols[0]


def _same(a: object, b: object) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        # bit for bit: NaN where NaN, and the sign of zero
        assert a.view(np.uint8).tobytes() == b.view(np.uint8).tobytes()
    else:
        pd.testing.assert_extension_array_equal(a, b)


# float32 columns: numpy warns when a value is beyond float32 (both paths give inf)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@settings(max_examples=300, deadline=None)
@given(vals=st.lists(_value, max_size=12), type_=st.sampled_from(["float64", "float32",
                                                                 "Float64"]))
def test_float_text_fast_path_matches_the_general_path(vals: list, type_: str) -> None:
    mp = pytest.MonkeyPatch()
    try:
        want, want_bad = _general(vals, _col(type_), mp)
    finally:
        mp.undo()
    bad: dict[int, str] = {}
    got = convert.convert_column(vals, _col(type_), bad)
    _same(got, want)
    assert bad == want_bad


@settings(max_examples=200, deadline=None)
@given(vals=st.lists(_number_text, min_size=1, max_size=20))
def test_float_text_fast_path_is_taken_for_number_text(vals: list) -> None:
    fast = convert._floats_from_text(vals)
    assert fast is not None
    assert fast.tolist() == [float(v) for v in vals]


@pytest.mark.parametrize("vals", [
    ["1.5", None], [None, "1.5"], ["1.5", 2.0], [1.5, "2"], ["1,2", "3"], ["1", "2,3"],
    ["[1", "2]"], ["1", "true"], ["nan"], ["1_000"], ["+1"], ["01"], ["null"], ["1", ""],
    ['"1"'], ["{}"], ["1 2"], [],
])
def test_float_text_fast_path_steps_aside(vals: list) -> None:
    assert convert._floats_from_text(vals) is None


def test_float_text_bad_values_are_still_dead_lettered_by_row() -> None:
    bad: dict[int, str] = {}
    out = convert.convert_column(["1.5", "x", "2.5", "true"], _col("float64"), bad)
    assert sorted(bad) == [1, 3] and "column 'x'" in bad[1]
    assert out[0] == 1.5 and out[2] == 2.5


_label = st.one_of(st.sampled_from(["BTC-USD", "ETH-USD", "SOL-USD", "b", ""]), st.none(),
                   st.sampled_from([1, 1.0, True, "1", "True"]), st.lists(st.integers(), max_size=1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_label, max_size=12), min_size=1, max_size=6))
def test_category_batches_as_the_last_labels_match_factorizing_each_batch(batches) -> None:
    """A category column tries the last batch's labels first; whatever the batches, every
    batch converts exactly as it does on a column that has seen no batch (factorized)."""
    col = convert.Col("s", "s", "category", False, None, False)
    for vals in batches:
        got_bad: dict[int, str] = {}
        want_bad: dict[int, str] = {}
        got = convert.convert_column(list(vals), col, got_bad)
        fresh = convert.Col("s", "s", "category", False, None, False)
        want = convert.convert_column(list(vals), fresh, want_bad)
        assert got_bad == want_bad
        assert list(got.categories) == list(want.categories)
        assert list(got.codes) == list(want.codes) and got.dtype == want.dtype


def test_a_steady_label_set_takes_the_look_up() -> None:
    col = convert.Col("s", "s", "category", False, None, False)
    batch = ["b", "a", "c", "a"] * 10
    first = convert.convert_column(batch, col, {})
    assert col.cat_last is not None
    assert convert._categorical_as_last(batch[::-1], col) is not None
    second = convert.convert_column(batch, col, {})
    assert second.dtype is first.dtype and list(second.codes) == list(first.codes)
    for other in ([*batch, "d"], [*batch[:-1], None], ["a", "b"] * 5, [*batch, 1]):
        assert convert._categorical_as_last(other, col) is None


_any_value = st.one_of(_value, _label, st.integers(min_value=0, max_value=2 * 10**12))


@settings(max_examples=400, deadline=None)
@given(st.lists(_any_value, max_size=10),
       st.sampled_from(["float64", "Float64", "category", "string", "datetime64[ns, UTC]",
                        "Int64", "boolean"]),
       st.booleans())
def test_a_column_said_to_hold_no_none_held_none(vals, type_, with_converter) -> None:
    """The stream skips counting a column's missing values when its conversion showed
    there were none (``Col.no_nulls``): that must never be said of a batch holding one,
    whatever the values, the type and a ``convert=`` (which keeps None as None)."""
    col = convert.Col("c", "c", type_, False, None, False)
    raw = list(vals)
    if with_converter:
        col.convert, col.convert_name = (lambda v: v), "identity"
    for _ in range(2):  # the second time with what the first batch left on the column
        bad: dict[int, str] = {}
        conv = convert.apply_converter(raw, col, bad) if with_converter else raw
        convert.convert_column(conv, col, bad)
        assert not (col.no_nulls and None in raw)
